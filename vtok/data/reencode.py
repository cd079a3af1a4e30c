"""Re-encoding a video as H.264 with short keyframe intervals, optionally smaller.

Random access to a clip decodes from the keyframe before it; datasets encoded for streaming often
have a keyframe every few seconds (or one per file), so every clip decodes hundreds of frames it
throws away. Re-encoding once with a keyframe every few frames makes clip reads cheap.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from vtok.data.writers import write_video


def scaled_size(height: int, width: int, short_side: int | None) -> tuple[int, int]:
    """``(height, width)`` with the short side at ``short_side`` (never enlarged), both even."""
    scale = min(1.0, short_side / min(height, width)) if short_side else 1.0
    return max(2, round(height * scale / 2) * 2), max(2, round(width * scale / 2) * 2)


def _frames(path: str, count: int, height: int, width: int) -> Iterator[np.ndarray]:
    with av.open(path) as container:
        try:
            for index, frame in enumerate(container.decode(video=0)):
                if index >= count:
                    return
                # PyAV resizes with swscale while converting; area averaging suits downscaling
                yield frame.to_ndarray(width=width, height=height, format="rgb24", interpolation="AREA")
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
) -> Path:
    """Writes the first ``frames`` frames of ``source`` to ``destination`` as H.264.

    Args:
        source: the video (frames are decoded with PyAV, in order).
        destination: the mp4 to write (written to a temporary name, then renamed).
        frames: how many frames to keep (the verified count).
        fps: frame rate of the output.
        short_side: resize so the shorter side has this many pixels (never enlarges).
        keyframe_interval: at most this many frames between keyframes.
        crf: H.264 quality (lower is better; 18 is visually lossless).
    """
    with av.open(source) as container:
        stream = container.streams.video[0]
        height, width = scaled_size(stream.codec_context.height, stream.codec_context.width, short_side)
    destination = Path(destination)
    partial = destination.with_name(destination.stem + ".partial" + destination.suffix)
    write_video(partial, _frames(source, frames, height, width), fps, crf=crf, keyframe_interval=keyframe_interval)
    return partial.replace(destination)
