"""Writing videos to mp4 with PyAV (H.264 when the build has libx264, MPEG-4 Part 2 otherwise)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch


def to_uint8_frames(video: torch.Tensor) -> torch.Tensor:
    """One video ``[3, T, H, W]`` in ``[-1, 1]`` as uint8 RGB frames ``[T, H, W, 3]`` on the CPU
    (what :func:`write_video` takes); values outside ``[-1, 1]`` are clipped."""
    if video.ndim != 4 or video.shape[0] != 3:
        raise ValueError(f"expected one video [3, T, H, W], got shape {tuple(video.shape)}")
    return video.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).permute(1, 2, 3, 0).cpu()


def container_rate(fps: float) -> Fraction:
    """``fps`` as the mp4's time base stores it (a fraction of denominator at most 1001, as 30000/1001).

    Raises:
        ValueError: it cannot be stored within 0.1% (0.0004 fps rounded to 0, which PyAV wrote as 24 fps).
    """
    rate = Fraction(fps).limit_denominator(1001) if math.isfinite(fps) else Fraction(0)
    if rate <= 0 or abs(rate - fps) > 1e-3 * fps:
        raise ValueError(
            f"a frame rate of {fps:g} fps cannot be stored in an mp4 (it would be {float(rate):g}); use 0.001 or more"
        )
    return rate


def write_video(
    path: str | Path,
    frames: torch.Tensor | Iterable[np.ndarray],
    fps: float = 24.0,
    crf: int = 18,
    keyframe_interval: int | None = None,
    reproducible: bool = False,
) -> Path:
    """Writes uint8 RGB frames (H and W even) to ``path``: first to ``<stem>.partial.mp4`` beside it, renamed
    to ``path`` once complete, so an error or Ctrl-C mid-write leaves no truncated video (and an earlier file at
    ``path`` as it was); a kill leaves the ``.partial`` file (``vtok prepare`` deletes those in its folder).

    Args:
        path: output file; parent folders are created.
        frames: a ``[T, H, W, 3]`` tensor, or an iterable of ``[H, W, 3]`` arrays (streamed, so a
            long video need not be held in memory).
        fps: frame rate written in the container.
        crf: H.264 constant rate factor (lower is better quality; 18 is visually lossless).
        keyframe_interval: at most this many frames between keyframes (the encoder's default,
            250 for x264, when unset). Short intervals make random access to clips cheap.
        reproducible: the same frames always give the same file. x264's macroblock-tree rate control is
            turned off for it: on some CPUs its assembly gives other pixels from run to run (PyAV 18's
            x264 on an AMD EPYC: 3 of 8 generated 40x40 clips came out different, by up to 37 levels).
            The file is then about 20-30% larger, at a PSNR 0.1-0.6 dB higher (crf 18).
    """
    rate = container_rate(fps)
    if isinstance(frames, torch.Tensor):
        if frames.ndim != 4:
            raise ValueError(f"expected uint8 frames [T, H, W, 3], got {frames.dtype} {tuple(frames.shape)}")
        frames = frames.contiguous().numpy()
    arrays = iter(frames)
    first = next(arrays, None)
    if first is None:
        raise ValueError(f"no frames to write to {path}")
    first = np.asarray(first)
    if first.ndim != 3 or first.shape[-1] != 3 or first.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames [T, H, W, 3], got {first.dtype} frames of shape {first.shape}")
    height, width = first.shape[:2]
    if height % 2 or width % 2:
        raise ValueError(f"H.264 needs even height and width, got {height}x{width}")
    if keyframe_interval is not None and keyframe_interval < 1:
        raise ValueError(f"keyframe_interval must be at least 1, got {keyframe_interval}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    partial = path.with_name(f"{path.stem}.partial{path.suffix}")
    try:
        with av.open(str(partial), mode="w") as container:
            stream = container.add_stream(codec, rate=rate)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            if keyframe_interval is not None:
                stream.codec_context.gop_size = keyframe_interval
            if codec == "libx264":
                stream.options = {"crf": str(crf), "preset": "veryfast", **({"x264-params": "mbtree=0"} if reproducible else {})}
            for array in itertools.chain([first], arrays):
                container.mux(stream.encode(av.VideoFrame.from_ndarray(np.asarray(array), format="rgb24")))
            container.mux(stream.encode())
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return partial.replace(path)

