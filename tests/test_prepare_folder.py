"""`vtok prepare`'s output folder across runs: files deleted since, half-written copies, and data that sits
where prepare writes (its lists, its copies' folder), or an --out above the data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from vtok.commands.prepare import main as prepare
from vtok.data.manifest import read_jsonl

QUIET = ["--no-progress", "--workers", "0"]


@pytest.fixture()
def three_videos(video_folder: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    for video in sorted(video_folder.glob("*.mp4"))[:3]:
        shutil.copy(video, folder / video.name)
    return folder


def test_files_deleted_since_are_taken_out_of_the_lists_and_deleted_copies_made_again(
    three_videos: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "out"
    args = ["--data", str(three_videos), "--out", str(out), "--reencode", *QUIET]
    prepare(args)
    first, second, third = sorted(three_videos.glob("*.mp4"))
    copies = {Path(r["source"]).name: out / r["path"] for r in read_jsonl(out / "manifest.jsonl")}
    first.unlink()  # gone with its copy still there: the copy stays listed (training reads the copy)
    copies[second.name].unlink()  # the copy gone, the source still there: re-encoded again
    (out / "videos" / "stopped.partial.mp4").write_bytes(b"half")  # a run killed while re-encoding
    summary = prepare(args)
    assert summary.probed == 1 and summary.manifest_total == 3
    assert copies[second.name].is_file() and not (out / "videos" / "stopped.partial.mp4").exists()
    assert "1 files listed in" in caplog.text and "no longer exist" in caplog.text
    copies[first.name].unlink()  # now the first video has neither source nor copy: dropped, not listed for ever
    summary = prepare(args)
    assert summary.manifest_total == 2
    assert sorted(Path(r["source"]).name for r in read_jsonl(out / "manifest.jsonl")) == [second.name, third.name]


def test_a_list_whose_files_all_went_is_kept_with_an_error(three_videos: Path, tmp_path: Path) -> None:
    """Every file gone at once is an unmounted file system more often than a deleted dataset: nothing is dropped."""
    out = tmp_path / "out"
    prepare(["--data", str(three_videos), "--out", str(out), *QUIET])
    listed = (out / "manifest.jsonl").read_text()
    moved = tmp_path / "moved"
    three_videos.rename(moved)
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(next(moved.glob("*.mp4")), other / "new.mp4")
    with pytest.raises(ValueError, match="none of the 3 files listed in .* exists"):
        prepare(["--data", str(other), "--out", str(out), *QUIET])
    assert (out / "manifest.jsonl").read_text() == listed


def test_an_out_above_the_data_takes_the_data(three_videos: Path) -> None:
    """``--data /data/videos --out /data``: every file is under --out, and all were left out ("no video files found")."""
    (three_videos / "videos").mkdir()
    for video in three_videos.glob("*.mp4"):
        video.rename(three_videos / "videos" / video.name)
    summary = prepare(["--data", str(three_videos / "videos"), "--out", str(three_videos), *QUIET])
    assert summary.accepted == 3
    # with --reencode the copies would go among the sources: said, not mixed
    with pytest.raises(ValueError, match="3 videos of --data .* are in .*videos .*, where --reencode writes its copies"):
        prepare(["--data", str(three_videos / "videos"), "--out", str(three_videos), "--reencode", *QUIET])


def test_an_earlier_runs_copies_inside_the_data_are_not_taken_for_videos(three_videos: Path) -> None:
    out = three_videos / "prepared"
    args = ["--data", str(three_videos), "--out", str(out), "--reencode", *QUIET]
    prepare(args)
    summary = prepare(args)  # the copies in data/prepared/videos are not new videos
    assert (summary.found, summary.probed, summary.manifest_total) == (3, 0, 3)
    with pytest.raises(ValueError, match="are re-encoded copies that .*manifest.jsonl lists"):
        prepare(["--data", str(out / "videos"), "--out", str(out), *QUIET])


def test_a_list_of_the_users_own_in_out_is_not_taken_for_prepares(three_videos: Path, tmp_path: Path) -> None:
    """A list of the user's own called manifest.jsonl with --out its folder was read as an earlier run's output:
    its lines trusted unchecked, or a KeyError where they had no frame count."""
    lists = tmp_path / "lists"
    lists.mkdir()
    own = lists / "manifest.jsonl"
    own.write_text("".join(json.dumps({"path": str(p)}) + "\n" for p in sorted(three_videos.glob("*.mp4"))))
    for data in (own, three_videos):  # that list as --data, or other data into its folder
        with pytest.raises(ValueError, match="manifest.jsonl is not a list vtok prepare wrote"):
            prepare(["--data", str(data), "--out", str(lists), *QUIET])
    assert own.read_text().count("\n") == 3 and "frames" not in own.read_text()  # untouched


def test_rejections_of_files_that_never_were_stay_listed_in_silence(
    three_videos: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (three_videos / "dangling.mp4").symlink_to(tmp_path / "nowhere.mp4")  # rejected: no such file
    args = ["--data", str(three_videos), "--out", str(tmp_path / "out"), *QUIET]
    prepare(args)
    caplog.clear()
    summary = prepare(args)  # not dropped with a warning at every rerun; checked again (its target may be there now)
    assert summary.probed == 1 and len(summary.rejected) == 1 and "no longer exist" not in caplog.text
    assert [Path(r["path"]).name for r in read_jsonl(tmp_path / "out" / "rejected.jsonl")] == ["dangling.mp4"]
