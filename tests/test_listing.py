"""Listing a dataset: symlinked folders followed once, dangling links reported, each real file once,
and manifest lines whose frame count or frame rate training could not use refused by line."""

from __future__ import annotations

import json
import re
import shutil
import tracemalloc
from pathlib import Path

import pytest

from vtok.commands.prepare import main as prepare
from vtok.data import ClipSpec, VideoClipDataset, VideoLength, list_files, list_records
from vtok.data.datamodule import VideoDataModule
from vtok.data.errors import read_notes
from vtok.data.manifest import read_jsonl
from vtok.data.sources import CLIP_FIELDS, list_clip_records

QUIET = ["--no-progress", "--workers", "0"]


@pytest.fixture()
def linked_tree(tmp_path: Path, video_folder: Path) -> Path:
    """``data/``: a.mp4, sub/b.mp4, c.mp4 under a symlinked folder (reached by two links), a file
    symlink to a.mp4, a dangling link d.mp4, and a symlink loop sub/up -> data."""
    clips = sorted(video_folder.glob("*.mp4"))
    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    (data / "sub").mkdir(parents=True)
    elsewhere.mkdir()
    for source, target in zip(clips, [data / "a.mp4", data / "sub" / "b.mp4", elsewhere / "c.mp4"]):
        shutil.copy(source, target)
    (data / "linked").symlink_to(elsewhere)
    (data / "linked_again").symlink_to(elsewhere)
    (data / "same_as_a.mp4").symlink_to(data / "a.mp4")
    (data / "d.mp4").symlink_to(tmp_path / "nonexistent" / "d.mp4")
    (data / "sub" / "up").symlink_to("..")
    return data


def test_a_folder_follows_symlinked_folders_once_lists_each_file_once_and_keeps_dangling_links(
    linked_tree: Path, caplog: pytest.LogCaptureFixture
) -> None:
    expected = [str(linked_tree / name) for name in ["a.mp4", "d.mp4", "linked/c.mp4", "sub/b.mp4"]]
    assert list_files(linked_tree) == expected
    warning = " ".join(r.message for r in caplog.records if r.levelname == "WARNING")
    assert "2 symlinked folders" in warning and "1 paths lead through symlinks to a file listed already" in warning
    # a glob through the loop: each file once, not once per trip round the loop
    assert list_files(str(linked_tree / "**" / "*.mp4")) == expected
    # training: the dangling link is skipped, counted and named like any unusable file
    dataset = VideoClipDataset(expected, ClipSpec(5), size=(32, 32), seed=0)
    (path, reason), *_ = read_notes(dataset[(0, 1)]["skipped"])
    assert path == expected[1] and reason.startswith("no such file")


