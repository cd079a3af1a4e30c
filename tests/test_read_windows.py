"""Whole videos are decoded and resized a window of frames at a time: the frames of a long video at its
source size were all held at once before (about 6 MB a 720p frame: 90 GB for a 10-minute video)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import vtok.data.readers as readers
from vtok.data import synthetic_clip, write_video
from vtok.data.clips import ClipSpec
from vtok.data.dataset import READ_WINDOW, video_clip_with_info
from vtok.data.readers import DecordReader, FallbackReader, PyAVReader, VideoDecodeError, open_video
from vtok.data.transforms import frames_to_clip

FRAMES = 3 * READ_WINDOW + 5


@pytest.fixture(scope="module")
def long_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("long") / "long.mp4"
    write_video(path, synthetic_clip(FRAMES, 48, 64, seed=3), keyframe_interval=20)
    return path


class WindowSpy:
    """A reader that records the largest number of frames at the source's size it handed over at once."""

    def __init__(self, reader: readers.VideoReader) -> None:
        self.inner, self.largest = reader, 0
        self.path, self.num_frames, self.fps, self.pixel_aspect = reader.path, reader.num_frames, reader.fps, reader.pixel_aspect

    def read(self, indices: list[int]) -> torch.Tensor:
        self.largest = max(self.largest, len(indices))
        return self.inner.read(indices)

    def read_windows(self, indices: list[int], window: int):
        for frames in self.inner.read_windows(indices, window):
            self.largest = max(self.largest, len(frames))
            yield frames


@pytest.mark.parametrize("backend", ["decord", "pyav", "auto"])
def test_a_whole_video_read_in_windows_equals_one_read(long_video: Path, backend: str) -> None:
    reader = WindowSpy(open_video(long_video, backend))
    video, info = video_clip_with_info(reader, ClipSpec(FRAMES), (32, 32), None)
    assert reader.largest == READ_WINDOW and info.source_size == (48, 64)
    assert torch.equal(video, frames_to_clip(open_video(long_video, backend).read(range(FRAMES)), (32, 32)))
    # a random crop and flip are drawn once for the whole clip, as a one-window clip draws them
    drawn = video_clip_with_info(open_video(long_video, backend), ClipSpec(FRAMES), (32, 24), torch.Generator().manual_seed(5), True)[0]
    generator = torch.Generator().manual_seed(5)
    one_read = open_video(long_video, backend)
    indices = ClipSpec(FRAMES).frame_indices(FRAMES, one_read.fps, generator)  # the clip's start comes first
    once = frames_to_clip(one_read.read(indices), (32, 24), generator, True)
    assert torch.equal(drawn, once)


def test_pyav_reads_the_windows_in_one_pass(long_video: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each PyAV read decodes from the start: window by window, the start was decoded again for every window."""
    decoded = []
    original = readers.frames_in_order

    def counted(*args):
        for position, frame in original(*args):
            decoded.append(position)
            yield position, frame

    monkeypatch.setattr(readers, "frames_in_order", counted)
    reader = PyAVReader(long_video)
    windows = list(reader.read_windows(range(FRAMES), READ_WINDOW))
    assert [len(w) for w in windows] == [READ_WINDOW] * 3 + [5] and decoded == list(range(FRAMES))
    assert torch.equal(torch.cat(windows), reader.read(range(FRAMES)))
    repeated = [0, 0, 1, 1, 2, 2, 3, 3]  # a clip resampled to a higher frame rate repeats frames, across windows too
    assert torch.equal(torch.cat(list(reader.read_windows(repeated, 3))), reader.read(repeated))


def test_decord_is_opened_again_as_it_reads_and_a_failure_mid_way_goes_on_with_pyav(
    long_video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = PyAVReader(long_video).read(range(FRAMES))
    monkeypatch.setattr(readers, "DECORD_REOPEN_FRAMES", READ_WINDOW)  # decord keeps memory per decoded frame
    assert torch.equal(torch.cat(list(DecordReader(long_video).read_windows(range(FRAMES), READ_WINDOW))), expected)

    read = DecordReader.read

    def fails_after_the_first_window(self: DecordReader, indices: list[int]) -> torch.Tensor:
        if indices[0] >= READ_WINDOW:
            raise VideoDecodeError(self.path, "decord broke")
        return read(self, indices)

    monkeypatch.setattr(DecordReader, "read", fails_after_the_first_window)
    reader = FallbackReader(long_video, checked=True)
    assert torch.equal(torch.cat(list(reader.read_windows(range(FRAMES), READ_WINDOW))), expected)
    assert reader.decord_mismatch is None and reader._primary is None, "PyAV reads the file from then on"


def test_decord_failing_to_open_the_file_again_is_a_decode_error(long_video: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every failure of a reader is a VideoDecodeError (the dataset skips and counts the file, FallbackReader
    hands over to PyAV): decord's own error escaped when the file had gone by the time it was opened again."""
    moved = tmp_path / "moved.mp4"
    moved.write_bytes(long_video.read_bytes())
    monkeypatch.setattr(readers, "DECORD_REOPEN_FRAMES", READ_WINDOW)
    windows = DecordReader(moved).read_windows(range(FRAMES), READ_WINDOW)
    next(windows)
    moved.unlink()
    with pytest.raises(VideoDecodeError, match="decord cannot open it again"):
        next(windows)
