"""vtok prepare: verified manifests, resumable scans, re-encoding, and writing shards (streaming them: test_shards.py)."""

from __future__ import annotations

import gc
import json
import os
import time
from collections import Counter
from fractions import Fraction
from pathlib import Path

import av
import pytest
import webdataset as wds

from tests.conftest import write_broken_files
from tests.slow_work import working_for
from vtok.cli import main as vtok_main
from vtok.data import open_video, synthetic_clip, write_sample_clips, write_video
from vtok.data.datamodule import VideoDataModule
from vtok.data.manifest import VideoInfo, read_jsonl
from vtok.data.prepare import PrepareOptions, _reencode
from vtok.data.probe import TooFewFramesError
from vtok.data.readers import DecordReader, VideoDecodeError
from vtok.data.scan_pool import STALLED, run_with_deadlines
from vtok.data.shard_writer import write_shards
from vtok.data.shard_lists import expand_shards, shard_counts
from vtok.commands.prepare import main as prepare

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["--no-progress"]


def _names(records: list[dict]) -> list[str]:
    return sorted(Path(record.get("source", record["path"])).name for record in records)


def test_prepare_accepts_exactly_the_good_files_and_a_second_run_decodes_nothing(
    mixed_folder: tuple[Path, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    folder, broken = mixed_folder
    out = tmp_path / "prepared"
    args = ["prepare", "--data", str(folder), "--out", str(out), "--min-frames", "9", "--workers", "2", *QUIET]
    vtok_main(args)  # the console script's entry point
    assert "4 accepted, 5 rejected" in capsys.readouterr().out
    manifest, rejected = read_jsonl(out / "manifest.jsonl"), read_jsonl(out / "rejected.jsonl")
    assert _names(manifest) == sorted(p.name for p in folder.glob("sample_*.mp4"))
    for record in manifest:
        assert (record["frames"], record["fps"], record["width"], record["height"]) == (20, 24.0, 64, 40)
        assert record["duration"] == pytest.approx(20 / 24, abs=1e-3)
        assert record["codec"] == "h264" and record["keyframe_interval"] == 20  # x264's default: one keyframe
        assert "reported_frames" not in record
    reasons = {Path(record["path"]).name: record["reason"] for record in rejected}
    assert set(reasons) == set(broken)
    assert "empty" in reasons["empty.mp4"] and "too short: 3 frames" in reasons["short.mp4"]

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("a file already in the manifest or the rejected list was decoded again")

    monkeypatch.setattr("vtok.data.prepare.probe_video", no_decoding)
    summary = prepare([*args[1:], "--workers", "0"])  # decoding here, in this process, would hit no_decoding
    assert (summary.found, summary.known, summary.probed, summary.accepted, summary.rejected) == (9, 9, 0, 0, [])
    assert read_jsonl(out / "manifest.jsonl") == manifest and read_jsonl(out / "rejected.jsonl") == rejected

    monkeypatch.undo()  # a new file: only it is decoded
    write_sample_clips(folder / "new", count=1, frames=12, height=40, width=64, seed=9)
    summary = prepare(args[1:])
    assert (summary.probed, summary.accepted, summary.manifest_total) == (1, 1, 5)


def test_a_rerun_with_settings_that_would_change_listed_files_says_they_do_not_apply(
    video_folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    args = ["--data", str(video_folder), "--out", str(tmp_path / "out"), "--workers", "0", *QUIET]
    prepare(args)
    caplog.clear()
    summary = prepare([*args, "--reencode", "--min-frames", "30"])
    assert summary.probed == 0 and not (tmp_path / "out" / "videos").exists()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(w.startswith("8 videos already in") and "are not re-encoded" in w for w in warnings), warnings
    assert any("are shorter than --min-frames 30" in w and "use a new --out" in w for w in warnings), warnings
    caplog.clear()
    prepare([*args, "--every-frame"])  # three frames were decoded per file, not all: the stricter check did not run
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(w.startswith("8 videos already in") and "are not checked with --every-frame" in w for w in warnings), warnings


def test_files_already_listed_under_another_spelling_are_not_listed_again(video_folder: Path, tmp_path: Path) -> None:
    """A folder reached through a symlink (``/data`` pointing at a mount) holds the same files: a rerun
    through it listed every video a second time, and training weighed each twice."""
    (tmp_path / "linked").symlink_to(video_folder)
    out = tmp_path / "out"
    prepare(["--data", str(video_folder), "--out", str(out), "--workers", "0", *QUIET])
    summary = prepare(["--data", str(tmp_path / "linked"), "--out", str(out), "--workers", "0", "--shards", *QUIET])
    assert (summary.found, summary.known, summary.probed, summary.manifest_total) == (8, 8, 0, 8)


def test_a_file_name_that_is_not_utf8_is_listed_and_sharded(tmp_path: Path, video_folder: Path) -> None:
    """Names are bytes on Linux: a Latin-1 ``café.mp4`` reaches Python with a surrogate, which the
    shard key's hash could not encode: ``--shards`` failed on it at every rerun."""
    folder = tmp_path / "latin1"
    folder.mkdir()
    source = sorted(video_folder.glob("*.mp4"))[0]
    name = (bytes(folder) + b"/caf\xe9.mp4").decode(errors="surrogateescape")
    Path(name).write_bytes(source.read_bytes())
    summary = prepare(["--data", str(folder), "--out", str(tmp_path / "out"), "--workers", "0", "--shards", *QUIET])
    assert (summary.accepted, summary.shards_written) == (1, 1)


def _write_faststart(path: Path, frames: int) -> Path:
    """An H.264 mp4 with the index (moov) before the frames (mdat), as streaming sites serve them."""
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=Fraction(24))
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for array in synthetic_clip(frames, 48, 64, seed=4).numpy():
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode())
    return path


def test_a_file_whose_header_promises_missing_frames_is_cut_to_the_frames_that_decode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    whole = _write_faststart(folder / "cut.mp4", 40).read_bytes()
    # decord refuses to open some cuts outright (PyAV then reads them); which ones varies with the bytes
    # x264 writes, which vary from run to run (its threads): try cuts until decord opens one
    for cut in (10, 40, 5, 60, 1, *range(2, 120)):
        path = folder / "cut.mp4"
        path.write_bytes(whole[:-cut])  # the tail of the mdat is gone; the moov still lists 40 frames
        try:
            reader = DecordReader(path)
            break
        except VideoDecodeError:
            continue
    else:
        pytest.fail("decord opened none of the cut files")
    assert reader.num_frames == 40  # decord believes the header...
    with pytest.raises(VideoDecodeError):
        reader.read([39])  # ...and cannot give the last frame

    prepare(["--data", str(folder), "--out", str(tmp_path / "out"), "--workers", "0", *QUIET])
    (record,) = read_jsonl(tmp_path / "out" / "manifest.jsonl")
    usable = record["frames"]
    assert record["reported_frames"] == 40 and 30 <= usable < 40
    assert open_video(path).read([usable - 1]).shape[0] == 1
    with pytest.raises(VideoDecodeError):
        open_video(path).read([usable])

    requested: list[int] = []

    def spying_open_video(file: str, backend: str = "auto", verified: str | None = None):  # noqa: ANN202
        opened = open_video(file, backend, verified)
        read, read_windows = opened.read, opened.read_windows  # clips over 32 frames are read in windows
        opened.read = lambda indices: (requested.extend(indices), read(indices))[1]
        opened.read_windows = lambda indices, window: (requested.extend(indices), read_windows(indices, window))[1]
        return opened

    monkeypatch.setattr("vtok.data.dataset.open_video", spying_open_video)
    # clips of usable - 1 frames: within the 40 frames the header claims, they would reach frame 39
    module = VideoDataModule(path=str(tmp_path / "out" / "manifest.jsonl"), val_fraction=0, num_frames=usable - 1, size=32, num_workers=0)
    module.setup("fit")
    loader = module.train_dataloader()
    for _ in range(12):  # each pass over the loader is the next epoch
        for batch in loader:
            module.on_after_batch_transfer(batch, 0)
    assert requested and max(requested) < usable
    assert max(requested) == usable - 1, "the random starts reach the last verified frame"
    assert module.skipped_files == {}


def _write_damaged_in_the_middle(path: Path, frames: int = 48) -> Path:
    """An H.264 mp4 with a keyframe every 8 frames whose 21st packet (a P-frame) is zeroed: the
    header, the first, the middle and the last frame are intact."""
    write_video(path, synthetic_clip(frames, 48, 64, seed=3), keyframe_interval=8)
    with av.open(str(path)) as container:
        packets = [(p.pos, p.size, p.is_keyframe) for p in container.demux(video=0) if p.size]
    position, size, keyframe = packets[20]
    assert not keyframe
    data = bytearray(path.read_bytes())
    data[position : position + size] = bytes(size)
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("flags", [["--every-frame"], ["--every-frame", "--reencode"]], ids=["in-place", "reencoded"])
def test_damage_inside_a_file_keeps_the_frames_before_it_and_says_so(
    tmp_path: Path, video_folder: Path, flags: list[str], capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "videos"
    damaged = _write_damaged_in_the_middle(folder / "damaged.mp4")
    (folder / "good.mp4").symlink_to(sorted(video_folder.glob("*.mp4"))[0])
    # Without --every-frame the outcome varies from run to run: decord's decoding thread reads ahead
    # and sometimes fails on the sampled frames near the damage, sometimes not.
    out = tmp_path / "out"
    summary = prepare(["--data", str(folder), "--out", str(out), "--workers", "0", *flags, *QUIET])
    assert (summary.accepted, summary.shortened) == (2, 1)
    assert "1 of the accepted keep only the frames before damage" in capsys.readouterr().out
    records = {Path(r["source"]).name: r for r in read_jsonl(out / "manifest.jsonl")}
    assert "reported_frames" not in records["good.mp4"] and records["good.mp4"]["frames"] == 20
    kept = records["damaged.mp4"]
    assert kept["reported_frames"] == 48 and 8 <= kept["frames"] < 48
    read_from = out / kept["path"] if "--reencode" in flags else damaged
    assert open_video(read_from).read(list(range(kept["frames"]))).shape[0] == kept["frames"]  # all kept frames decode
    if "--every-frame" in flags:
        with pytest.raises(VideoDecodeError):
            open_video(damaged).read(list(range(kept["frames"] + 1)))  # and the next one does not


def test_a_reencoded_copy_cut_short_by_damage_records_the_source_frame_count(tmp_path: Path) -> None:
    damaged = _write_damaged_in_the_middle(tmp_path / "damaged.mp4")
    trusted = VideoInfo(path=str(damaged), frames=48, fps=24.0, width=64, height=48, duration=2.0)  # as the header says
    copy = _reencode(trusted, tmp_path / "out", PrepareOptions(reencode=True))
    assert copy.reported_frames == 48 and 8 <= copy.frames < 48  # the re-encoder stops at the damage
    assert open_video(tmp_path / "out" / copy.path).num_frames == copy.frames
    with pytest.raises(TooFewFramesError):  # a copy too short for --min-frames is rejected, and not left behind
        _reencode(trusted, tmp_path / "short", PrepareOptions(reencode=True, min_frames=copy.frames + 1))
    assert list((tmp_path / "short" / "videos").iterdir()) == []


def test_a_manifest_line_whose_file_is_gone_is_skipped_with_a_warning(
    shard_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lines = read_jsonl(shard_dir / "manifest.jsonl")[:3]
    lines.append({**lines[0], "path": str(tmp_path / "gone.mp4")})
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    module = VideoDataModule(path=str(tmp_path / "manifest.jsonl"), val_fraction=0, num_frames=5, size=32, batch_size=2, num_workers=0)
    module.setup("fit")
    batches = [module.on_after_batch_transfer(batch, 0) for batch in module.train_dataloader()]
    assert [b["video"].shape[0] for b in batches] == [2, 2]
    assert module.skipped_files == {str(tmp_path / "gone.mp4"): "no such file"}
    assert any("gone.mp4" in r.message and "no such file" in r.message for r in caplog.records)


def test_reencoding_shortens_the_keyframe_interval_and_scales_the_short_side(video_folder: Path, tmp_path: Path) -> None:
    sources = sorted(video_folder.glob("*.mp4"))[:2]
    (tmp_path / "list.txt").write_text("".join(f"{p}\n" for p in sources))
    out = tmp_path / "out"
    prepare(["--data", str(tmp_path / "list.txt"), "--out", str(out), "--reencode", "--short-side", "32", "--keyframe-interval", "4", "--workers", "0", *QUIET])
    records = read_jsonl(out / "manifest.jsonl")
    assert _names(records) == sorted(p.name for p in sources)
    for record in records:
        assert record["path"].startswith("videos/") and (out / record["path"]).is_file()
        assert (record["frames"], record["height"], record["width"]) == (20, 32, 52)  # 40x64 -> short side 32
        assert record["keyframe_interval"] <= 4
        assert open_video(out / record["path"]).read([19]).shape == (1, 32, 52, 3)
        assert record["reencoded_with"] == {"short_side": 32, "keyframe_interval": 4, "crf": 18}


def test_a_rerun_reencoding_with_other_settings_says_the_listed_copies_keep_theirs(
    video_folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Copies already listed are not written again: a rerun with another --short-side went on in silence,
    leaving a manifest of copies at two sizes."""
    (tmp_path / "list.txt").write_text(f"{sorted(video_folder.glob('*.mp4'))[0]}\n")
    args = ["--data", str(tmp_path / "list.txt"), "--out", str(tmp_path / "out"), "--reencode", "--workers", "0", *QUIET]
    prepare([*args, "--short-side", "32"])
    caplog.clear()
    prepare(args)  # the same settings but the short side
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(
        w.startswith("1 videos already in") and "re-encoded with other settings than no --short-side, --keyframe-interval 8" in w
        for w in warnings
    ), warnings
    caplog.clear()
    prepare([*args, "--short-side", "32"])  # as the copies were made: nothing to say
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_shards_hold_the_manifest_and_a_corrupt_member_is_skipped_and_counted(
    shard_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    shards = expand_shards(str(shard_dir / "shards"))
    assert [Path(s).name for s in shards] == [f"shard-{i:06d}.tar" for i in range(4)]
    assert shard_counts(shards) == [2, 2, 2, 2]
    members = list(wds.WebDataset(shards, shardshuffle=False))
    assert sorted(m["__key__"] for m in members) == sorted(k for k in {m["__key__"] for m in members})
    assert {json.loads(m["json"])["frames"] for m in members} == {20} and all(m["mp4"][4:8] == b"ftyp" for m in members)
    assert {json.loads(m["json"])["reader"] for m in members} == {"decord"}, "training reads each member as prepare checked"
    # a later run with nothing new writes no shard
    assert prepare(["--data", str(shard_dir / "manifest.jsonl"), "--out", str(shard_dir), "--shards", *QUIET]).shards_written == 0

    good = members[0]
    with wds.TarWriter(str(tmp_path / "bad.tar")) as writer:
        writer.write({"__key__": "broken", "mp4": b"\x00\x00\x00\x18ftypmp42 not really a video", "json": {"frames": 20}})
        writer.write({"__key__": "fine", "mp4": good["mp4"], "json": json.loads(good["json"])})
        writer.write({"__key__": "nothing", "txt": b"no video here"})
    module = VideoDataModule(shards=str(tmp_path / "bad.tar"), num_frames=5, size=32, batch_size=1, num_workers=0)
    module.setup("fit")
    assert "data.shards without data.val_path: no validation runs" in caplog.text
    batches = [module.on_after_batch_transfer(batch, 0) for batch in module.train_dataloader()]
    assert [b["key"] for b in batches] == [["fine"]]
    assert sorted(path.split("#")[-1] for path in module.skipped_files) == ["broken", "nothing"]
    assert module.pop_epoch_skips() == 2

    # metadata without a reader (another tool's shards): decord is checked at every read, said once
    with wds.TarWriter(str(tmp_path / "plain.tar")) as writer:
        for key in ("a", "b"):
            writer.write({"__key__": key, "mp4": good["mp4"], "json": {"frames": 20}})
    monkeypatch.setattr("vtok.data.streaming._said_unchecked", False)
    caplog.clear()
    module = VideoDataModule(shards=str(tmp_path / "plain.tar"), num_frames=5, size=32, batch_size=1, num_workers=0)
    module.setup("fit")
    assert len(list(module.train_dataloader())) == 2
    said = [r.getMessage() for r in caplog.records if "records no reader" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith(f"{tmp_path / 'plain.tar'}#")


def test_rejections_the_settings_decided_are_checked_again_under_settings_that_may_accept_them(
    mixed_folder: tuple[Path, dict[str, str]], tmp_path: Path, video_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder, _ = mixed_folder
    out = tmp_path / "prepared"
    prepare(["--data", str(folder), "--out", str(out), "--min-frames", "9", "--workers", "0", *QUIET])
    assert {Path(r["path"]).name: r.get("frames") for r in read_jsonl(out / "rejected.jsonl")}["short.mp4"] == 3
    summary = prepare(["--data", str(folder), "--out", str(out), "--min-frames", "4", "--workers", "0", *QUIET])
    assert summary.probed == 0, "3 frames are still too few for 4: nothing to check again"
    # as an older vtok wrote it: no "frames", only the reason, which is read instead
    lines = [{k: v for k, v in r.items() if k != "frames"} for r in read_jsonl(out / "rejected.jsonl")]
    (out / "rejected.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    summary = prepare(["--data", str(folder), "--out", str(out), "--min-frames", "3", "--workers", "0", *QUIET])
    assert (summary.probed, summary.accepted) == (1, 1) and "short.mp4" in _names(read_jsonl(out / "manifest.jsonl"))
    assert "short.mp4" not in _names(read_jsonl(out / "rejected.jsonl")) and summary.rejected_total == 4

    # a deadline no file can meet: every file stalls; the same deadline again checks nothing, a longer one all
    stalled, data = tmp_path / "stalled", str(sorted(video_folder.glob("*.mp4"))[0])
    with pytest.raises(ValueError, match="none of the 1 files"):
        prepare(["--data", data, "--out", str(stalled), "--timeout", "0.001", "--workers", "1", *QUIET])
    assert read_jsonl(stalled / "rejected.jsonl")[0]["timeout"] == 0.001
    with caplog.at_level("WARNING", logger="vtok.data.prepare"), pytest.raises(ValueError, match="none of the 1 files"):
        prepare(["--data", data, "--out", str(stalled), "--timeout", "0.001", "--workers", "1", *QUIET])
    assert "a longer --timeout checks them again" in caplog.text
    with pytest.raises(ValueError, match="none of the 1 files"):  # no deadline: a hanging file would hang the run
        prepare(["--data", data, "--out", str(stalled), "--workers", "0", *QUIET])
    summary = prepare(["--data", data, "--out", str(stalled), "--workers", "1", *QUIET])
    assert (summary.probed, summary.accepted, summary.rejected_total) == (1, 1, 0)


def test_shards_follow_an_edited_manifest_each_line_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Lines removed, added or repeated between two runs: every line is sharded exactly once, and an
    unreadable line is tried again by the next run instead of being counted as sharded."""
    for name in "abcdef":
        (tmp_path / f"{name}.mp4").write_bytes(name.encode() * 10)  # sharding copies bytes, it does not decode
    line = {name: {"path": f"{name}.mp4", "frames": 20} for name in "abcdef"}

    def sharded() -> Counter:
        members = wds.WebDataset(expand_shards(str(tmp_path / "shards")), shardshuffle=False)
        return Counter(json.loads(member["json"])["path"][0] for member in members)

    write_shards([line["a"], line["b"], line["c"], line["c"]], tmp_path, tmp_path / "shards")
    assert sharded() == Counter("abcc"), "a repeated line is a sample of its own"
    (tmp_path / "d.mp4").unlink()
    with caplog.at_level("WARNING", logger="vtok.data.shard_writer"):
        write_shards([line["a"], line["c"], line["c"], line["e"], line["d"]], tmp_path, tmp_path / "shards")
    assert sharded() == Counter("abcce"), "b's removal shifts no line: e is sharded, c not again, d (unreadable) not yet"
    assert "no longer in the manifest" in caplog.text and "not sharding" in caplog.text
    (tmp_path / "d.mp4").write_bytes(b"d" * 10)
    write_shards([line["a"], line["c"], line["c"], line["d"], line["e"], line["f"], line["f"]], tmp_path, tmp_path / "shards")
    assert sharded() == Counter("abccdeff")
    keys = [m["__key__"] for m in wds.WebDataset(expand_shards(str(tmp_path / "shards")), shardshuffle=False)]
    assert len(set(keys)) == len(keys) == 8, "repeats have keys of their own"


def test_an_interrupted_sharding_run_is_indexed_and_the_next_run_shards_each_line_once(
    video_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Shards were renamed into place as they closed but indexed only at the end: a stopped run left them
    outside the index, and the next run numbered its shards over them or beside them (training read them
    all: samples twice, sample counts unknown)."""
    lines = [{"path": str(path), "frames": 20} for path in sorted(video_folder.glob("*.mp4"))]
    out, opened, opens = tmp_path / "shards", Path.open, Counter()

    def stopped_at_the_fourth_video(path: Path, *args: object, **kwargs: object) -> object:
        opens[path.suffix] += 1
        if path.suffix == ".mp4" and opens[".mp4"] == 4:
            raise KeyboardInterrupt  # Ctrl-C while the third shard is being written
        return opened(path, *args, **kwargs)

    monkeypatch.setattr(Path, "open", stopped_at_the_fourth_video)
    with pytest.raises(KeyboardInterrupt):
        write_shards(lines, video_folder, out, shard_samples=1)
    monkeypatch.undo()
    index = json.loads((out / "index.json").read_text())
    assert [(s["name"], s["samples"]) for s in index["shards"]] == [("shard-000000.tar", 1), ("shard-000001.tar", 1)]
    assert sum(index["keys"].values()) == 2 and (out / "shard-000002.tar.partial").exists()

    # as a vtok that indexed only at the end left it: the last closed shard, and its sample, not in the index
    last = index["shards"].pop()
    del index["keys"][next(iter(wds.WebDataset(str(out / last["name"]), shardshuffle=False)))["__key__"]]
    (out / "index.json").write_text(json.dumps({**index, "records": 1}))
    with caplog.at_level("WARNING"):
        assert shard_counts(expand_shards(str(out))) is None
        assert f"1 of the 2 shards are not in {out / 'index.json'} ({out / last['name']})" in caplog.text
        write_shards(lines, video_folder, out, shard_samples=3)
    assert f"removing {out / last['name']}: an interrupted run closed it after the last shard index.json lists" in caplog.text
    assert sorted(p.name for p in out.iterdir()) == ["index.json", *(f"shard-{i:06d}.tar" for i in range(4))]
    shards = expand_shards(str(out))
    assert shard_counts(shards) == [1, 3, 3, 1]
    sources = [json.loads(member["json"])["path"] for member in wds.WebDataset(shards, shardshuffle=False)]
    assert sorted(sources) == sorted(line["path"] for line in lines), "every line once"

    # without an index, vtok cannot tell what shards hold: it deleted them all (their sources may be gone)
    (out / "index.json").unlink()
    with pytest.raises(ValueError, match="holds shards that no index.json there accounts for .*restore the index.json"):
        write_shards(lines, video_folder, out, shard_samples=3)
    assert sorted(p.name for p in out.glob("*.tar")) == [f"shard-{i:06d}.tar" for i in range(4)], "nothing deleted"


def test_bad_input_is_a_clear_error_never_a_crash(tmp_path: Path, video_folder: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "nothing").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        vtok_main(["prepare", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "out"), *QUIET])
    assert exit_info.value.code == 2 and "no video files found" in capsys.readouterr().err
    write_broken_files(tmp_path / "bad", sorted(video_folder.glob("*.mp4"))[0])
    with pytest.raises(ValueError, match="none of the 5 files .* is usable"):
        prepare(["--data", str(tmp_path / "bad"), "--out", str(tmp_path / "out"), "--min-frames", "9", *QUIET])
    with pytest.raises(ValueError, match="not both"):
        VideoDataModule(path=str(video_folder), shards=str(tmp_path / "shards"))
    for size in ("-5", "nan", "inf"):
        with pytest.raises(ValueError, match="--shard-size must be a positive number of MB"):  # before any file is read
            prepare(["--data", str(video_folder), "--out", str(tmp_path / "sized"), "--shards", "--shard-size", size, *QUIET])
    assert not (tmp_path / "sized" / "manifest.jsonl").exists()
    for timeout in ("0", "nan", "inf"):  # nan looped for ever, inf overflowed the deadline's clock
        with pytest.raises(ValueError, match="--timeout must be a number of seconds above 0"):
            prepare(["--data", str(video_folder), "--out", str(tmp_path / "timed"), "--timeout", timeout, *QUIET])
    for flags, message in ((["--crf", "18"], "--crf only applies with --reencode"), (["--reencode", "--crf", "99"], "0-51"),
                           (["--seed", "3", "--shard-samples", "2"], "--shard-samples, --seed only apply with --shards")):  # fmt: skip
        with pytest.raises(ValueError, match=message):  # a flag that would do nothing is said, not ignored
            prepare(["--data", str(video_folder), "--out", str(tmp_path / "flags"), *flags, *QUIET])


def test_an_item_that_stalls_is_reported_and_the_others_finish() -> None:
    # time.sleep stands in for a decoder stuck in C code: the pool is replaced, the rest carries on
    results = dict(run_with_deadlines(time.sleep, [0.1, 30.0, 0.2, 0.3], workers=2, timeout=1.5))
    assert results == {0.1: None, 30.0: STALLED, 0.2: None, 0.3: None}


def test_replaced_pools_leave_no_open_files_behind() -> None:
    """Each stall's pool kept its pipes open until a garbage collection: 338 open files at the peak of a prepare
    whose 240 files all stalled (2 workers), 877 with 16, toward the usual limit of 1024."""
    def open_files() -> int:
        return len(os.listdir("/proc/self/fd"))

    counts = []
    gc.disable()  # as between two of Python's own collections
    try:
        for _, result in run_with_deadlines(time.sleep, [30.0 + i for i in range(4)], workers=1, timeout=0.2):
            assert result is STALLED
            counts.append(open_files())
    finally:
        gc.enable()
    assert counts[-1] <= counts[0] + 2, counts


def test_an_item_that_says_it_is_still_working_is_not_taken_for_stalled() -> None:
    """Re-encoding a long video takes longer than --timeout and is no stall: it says so per frame (it was rejected
    as "decoding stalled", and the same file was accepted without --reencode)."""
    # the preload applies where this process's fork server is not running yet; one that is has vtok loaded
    preload = ["vtok.data.scan_pool", "tests.slow_work"]
    results = dict(run_with_deadlines(working_for, [4.0, 0.1], workers=2, timeout=1.5, preload=preload))
    assert results == {4.0: 4.0, 0.1: 0.1}


def test_a_still_image_named_as_a_video_is_rejected_and_a_one_frame_video_is_not(tmp_path: Path) -> None:
    """FFmpeg opens a PNG or JPEG called .mp4 as a one-frame "video"; prepare says what it is."""
    from PIL import Image

    folder = tmp_path / "in"
    folder.mkdir()
    picture = Image.fromarray(synthetic_clip(1, 40, 64, seed=3)[0].numpy())
    picture.save(folder / "still.mp4", format="PNG")
    picture.save(folder / "photo.mov", format="JPEG")
    write_video(folder / "one_frame.mp4", synthetic_clip(1, 40, 64, seed=3))  # H.264: a video, however short
    summary = prepare(["--data", str(folder), "--out", str(tmp_path / "out"), "--workers", "0", *QUIET])
    reasons = {Path(record["path"]).name: record["reason"] for record in read_jsonl(tmp_path / "out" / "rejected.jsonl")}
    assert reasons == {
        "still.mp4": "a still image (png) named as a video; images train through data.image_path",
        "photo.mov": "a still image (mjpeg) named as a video; images train through data.image_path",
    }
    assert summary.accepted == 1 and _names(read_jsonl(tmp_path / "out" / "manifest.jsonl")) == ["one_frame.mp4"]
    # said so whatever --min-frames asks (a 1-frame picture is too short too, but that is not the news)
    with pytest.raises(ValueError, match="none of the 3 files"):
        prepare(["--data", str(folder), "--out", str(tmp_path / "out17"), "--workers", "0", "--min-frames", "17", *QUIET])
    reasons = {Path(record["path"]).name: record["reason"] for record in read_jsonl(tmp_path / "out17" / "rejected.jsonl")}
    assert reasons["still.mp4"].startswith("a still image (png)") and reasons["one_frame.mp4"].startswith("too short")


def test_an_output_folder_inside_the_data_is_not_taken_for_new_videos(tmp_path: Path, video_folder: Path) -> None:
    """With --out inside --data, a rerun found its own re-encoded copies as new sources (copies of copies next time)."""
    data = tmp_path / "data"
    data.mkdir()
    for video in sorted(video_folder.glob("*.mp4"))[:2]:
        (data / video.name).symlink_to(video)
    args = ["--data", str(data), "--out", str(data / "prepared"), "--reencode", "--workers", "0", *QUIET]
    first = prepare(args)
    again = prepare(args)
    assert (first.accepted, again.found, again.probed, again.manifest_total) == (2, 2, 0, 2)
