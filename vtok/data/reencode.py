"""Re-encoding a video as H.264 with short keyframe intervals, optionally smaller.

Random access to a clip decodes from the keyframe before it; datasets encoded for streaming often
have a keyframe every few seconds (or one per file), so every clip decodes hundreds of frames it
throws away. Re-encoding once with a keyframe every few frames makes clip reads cheap.

The copy holds the frames the readers give (:mod:`vtok.data.pyav_frames`): the best video stream,
shown upright, so it needs no display rotation of its own, and with square pixels (an anamorphic
source is resized to the shape a player shows it at), so it needs no pixel aspect ratio either.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import av
import numpy as np

from vtok.data.decode_errors import VideoDecodeError
from vtok.data.frame_timing import at_constant_rate, variable_rate
from vtok.data.pyav_frames import (
    displayed_array,
    displayed_size,
    frames_in_order,
    pixel_aspect,
    quarter_turns,
    video_stream,
)
from vtok.data.scan_pool import still_working
from vtok.data.transforms import shown_size
from vtok.data.writers import write_video


def scaled_size(height: int, width: int, short_side: int | None) -> tuple[int, int]:
    """``(height, width)`` with the short side at ``short_side`` (never enlarged), both even (H.264's 4:2:0).

    The short side is rounded down to even and the long side follows it at the source's aspect ratio (to the
    nearest even number, never past the source's side): rounding both sides on their own made 64x96 at
    ``short_side`` 33 into 32x50 (4 % wider) and enlarged an odd-sized source by a pixel.
    """
    short, long = sorted((height, width))
    scale = min(1.0, short_side / short) if short_side else 1.0
    new_short = max(2, int(short * scale) // 2 * 2)
    new_long = max(2, min(round(new_short * long / short / 2) * 2, long // 2 * 2))
    return (new_short, new_long) if height <= width else (new_long, new_short)


class ReencodedCopy(NamedTuple):
    """What :func:`reencode_video` wrote."""

    path: Path
    source_frames: int  # source frames decoded: fewer than asked where a damaged frame stopped the decoding


def _frames(path: str, count: int, fps: float, short_side: int | None, decoded: list[int]) -> Iterator[np.ndarray]:
    """The frames of the output: the first ``count`` source frames, or of a variable frame rate source's the one
    shown at each tick of ``fps`` (``decoded`` gets one item per source frame decoded)."""
    with av.open(path) as container:
        stream = video_stream(container)
        if stream is None:
            raise VideoDecodeError(path, "it has no video stream")
        size: tuple[int, int] | None = None
        timed = _timed(frames_in_order(container, stream, path), count, decoded)
        frames = at_constant_rate(timed, fps) if variable_rate(path) else (frame for _, frame in timed)
        for frame in frames:
            still_working()  # a long video takes minutes to re-encode: not a stall (vtok prepare's deadline)
            if size is None:  # the first frame as shown (a display matrix may turn it, its pixels may not be square)
                shown = shown_size(*displayed_size(frame), pixel_aspect(stream, quarter_turns(frame)))
                size = scaled_size(*shown, short_side)
            # PyAV resizes with swscale while converting; area averaging suits downscaling
            yield displayed_array(frame, size)


def _timed(
    frames: Iterator[tuple[int, av.VideoFrame]], count: int, decoded: list[int]
) -> Iterator[tuple[float | None, av.VideoFrame]]:
    """``(time, frame)`` of the first ``count`` of ``frames`` (from :func:`frames_in_order`, which raises where the
    frame size changes); ``decoded`` gets one item per frame decoded."""
    try:
        for index, frame in frames:
            if index >= count:
                return
            decoded.append(index)
            yield frame.time, frame
    except av.error.FFmpegError:
        return  # a damaged tail: keep what decoded (the output is verified again afterwards)


def reencode_video(
    source: str,
    destination: str | Path,
    frames: int,
    fps: float,
    short_side: int | None = None,
    keyframe_interval: int = 8,
    crf: int = 18,
) -> ReencodedCopy:
    """Writes the first ``frames`` frames of ``source`` to ``destination`` as H.264 at the constant rate ``fps``
    (a variable frame rate source's frames repeated or dropped to keep their times: see
    :mod:`vtok.data.frame_timing`).

    Args:
        source: the video (frames are decoded with PyAV, in order, and written upright, with square pixels).
        destination: the mp4 to write (written to a temporary name, then renamed).
        frames: how many frames to keep (the verified count).
        fps: frame rate of the output.
        short_side: resize so the shorter side has this many pixels (never enlarges).
        keyframe_interval: at most this many frames between keyframes.
        crf: H.264 quality (lower is better; 18 is visually lossless).
    """
    decoded: list[int] = []
    # a failed or interrupted encode leaves no half-written copy behind (write_video writes aside, then renames)
    frames_out = _frames(source, frames, fps, short_side, decoded)
    written = write_video(destination, frames_out, fps, crf=crf, keyframe_interval=keyframe_interval)
    return ReencodedCopy(written, len(decoded))
