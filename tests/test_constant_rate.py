"""Frame rates: `vtok prepare --reencode` writes a variable frame rate source at a constant rate, frames kept at their
times; a clip rate (data.fps) is checked when set."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from vtok.commands.prepare import main as prepare
from vtok.data import synthetic_clip
from vtok.data.clips import ClipSpec
from vtok.data.manifest import read_jsonl
from vtok.data.readers import PyAVReader
from vtok.data.frame_timing import at_constant_rate, variable_rate
from vtok.data.reencode import reencode_video
from vtok.data.writers import write_video

LEVELS = 6  # grey step between two source frames: frame i is grey 10 + 6 i


def _write_variable_rate(path: Path) -> list[float]:
    """20 frames at 30 fps, then 20 at 10 fps (a phone in a dark stretch), each a grey of its own; their times."""
    ticks = [3000 * i for i in range(20)] + [60000 + 9000 * i for i in range(20)]  # in 1/90000 s
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt, stream.options = 32, 32, "yuv420p", {"qp": "0"}
        stream.codec_context.time_base = Fraction(1, 90000)
        for index, tick in enumerate(ticks):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 10 + LEVELS * index, np.uint8), format="rgb24")
            frame.pts, frame.time_base = tick, Fraction(1, 90000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return [tick / 90000 for tick in ticks]


def test_a_variable_frame_rate_source_is_written_with_its_frames_at_their_times(tmp_path: Path) -> None:
    """Written frame after frame at the average rate, the copy ran the fast stretch slow and the slow one fast:
    data.fps strides over it gave clips with uneven steps in time (found by a review)."""
    times = _write_variable_rate(tmp_path / "phone.mp4")
    copy = reencode_video(str(tmp_path / "phone.mp4"), tmp_path / "copy.mp4", frames=40, fps=15.0)
    assert copy.source_frames == 40
    frames = PyAVReader(copy.path).read(list(range(PyAVReader(copy.path).num_frames))).float()
    source = ((frames.mean((1, 2, 3)) - 10) / LEVELS).round().long().tolist()  # which source frame each one shows
    tick = 1 / 15
    assert len(source) == round(times[-1] * 15) + 1  # 2.6 s at 15 fps
    assert all(abs(times[index] - step * tick) <= tick / 2 + 1e-6 for step, index in enumerate(source)), source
    assert source == sorted(source) and source[-1] == 39


def test_evenly_spaced_frames_each_come_out_once() -> None:
    jittered = [(i / 25 + (0.004 if i % 3 else -0.003), i) for i in range(50)]  # timestamps rounded to milliseconds
    assert list(at_constant_rate(jittered, 25.0)) == list(range(50))
    assert list(at_constant_rate([(None, "a"), (None, "b"), (None, "c")], 10.0)) == ["a", "b", "c"]  # no times
    assert list(at_constant_rate([(0.0, "a"), (0.3, "b")], 10.0)) == ["a", "a", "b", "b"]  # b shown at 0.2 and 0.3


def _write_with_b_frames(path: Path, frames: int) -> None:
    """A constant 25 fps file of greys 10 + 6 i; x264 gives it B-frames at this size (not at 32x32)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt, stream.options = 64, 48, "yuv420p", {"bf": "3", "crf": "20"}
        for index in range(frames):
            grey = np.full((48, 64, 3), 10 + LEVELS * index, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(grey, format="rgb24")))
        container.mux(stream.encode())


def test_constant_rate_sources_are_copied_frame_for_frame(tmp_path: Path) -> None:
    """An AVI of H.264 with B-frames gives its frames' times in decoding order: taken as times, the copy
    repeated and dropped frames of a constant rate file (found by a review)."""
    for name in ("bframes.avi", "bframes.mp4"):
        _write_with_b_frames(tmp_path / name, 30)
        assert not variable_rate(str(tmp_path / name)), name
        copy = reencode_video(str(tmp_path / name), tmp_path / f"copy_{name}.mp4", frames=30, fps=25.0)
        frames = PyAVReader(copy.path).read(list(range(PyAVReader(copy.path).num_frames))).float()
        assert ((frames.mean((1, 2, 3)) - 10) / LEVELS).round().long().tolist() == list(range(30)), name
    _write_variable_rate(tmp_path / "phone.mp4")
    assert variable_rate(str(tmp_path / "phone.mp4"))


def test_a_jump_in_the_clock_is_a_cut_not_a_frozen_minute() -> None:
    """A capture whose clock jumps 60 s ahead was copied with its last frame before the jump held for 60 s."""
    times = [i / 25 for i in range(50)] + [60 + i / 25 for i in range(50)]
    assert list(at_constant_rate(zip(times, range(100)), 25.0)) == list(range(100))
    backwards = [i / 25 for i in range(5)] + [i / 25 for i in range(5)]  # two files joined, each from 0
    assert list(at_constant_rate(zip(backwards, range(10)), 25.0)) == list(range(10))


def test_a_clip_rate_that_is_no_finite_positive_number_is_refused_when_set() -> None:
    """data.fps: nan passed the check (nan <= 0 is false) and failed at the first clip with "cannot convert float NaN
    to integer"; inf quietly meant every frame."""
    for fps in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"fps \(data.fps\) must be a finite number above 0"):
            ClipSpec(5, fps=fps)
    assert ClipSpec(5, fps=23.976).stride(47.952) == 2


def test_prepare_records_an_ntsc_rate_as_it_is(tmp_path: Path) -> None:
    """29.97 fps (30000/1001) is recorded so, not rounded to 30: data.fps strides and tokenize's recorded rate are
    read from it (found by a mutation review: no test prepared a rate that is no whole number)."""
    (tmp_path / "videos").mkdir()
    write_video(tmp_path / "videos" / "ntsc.mp4", synthetic_clip(12, 32, 32, seed=3), fps=30000 / 1001)
    prepare(["--data", str(tmp_path / "videos"), "--out", str(tmp_path / "out"), "--no-progress", "--workers", "0"])
    (record,) = read_jsonl(tmp_path / "out" / "manifest.jsonl")
    assert record["fps"] == pytest.approx(30000 / 1001, rel=1e-6) and record["frames"] == 12
