"""`vtok prepare --reencode` writes a variable frame rate source at a constant rate, frames kept at their times."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vtok.data.readers import PyAVReader
from vtok.data.reencode import at_constant_rate, reencode_video

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
