"""Which frames make a clip: a number of frames at a frame stride, or at a target frame rate."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch

from vtok.data.decord_check import CHECK_VERSION
from vtok.data.readers import READER_NAMES


log = logging.getLogger(__name__)
_said: set[str] = set()  # the warnings below given in this process (each loader worker is one)


def _warn_once(key: str, message: str, *args: object) -> None:
    if key not in _said:
        _said.add(key)
        log.warning(message, *args)


OFF_RATE = 0.05  # a clip rate this far (relative) from data.fps is said once


def slower_than(video_fps: float, fps: float) -> bool:
    """Whether a video recorded at ``video_fps`` is too slow for clips at ``fps``: its clips take every frame and run
    at its own rate. By more than 1%: NTSC rates (23.976, 29.97, 59.94) fall that far short of 24, 30 and 60."""
    return 0 < video_fps < 0.99 * fps


class ClipTooShortError(ValueError):
    """The video holds fewer frames than one clip spans."""


class VideoLength(NamedTuple):
    """What a manifest knows of a video: the frames verified to decode, its frame rate, and the
    decoder that reads it right.

    Clips are drawn within ``frames`` (never beyond what ``vtok prepare`` verified), without
    trusting the count in the file's header; ``reader`` (``"decord"`` or ``"pyav"``) spares the
    default reader its check of decord against PyAV (see :func:`~vtok.data.readers.open_video`).
    """

    frames: int
    fps: float | None = None
    reader: str | None = None

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> VideoLength | None:
        """From a manifest line or a shard's metadata; ``None`` when it holds no frame count.

        ``frames`` is a whole number, 0 or more (``20.0`` and ``"20"``, as CSV and some JSON writers
        give it, count as 20); ``fps`` a finite number, 0 or more, where 0 or empty means unknown
        (the file's own rate is used).

        Raises:
            ValueError: a ``frames`` or ``fps`` that is not that; the message names the field and value.
        """
        if record.get("frames") in (None, ""):
            return None
        fps = record.get("fps")
        reader = record.get("reader") or None
        if reader is not None and reader not in READER_NAMES:
            raise ValueError(f"'reader' is {reader!r}: it must be one of {', '.join(READER_NAMES)} (as vtok prepare writes it)")
        if reader == "decord" and _number(record.get("decord_check")) != CHECK_VERSION:
            reader = None  # found right by an older check, which missed open GOPs: checked again when opened
        return cls(_whole_frames(record["frames"]), None if fps in (None, "") else _frame_rate(fps), reader)


def _number(value: Any) -> float | None:
    """``value`` as a number (a number, or a string of one, as CSV gives it), else ``None``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _whole_frames(value: Any) -> int:
    number = _number(value)
    if number is None or not math.isfinite(number) or number != int(number) or number < 0:
        raise ValueError(f"'frames' is {value!r}: it must be a whole number of frames, 0 or more")
    return int(number)


def _frame_rate(value: Any) -> float:
    number = _number(value)
    if number is None or not math.isfinite(number) or number < 0:
        raise ValueError(f"'fps' is {value!r}: it must be a finite number of frames per second, 0 or more (0: unknown)")
    return number


@dataclass(frozen=True)
class ClipSpec:
    """How clips are cut from a video.

    Args:
        num_frames: frames per clip (``1 + k·t`` for a causal model with temporal factor ``t``).
        frame_stride: take every ``frame_stride``-th frame (ignored when ``fps`` is set).
        fps: target frame rate; the stride becomes ``round(video_fps / fps)`` per video, at least 1 (a
            rate more than 5 % off the target, 30 fps at 24 or 60 at 24, is warned of once).
        start: where a clip without a random start begins: ``"centre"`` (a centre clip), or ``"first"``,
            the video's first frame (a whole video for a causal model: its first frame is the one encoded alone).
    """

    num_frames: int
    frame_stride: int = 1
    fps: float | None = None
    start: Literal["centre", "first"] = "centre"

    def __post_init__(self) -> None:
        if self.num_frames < 1:
            raise ValueError(f"num_frames must be at least 1, got {self.num_frames}")
        if self.frame_stride < 1:
            raise ValueError(f"frame_stride must be at least 1, got {self.frame_stride}")
        if self.fps is not None and not (math.isfinite(self.fps) and self.fps > 0):  # NaN failed at the first clip
            raise ValueError(f"fps (data.fps) must be a finite number above 0, got {self.fps}")

    def stride(self, video_fps: float) -> int:
        if self.fps is None:
            return self.frame_stride
        if not video_fps > 0:  # unknown (0 or NaN): nothing to set the stride from
            _warn_once(
                "unknown rate",
                "data.fps / --fps %g, but some videos record no frame rate: their clips take every %d-th frame "
                "(data.frame_stride / --stride) whatever their speed (`vtok prepare --reencode` writes copies of such "
                "files at 24 fps)",
                self.fps, self.frame_stride,
            )  # fmt: skip
            return self.frame_stride
        if slower_than(video_fps, self.fps):
            _warn_once(
                "slow source",
                "data.fps / --fps %g is above the frame rate of some videos (e.g. %g fps): their clips take every frame and run "
                "at the video's own rate, slower than asked (frames are never repeated)",
                self.fps, video_fps,
            )  # fmt: skip
        stride = max(1, round(video_fps / self.fps))
        if not slower_than(video_fps, self.fps) and abs(video_fps / stride / self.fps - 1) > OFF_RATE:
            _warn_once(
                "off rate",
                "data.fps / --fps %g: some videos' frame rates are no whole multiple of it (e.g. %g fps): their clips run at "
                "%g fps (frame stride %d: strides stay whole, so that frames stay evenly spaced)",
                self.fps, video_fps, round(video_fps / stride, 3), stride,
            )  # fmt: skip
        return stride

    def span(self, video_fps: float) -> int:
        """Frames of the source video one clip covers."""
        return (self.num_frames - 1) * self.stride(video_fps) + 1

    def longest(self, available: int, video_fps: float, multiple: int = 1) -> "ClipSpec":
        """The longest clip of ``1 + k·multiple`` frames that ``available`` frames hold at this
        spec's stride or fps (``num_frames`` is ignored), from the first frame: a whole video for a causal
        model (the frames that do not fill ``1 + k·multiple`` are left at its end).

        Raises:
            ClipTooShortError: the video has no frame.
        """
        if available < 1:
            raise ClipTooShortError("too short: the video has no frames")
        stride = self.stride(video_fps)
        frames = 1 + (available - 1) // stride // multiple * multiple
        return ClipSpec(frames, stride, start="first")

    def frame_indices(
        self, available: int, video_fps: float, generator: torch.Generator | None = None
    ) -> list[int]:
        """Frame indices of one clip: a random start drawn from ``generator``, else the centred clip (or the
        first, for ``start="first"``).

        Raises:
            ClipTooShortError: the video is shorter than one clip.
        """
        span, stride = self.span(video_fps), self.stride(video_fps)
        if available < span:
            raise ClipTooShortError(
                f"too short: a clip of {self.num_frames} frames at stride {stride} spans {span} frames, "
                f"the video has {available}"
            )
        room = available - span
        if generator is not None:
            start = int(torch.randint(room + 1, (), generator=generator))
        else:
            start = room // 2 if self.start == "centre" else 0
        return list(range(start, start + span, stride))
