"""``vtok prepare --shards``' writer: what a killed first run leaves, and memory that does not grow with a video."""

from __future__ import annotations

import errno
import io
import json
import os
import tracemalloc
from pathlib import Path

import pytest
import webdataset as wds

import vtok.data.shard_writer as shard_writer
from vtok.data.shard_writer import write_shards
from vtok.data.shard_lists import expand_shards


class Killed(BaseException):
    """The process gone (SIGKILL: the OOM killer, a scheduler's time limit): nothing after it runs."""


def test_a_first_run_killed_before_it_rewrote_the_index_is_redone_by_the_next(
    video_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first run wrote index.json first at the end (or 30 s after a close): killed after shards had closed, it
    left shards no index accounted for, and the next run refused them instead of writing them again."""
    written = shard_writer._write_index

    def killed_before_rewriting(folder: Path, *args: object) -> None:
        if any(folder.glob("shard-*.tar")):
            raise Killed
        written(folder, *args)

    lines = [{"path": str(path), "frames": 20} for path in sorted(video_folder.glob("*.mp4"))]
    out = tmp_path / "shards"
    monkeypatch.setattr(shard_writer, "_write_index", killed_before_rewriting)
    with pytest.raises(Killed):
        write_shards(lines, video_folder, out, shard_samples=1)
    monkeypatch.undo()
    assert len(list(out.glob("shard-*.tar"))) == 8
    write_shards(lines, video_folder, out, shard_samples=3)
    shards = expand_shards(str(out))
    assert [Path(shard).name for shard in shards] == [f"shard-{i:06d}.tar" for i in range(3)]
    sources = [json.loads(member["json"])["path"] for member in wds.WebDataset(shards, shardshuffle=False)]
    assert sorted(sources) == [line["path"] for line in lines], "every line once"


def test_a_video_is_copied_into_its_shard_in_pieces(tmp_path: Path) -> None:
    """Each file was read whole before it went into the tar: an hour-long source took its size in memory."""
    video = tmp_path / "long.mp4"  # the bytes are copied as they are, never decoded: any content shows the memory
    video.write_bytes(os.urandom(32_000_000))
    tracemalloc.start()
    try:
        write_shards([{"path": str(video), "frames": 1000}], tmp_path, tmp_path / "shards")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4_000_000, f"{peak / 1e6:.1f} MB held to shard a 32 MB file"
    member = next(iter(wds.WebDataset(str(tmp_path / "shards" / "shard-000000.tar"), shardshuffle=False)))
    assert member["mp4"] == video.read_bytes() and json.loads(member["json"]) == {"path": str(video), "frames": 1000}


class UnreadableDisk(io.FileIO):
    """A file whose blocks cannot be read (a failing disk): it opens, and its reads fail."""

    def read(self, size: int = -1) -> bytes:
        raise OSError(errno.EIO, "Input/output error")


def test_a_video_that_cannot_be_read_part_way_through_its_copy_is_one_line_naming_it(
    video_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read whole, a read error left the file out with a warning; copied in pieces, the shard already holds part of
    it: the run stops with one line naming the file (it was taken for the shard's own disk failing: a traceback)."""
    lines = [{"path": str(path), "frames": 20} for path in sorted(video_folder.glob("*.mp4"))]
    bad, opened = Path(lines[3]["path"]), Path.open
    monkeypatch.setattr(Path, "open", lambda path, *a, **k: UnreadableDisk(path, "rb") if path == bad else opened(path, *a, **k))
    with pytest.raises(ValueError, match=f"{bad} could not be read \\(Input/output error\\) while it was copied"):
        write_shards(lines, video_folder, tmp_path / "shards", shard_samples=1)
    monkeypatch.undo()
    index = json.loads((tmp_path / "shards" / "index.json").read_text())
    write_shards(lines, video_folder, tmp_path / "shards", shard_samples=1)  # the next run carries on
    sources = [json.loads(member["json"])["path"] for member in wds.WebDataset(expand_shards(str(tmp_path / "shards")),
                                                                                 shardshuffle=False)]  # fmt: skip
    assert index["records"] >= 1 and sorted(sources) == [line["path"] for line in lines], "every line once"
