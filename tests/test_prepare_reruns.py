"""`vtok prepare` run again over data that changed, after an interruption, or through other spellings."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest
import webdataset as wds

from tests.conftest import write_broken_files
from tests.helpers import lock_held_elsewhere
from vtok.commands.prepare import main as prepare
from vtok.data import synthetic_clip, write_sample_clips
from vtok.data.datamodule import VideoDataModule
from vtok.data.manifest import read_jsonl
from vtok.data.shard_writer import write_shards
from vtok.data.sources import IMAGE_SUFFIXES, list_records, unique_files
from vtok.data.shard_lists import expand_shards

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["--no-progress", "--workers", "0"]


def _clip(folder: Path, frames: int, size: int, seed: int) -> Path:
    """One generated h264 clip of ``frames`` frames, ``size`` x ``size``."""
    write_sample_clips(folder, count=1, frames=frames, height=size, width=size, seed=seed)
    return next(folder.glob("*.mp4"))


def test_files_that_changed_since_they_were_checked_are_checked_again(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Lines were matched by path alone: a file still being copied when it was checked stayed rejected for
    good, and a replaced file kept the old one's frame count (with --shards, its new bytes were sharded
    beside the old metadata)."""
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    long, short = _clip(tmp_path / "long", 40, 64, 1), _clip(tmp_path / "short", 12, 32, 2)
    (data / "copying.mp4").write_bytes(long.read_bytes()[: long.stat().st_size // 2])  # half copied
    shutil.copy(long, data / "replaced.mp4")
    first = prepare(["--data", str(data), "--out", str(out), *QUIET])
    assert (first.accepted, len(first.rejected)) == (1, 1)

    shutil.copy(long, data / "copying.mp4")  # the copy finished
    shutil.copy(short, data / "replaced.mp4")  # another video under the same name
    caplog.clear()
    again = prepare(["--data", str(data), "--out", str(out), "--shards", *QUIET])
    assert "2 files changed since an earlier run checked them" in caplog.text
    assert (again.known, again.probed, again.accepted, again.rejected) == (0, 2, 2, [])
    lines = {Path(line["path"]).name: line for line in read_jsonl(out / "manifest.jsonl")}
    assert (lines["copying.mp4"]["frames"], lines["replaced.mp4"]["frames"], lines["replaced.mp4"]["width"]) == (40, 12, 32)
    assert read_jsonl(out / "rejected.jsonl") == []
    members = {json.loads(m["json"])["path"]: m for m in wds.WebDataset(expand_shards(str(out / "shards")), shardshuffle=False)}
    assert members[str(data / "replaced.mp4")]["mp4"] == short.read_bytes(), "the bytes the metadata describes"

    caplog.clear()  # unchanged since: nothing checked again
    assert prepare(["--data", str(data), "--out", str(out), "--shards", *QUIET]).probed == 0
    assert "changed since" not in caplog.text
    shutil.copy(long, data / "replaced.mp4")  # changed once more, after it was sharded: the shards keep the old bytes
    caplog.clear()
    prepare(["--data", str(data), "--out", str(out), "--shards", *QUIET])
    assert "1 of the changed files are already in" in caplog.text and "write the shards to a new --out" in caplog.text



def test_a_sharded_file_changed_and_checked_through_another_spelling_is_not_sharded_again(tmp_path: Path) -> None:
    """Its new line took the new spelling's sample key: the shards held the old and the new bytes (trained twice an
    epoch), although the run warned that they keep the bytes they were sharded with."""
    data, out = tmp_path / "real", tmp_path / "out"
    write_sample_clips(data, count=2, frames=12, height=32, width=32, seed=1)
    (tmp_path / "link").symlink_to(data)
    prepare(["--data", str(tmp_path / "link"), "--out", str(out), "--shards", *QUIET])
    changed = sorted(data.glob("*.mp4"))[0]
    changed.write_bytes(_clip(tmp_path / "other", 14, 32, 9).read_bytes())
    prepare(["--data", str(data), "--out", str(out), "--shards", *QUIET])
    index = json.loads((out / "shards" / "index.json").read_text())
    assert index["records"] == 2 and len(read_jsonl(out / "manifest.jsonl")) == 2
    line = next(line for line in read_jsonl(out / "manifest.jsonl") if Path(line["path"]).name == changed.name)
    assert line["path"] == str(tmp_path / "link" / changed.name) and line["frames"] == 14, "checked again, under its key"

def test_a_file_changed_between_its_check_and_sharding_is_not_sharded(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    video = _clip(tmp_path / "v", 12, 32, 3)
    prepare(["--data", str(video.parent), "--out", str(tmp_path / "out"), *QUIET])
    video.write_bytes(video.read_bytes()[:500])
    assert write_shards(read_jsonl(tmp_path / "out" / "manifest.jsonl"), tmp_path / "out", tmp_path / "shards") == []
    assert f"not sharding {video}: it changed since vtok prepare checked it" in caplog.text


def test_a_torn_manifest_line_is_cut_off_so_training_reads_the_manifest(tmp_path: Path, video_folder: Path) -> None:
    """The torn line was ended with a newline and kept: prepare skipped it, training's strict reader refused the manifest."""
    out = tmp_path / "out"
    prepare(["--data", str(video_folder), "--out", str(out), *QUIET])
    manifest = out / "manifest.jsonl"
    manifest.write_bytes(manifest.read_bytes()[:-60])  # killed while writing the last line
    summary = prepare(["--data", str(video_folder), "--out", str(out), *QUIET])
    assert (summary.probed, summary.accepted, summary.manifest_total) == (1, 1, 8)
    assert len(list_records(manifest)) == 8
    lines = manifest.read_text().splitlines()
    manifest.write_text("\n".join([*lines, lines[0]]))  # a line repeated by hand (to weight it), without a newline
    assert prepare(["--data", str(video_folder), "--out", str(out), *QUIET]).manifest_total == 9
    assert len(list_records(manifest)) == 9, "a whole last line is kept, only a torn one is cut off"


def test_a_recorded_time_rounded_by_other_tools_or_restored_to_the_second_is_no_change(tmp_path: Path, video_folder: Path) -> None:
    """The recorded mtime (~1.8e18 ns) comes back up to 128 ns off through a double (jq, pandas), and an
    archive restored with tar keeps whole seconds: every file was checked again (re-encoded, with --reencode)."""
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    for video in sorted(video_folder.glob("*.mp4"))[:3]:
        shutil.copy(video, data / video.name)
    prepare(["--data", str(data), "--out", str(out), *QUIET])
    manifest = out / "manifest.jsonl"
    lines = read_jsonl(manifest)
    manifest.write_text("".join(json.dumps({**line, "source_mtime_ns": float(line["source_mtime_ns"])}) + "\n" for line in lines))
    first = Path(lines[0]["path"])
    whole_second = lines[0]["source_mtime_ns"] // 10**9 * 10**9
    os.utime(first, ns=(whole_second, whole_second))  # as tar restores it
    assert prepare(["--data", str(data), "--out", str(out), *QUIET]).probed == 0
    os.utime(first, ns=(whole_second - 10**9, whole_second - 10**9))  # a second earlier: another version
    assert prepare(["--data", str(data), "--out", str(out), *QUIET]).probed == 1


def test_copies_inside_the_data_are_not_sources_under_another_spelling_of_the_data(tmp_path: Path, video_folder: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for video in sorted(video_folder.glob("*.mp4"))[:2]:
        shutil.copy(video, data / video.name)
    (tmp_path / "linked").symlink_to(data)
    prepare(["--data", str(data), "--out", str(data / "prepared"), "--reencode", *QUIET])
    again = prepare(["--data", str(tmp_path / "linked"), "--out", str(data / "prepared"), "--reencode", *QUIET])
    assert (again.found, again.probed, again.manifest_total) == (2, 0, 2), "its own copies were taken for new videos"


def test_the_shard_index_is_not_rewritten_at_every_shard(tmp_path: Path, video_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """index.json lists every sample key and was rewritten whole at each shard's close: time growing with
    the square of the videos (1.6 hours of index writes for a million)."""
    import vtok.data.shard_writer as shard_writer

    writes = []
    original = shard_writer._write_index
    monkeypatch.setattr(shard_writer, "_write_index", lambda *args: (writes.append(len(args[2])), original(*args))[1])
    lines = [{"path": str(path), "frames": 20} for path in sorted(video_folder.glob("*.mp4"))]
    assert len(write_shards(lines, video_folder, tmp_path / "shards", shard_samples=1)) == 8
    assert writes == [0, 8], "an empty one before the first shard, then at the end (and at most every 30 s between)"


def test_the_fork_servers_start_is_not_counted_in_a_files_deadline(tmp_path: Path) -> None:
    """The deadline started when a file was handed to the pool: the fork server importing vtok's decoders
    took seconds of the first files' deadlines, and healthy files were rejected as stalled."""
    (tmp_path / "slow_to_import.py").write_text("import time\ntime.sleep(3)\n")  # as importing torch and decoders can be
    script = (
        "from vtok.data.scan_pool import STALLED, run_with_deadlines\n"  # a fresh process: its own fork server
        "results = dict(run_with_deadlines(abs, [-1, -2, -3], workers=2, timeout=1.0, preload=['slow_to_import']))\n"
        "assert results == {-1: 1, -2: 2, -3: 3}, results\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_ctrl_c_while_the_fork_server_imports_is_not_a_traceback_from_it(tmp_path: Path) -> None:
    """The fork server imports the preload modules (seconds) before it ignores Ctrl-C itself: a Ctrl-C in
    that time printed its KeyboardInterrupt traceback under prepare's one-line message."""
    (tmp_path / "slow_to_import.py").write_text("import time\ntime.sleep(10)\n")
    script = (
        "import sys\nfrom vtok.data.scan_pool import run_with_deadlines\nprint('imported', flush=True)\n"
        "try:\n    dict(run_with_deadlines(abs, [-1], workers=1, timeout=60, preload=['slow_to_import']))\n"
        "except KeyboardInterrupt:\n    print('interrupted', file=sys.stderr)\n    sys.exit(130)\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"}
    process = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)  # fmt: skip
    assert process.stdout.readline().strip() == "imported"  # vtok's own imports done (a fixed wait ran out under load)
    time.sleep(3)  # the fork server is importing by now (its preload sleeps 10 s)
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: every process of the terminal's group
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and stderr.strip() == "interrupted", stderr[-3000:]


def test_shard_members_of_formats_read_by_pyav_alone_are_not_said_to_be_checked(
    tmp_path: Path, video_folder: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """vtok prepare records no reader for a .ts/.mpg/.avi (PyAV reads them, decord is never tried), and
    streaming them warned that decord was checked against PyAV at every read, and that vtok's shards say it."""
    ts = tmp_path / "clip.ts"
    with av.open(str(ts), "w") as container:
        stream = container.add_stream("mpeg2video", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for frame in synthetic_clip(12, 48, 64, seed=5).numpy():
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    prepare(["--data", str(tmp_path), "--out", str(tmp_path / "out"), "--shards", *QUIET])
    assert "reader" not in read_jsonl(tmp_path / "out" / "manifest.jsonl")[0]
    monkeypatch.setattr("vtok.data.streaming._said_unchecked", False)
    module = VideoDataModule(shards=str(tmp_path / "out" / "shards"), num_frames=5, size=32, batch_size=1, num_workers=0)
    module.setup("fit")
    assert len(list(module.train_dataloader())) == 1
    assert "records no reader" not in caplog.text


def test_ctrl_c_stops_prepare_with_one_line_and_the_rerun_carries_on(tmp_path: Path, video_folder: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    for copy in range(6):  # distinct files (copies, not links): each is checked
        for video in video_folder.glob("*.mp4"):
            (data / str(copy)).mkdir(parents=True, exist_ok=True)
            shutil.copy(video, data / str(copy) / video.name)
    command = [sys.executable, "-m", "vtok.cli", "prepare", "--data", str(data), "--out", str(out), "--workers", "1",
               "--no-progress", "--every-frame"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    deadline = time.monotonic() + 120
    while not (out / "manifest.jsonl").exists() or not (out / "manifest.jsonl").read_text():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1][-3000:]
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: every process of the group
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert "vtok prepare: interrupted; every file checked so far is recorded" in stderr
    done = len(read_jsonl(out / "manifest.jsonl"))
    assert 0 < done < 48
    summary = prepare(["--data", str(data), "--out", str(out), *QUIET])
    assert (summary.known, summary.manifest_total) == (done, 48)


def test_a_folder_search_counts_the_videos_it_leaves_out(tmp_path: Path, video_folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_broken_files(tmp_path / "data", next(video_folder.glob("*.mp4")))
    for name in ("a.flv", "b.FLV", "c.wmv", "notes.json"):
        (tmp_path / "data" / name).write_bytes(b"x")
    files, _ = unique_files([record["path"] for record in list_records(tmp_path / "data")])
    assert not any(name.endswith((".flv", ".FLV", ".wmv", ".json")) for name in files)
    assert "3 videos in containers vtok does not read are left out (.flv 2, .wmv 1)" in caplog.text
    for name in ("d.gif", "e.HEIC"):  # and an image search's pictures that no reader takes
        (tmp_path / "data" / name).write_bytes(b"x")
    assert list_records(tmp_path / "data", IMAGE_SUFFIXES) == []
    assert "2 images in formats vtok does not read are left out (.gif 1, .heic 1)" in caplog.text


def test_subcommands_show_their_info_lines_once(tmp_path: Path, video_folder: Path) -> None:
    """The subcommands ran before vtok's messages were set up, so their INFO lines never showed; prepare's own
    logging.basicConfig would then have shown each line twice."""
    data = tmp_path / "data"
    data.mkdir()
    for video in sorted(video_folder.glob("*.mp4"))[:2]:
        (data / video.name).symlink_to(video)
    command = [sys.executable, "-m", "vtok.cli", "prepare", "--data", str(data), "--out", str(tmp_path / "out"), *QUIET]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stderr.splitlines()
    said = [line for line in lines if "2 files, 0 already in" in line]
    assert said == [f"vtok INFO: 2 files, 0 already in {tmp_path / 'out'}: checking 2"], done.stderr[-2000:]


def test_info_lines_show_on_the_first_rank_only_under_srun_too() -> None:
    """srun sets SLURM_PROCID (and Lightning's own launch of devices > 1 LOCAL_RANK), not RANK: every rank
    printed the INFO lines there. Warnings come from every rank. (The first rank's INFO lines: above.)"""
    speak = (
        "from vtok.console import show_vtok_messages as s; import logging; s(); "
        "logging.getLogger('vtok.x').info('said'); logging.getLogger('vtok.x').warning('warned')"
    )
    clean = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "SLURM_PROCID")}
    env = {**clean, "SLURM_PROCID": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", speak], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "vtok INFO: said" not in done.stderr, done.stderr[-2000:]
    assert "vtok WARNING: warned" in done.stderr, done.stderr[-2000:]


def test_a_file_rejected_as_missing_is_checked_again_once_it_is_there(tmp_path: Path) -> None:
    """A rejection records the file's size and time, and is checked again only when they change: a dangling
    link (no size, no time) stayed rejected for good after its target was made, reported "already done"."""
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    clip = _clip(tmp_path / "clips", 12, 32, 3)
    shutil.copy(clip, data / "a.mp4")
    (data / "b.mp4").symlink_to(tmp_path / "later.mp4")
    first = prepare(["--data", str(data), "--out", str(out), *QUIET])
    assert (first.accepted, [Path(path).name for path, _ in first.rejected]) == (1, ["b.mp4"])
    shutil.copy(clip, tmp_path / "later.mp4")  # the link's target is there now
    again = prepare(["--data", str(data), "--out", str(out), *QUIET])
    assert (again.known, again.probed, again.accepted, again.rejected) == (1, 1, 1, [])
    assert read_jsonl(out / "rejected.jsonl") == [] and len(read_jsonl(out / "manifest.jsonl")) == 2


def test_a_second_prepare_into_a_busy_out_is_refused(tmp_path: Path, video_folder: Path) -> None:
    """Two runs into one --out appended to and rewrote one manifest at once: lines written twice (videos
    trained twice) or lost without a word."""
    out = tmp_path / "out"
    with lock_held_elsewhere(out, ".prepare.lock"):  # as a prepare into out still running holds it
        with pytest.raises(ValueError, match=f"another vtok prepare is still writing into --out {out}: wait for it"):
            prepare(["--data", str(video_folder), "--out", str(out), *QUIET])
        assert not (out / "manifest.jsonl").exists()
    assert prepare(["--data", str(video_folder), "--out", str(out), *QUIET]).accepted > 0  # a killed holder's lock went with it