def test_a_glob_keeps_globs_matching_rules(tmp_path: Path, video_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clip = sorted(video_folder.glob("*.mp4"))[0]
    for name in ["a/1.mp4", "a/b/2.mp4", "a/.hidden/3.mp4", "a/.4.mp4", "top.mp4", "a/b/5.txt"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(clip, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    assert list_files("**/*.mp4") == ["a/1.mp4", "a/b/2.mp4", "top.mp4"]  # hidden names left out, as glob does
    assert list_files("a/.*.mp4") == ["a/.4.mp4"]
    assert list_files("*/*/*.mp4") == ["a/b/2.mp4"]
    assert list_files(str(tmp_path / "a" / "**")) == [str(tmp_path / n) for n in ["a/1.mp4", "a/b/2.mp4", "a/b/5.txt"]]


def test_prepare_checks_each_real_file_once_and_rejects_a_dangling_link_by_name(
    linked_tree: Path, tmp_path: Path
) -> None:
    summary = prepare(["--data", str(linked_tree), "--out", str(tmp_path / "out"), *QUIET])
    assert (summary.found, summary.accepted) == (4, 3)
    assert [r["path"] for r in read_jsonl(tmp_path / "out" / "manifest.jsonl")] == [
        str(linked_tree / name) for name in ["a.mp4", "linked/c.mp4", "sub/b.mp4"]
    ]
    target = linked_tree.parent / "nonexistent" / "d.mp4"
    assert read_jsonl(tmp_path / "out" / "rejected.jsonl") == [
        {"path": str(linked_tree / "d.mp4"), "reason": f"no such file: dangling symlink to {target}"}
    ]
    # a manifest naming one file by two paths: checked once, and the summary says how many were left out
    (tmp_path / "list.txt").write_text(f"{linked_tree / 'a.mp4'}\n{linked_tree / 'same_as_a.mp4'}\n")
    summary = prepare(["--data", str(tmp_path / "list.txt"), "--out", str(tmp_path / "again"), *QUIET])
    assert (summary.found, summary.duplicates, summary.accepted) == (1, 1, 1)
    assert "1 more paths lead to files already listed" in summary.describe()


def test_manifest_lines_with_a_frame_count_or_rate_training_cannot_use_are_refused_by_line(
    tmp_path: Path, video_folder: Path
) -> None:
    clip = str(sorted(video_folder.glob("*.mp4"))[0])
    good = {"path": clip, "frames": 20, "fps": 24.0}
    manifest = tmp_path / "list.jsonl"
    bad = [("fps", float("nan")), ("fps", float("inf")), ("fps", -24), ("frames", True), ("frames", 20.7)]
    for field, value in bad:
        manifest.write_text(json.dumps(good) + "\n\n" + json.dumps({**good, field: value}) + "\n")
        message = f"manifest {manifest}, line 3, '{field}' is {value!r}: it must be"
        with pytest.raises(ValueError, match=re.escape(message)):
            list_records(manifest)
        module = VideoDataModule(path=str(manifest), val_fraction=0, num_frames=5, size=32, num_workers=0)
        with pytest.raises(ValueError, match=f"line 3, '{field}'"):
            module.setup("fit")
    (tmp_path / "list.csv").write_text(f"path,frames,fps\n{clip},20,24\n{clip},20,inf\n")
    with pytest.raises(ValueError, match=r"list.csv, line 3, 'fps' is 'inf'"):
        list_records(tmp_path / "list.csv")
    (tmp_path / "list.csv").write_text(f"path,frames\n{clip},20\n,20\n")  # an empty cell is not the manifest's folder
    with pytest.raises(ValueError, match=r"list.csv, line 3, has an empty 'path'"):
        list_records(tmp_path / "list.csv")
    (tmp_path / "list.csv").write_bytes(f"\ufeffpath,frames\r\n{clip},20\r\n".encode())  # as Excel saves it
    assert [r["path"] for r in list_records(tmp_path / "list.csv")] == [clip]
    (tmp_path / "list.csv").write_text(f"path, frames, fps\n{clip}, 20, 24\n")  # written by hand: the length was dropped
    assert VideoLength.from_record(list_records(tmp_path / "list.csv")[0]) == (20, 24.0, None)
    (tmp_path / "list.txt").write_text(f"# clips\n  # indented comment\r\n{clip}\n")
    assert [r["path"] for r in list_records(tmp_path / "list.txt")] == [clip]
    # what JSON and CSV writers give for good values is read as meant; 0 or no fps is unknown
    assert VideoLength.from_record({"frames": 20.0, "fps": 24}) == (20, 24.0, None)
    assert VideoLength.from_record({"frames": "20", "fps": ""}) == (20, None, None)
    assert VideoLength.from_record({"frames": 0, "fps": "0"}) == (0, 0.0, None)
    assert VideoLength.from_record({"frames": 5, "reader": "pyav"}).reader == "pyav"
    assert VideoLength.from_record({"frames": 5, "reader": "decord", "decord_check": 2}).reader == "decord"
    assert VideoLength.from_record({"frames": 5, "reader": "decord"}).reader is None, "an older check's verdict: checked again"
    with pytest.raises(ValueError, match="'reader' is 'ffmpeg'"):
        VideoLength.from_record({"frames": 5, "reader": "ffmpeg"})
    assert VideoLength.from_record({"path": clip}) is None


def test_a_text_file_of_other_things_as_data_path_says_it_was_read_as_a_list_of_missing_videos(tmp_path: Path) -> None:
    """A .txt data.path is a list of videos: one of notes said its lines are missing files, not that one file is
    too few for a batch of 2 (the batch check came before the files were tried)."""
    notes = tmp_path / "notes.txt"
    notes.write_text("remember to train longer\n")
    module = VideoDataModule(path=str(notes), val_fraction=0, num_frames=5, size=32, num_workers=0, batch_size=2)
    with pytest.raises(ValueError) as error:
        module.setup("fit")
    assert str(error.value).startswith(f"data.path {notes} is read as a list of videos, one path a line: the one file gives no")
    assert "remember to train longer: no such file" in str(error.value)


def _prepared_line(number: int) -> dict:
    """A line as ``vtok prepare --reencode`` writes it, with a caption a user added."""
    return {"path": f"videos/clip_{number:06d}.mp4", "frames": 300 + number % 7, "fps": 29.97, "width": 1280, "height": 720,
            "duration": 10.0, "codec": "h264", "keyframe_interval": 16, "source": f"/raw/clip_{number:06d}.mkv",
            "reader": "decord", "decord_check": 2, "reencoded_with": {"short_side": 720, "keyframe_interval": 16, "crf": 18},
            "source_bytes": 12_345_678 + number, "source_mtime_ns": 1_790_000_000_000_000_000 + number,
            "caption": "a dog runs along a beach at sunset"}  # fmt: skip


def _held_bytes(list_manifest) -> int:  # noqa: ANN001 - a lister
    tracemalloc.start()
    try:
        records = list_manifest()
        return tracemalloc.get_traced_memory()[0] // len(records)
    finally:
        tracemalloc.stop()


def test_a_listing_for_clips_keeps_only_the_fields_clips_are_cut_by(tmp_path: Path) -> None:
    """Every field of every line was kept: a million-line prepare manifest held 2.3 GB on each training rank."""
    lines = [_prepared_line(number) for number in range(3000)]
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    records = list_clip_records(manifest)
    assert [set(record) for record in records] == [set(CLIP_FIELDS) - {"pixel_aspect"}] * len(lines)
    assert records[7]["path"] == str(tmp_path / lines[7]["path"])
    assert {key: value for key, value in records[7].items() if key != "path"} == {
        key: lines[7][key] for key in CLIP_FIELDS if key in lines[7] and key != "path"}  # fmt: skip
    assert all(any(key is field for field in CLIP_FIELDS) for key in records[-1]), "each line's keys are the shared ones"
    whole, clip = _held_bytes(lambda: list_records(manifest)), _held_bytes(lambda: list_clip_records(manifest))
    assert clip * 3 < whole, f"{clip} bytes a line for clips, {whole} for whole lines"
    table = tmp_path / "manifest.csv"
    table.write_text("path,frames,fps,caption,pixel_aspect\nvideos/a.mp4,20,25,a cat,0.889\n")
    assert list_clip_records(table) == [{"path": str(tmp_path / "videos/a.mp4"), "frames": "20", "fps": "25",
                                         "pixel_aspect": "0.889"}]  # fmt: skip
