"""The pinned clip protocol of the offline commands: frames, stride or fps, size, centre crop.

Evaluation numbers are only comparable when frames, frame rate, resolution and crop are fixed;
every command that reads videos for a model takes them from the same flags, defaults them to the
clip shape the model was trained on (recorded in its checkpoint or export), and records them.
"""

from __future__ import annotations

import argparse
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vtok.data import ClipSpec, VideoClipDataset, VideoLength, WholeVideoDataset
from vtok.data.readers import ReaderBackend
from vtok.data.sources import files_outside, list_clip_records, unique_records
from vtok.evaluation.report import without_evaluation_pictures
from vtok.vae import VideoAutoencoder

DEFAULT_FRAMES, DEFAULT_SIZE = 17, 256
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClipProtocol:
    """Frames per clip (``None``: each video whole), stride or target fps, output size; centre clip
    and centre crop."""

    frames: int | None
    height: int
    width: int
    stride: int = 1
    fps: float | None = None

    def as_dict(self) -> dict[str, Any]:
        clip = "centre" if self.frames else "whole video from its first frame, 1 + k*t frames"
        return {**asdict(self), "crop": "centre", "clip": clip}


def add_protocol_arguments(parser: argparse.ArgumentParser, whole_video: bool = False) -> None:
    """The protocol flags; with ``whole_video``, no ``--frames`` means each video whole."""
    default = "whole videos" if whole_video else "the clip shape the model was trained on"
    group = parser.add_argument_group(f"clip protocol (defaults: {default})")
    whole = " (leave it out for each video whole)" if whole_video else ""
    group.add_argument("--frames", type=int, help=f"frames per clip, 1 + k*t, at least 1{whole}")
    group.add_argument("--size", type=int, nargs="+", metavar="N", help="output size: one number or H W")
    group.add_argument("--stride", type=int, help="take every n-th frame (default: the training's data.frame_stride, else 1)")
    group.add_argument(
        "--fps",
        type=float,
        help="target frame rate (overrides --stride per video; a video slower than it keeps its own rate, stride 1; "
        "default: the training's data.fps when it set one)",
    )
    group.add_argument("--backend", choices=["auto", "decord", "pyav"], default="auto", help="video reader")


def check_fps(fps: float | None) -> None:
    """Raises ``ValueError`` naming ``--fps`` unless it is absent or a finite number above 0 (argparse's
    ``float`` takes ``nan`` and ``inf``: NaN failed far into the run, inf took every frame and recorded no rate)."""
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"--fps must be a finite number above 0, got {fps:g}")


def resolve_protocol(
    args: argparse.Namespace, model: VideoAutoencoder, recorded: dict[str, Any] | None, whole_video: bool = False
) -> ClipProtocol:
    """The protocol from the flags, else from the recorded training clip, checked against the model.

    Args:
        args: parsed flags of :func:`add_protocol_arguments`.
        model: the model the clips are for.
        recorded: the model's training clip (``{"num_frames", "size", "frame_stride", "fps"}``; the last two
            since 2026-11-27), when known. Its stride and fps apply when neither ``--stride`` nor ``--fps`` is given.
        whole_video: without ``--frames``, each video whole instead of the recorded clip length.

    Raises:
        ValueError: a flag out of range (``--frames`` or ``--stride`` below 1, ``--fps`` not a finite number
            above 0, more than two ``--size`` numbers), or the clip shape does not fit the model's compression
            (the message names sizes that do).
    """
    for flag, value, least in (("frames", args.frames, 1), ("stride", args.stride, 1)):
        if value is not None and value < least:
            raise ValueError(f"--{flag} must be at least {least}, got {value}")
    check_fps(args.fps)
    if args.size is not None and not 1 <= len(args.size) <= 2:
        raise ValueError(f"--size takes one number or two (H W), got {len(args.size)}: {' '.join(map(str, args.size))}")
    recorded = recorded or {}
    frames = args.frames or (None if whole_video else recorded.get("num_frames") or DEFAULT_FRAMES)
    size = args.size or recorded.get("size") or [DEFAULT_SIZE]
    guessed = [
        f"{flag} {value}" for flag, value, given, known in (
            ("--size", DEFAULT_SIZE, args.size, recorded.get("size")),
            ("--frames", DEFAULT_FRAMES, args.frames or whole_video, recorded.get("num_frames")),
        ) if not (given or known)
    ]  # fmt: skip
    if guessed:  # a folder from save_pretrained: every video was resized to 256x256 with no word
        log.warning(
            "the model records no training clip (saved with save_pretrained, or exported by an older vtok): taking %s; give %s to choose",
            " and ".join(guessed), " and ".join(g.split()[0] for g in guessed),
        )  # fmt: skip
    height, width = (size[0], size[-1]) if isinstance(size, (list, tuple)) else (size, size)
    model.check_clip(frames or 1, height, width)
    if args.stride is None and args.fps is None:  # neither flag: the frame rate the model was trained at
        stride, fps = recorded.get("frame_stride") or 1, recorded.get("fps")
    else:
        stride, fps = args.stride or 1, args.fps
    return ClipProtocol(frames=frames, height=height, width=width, stride=stride, fps=fps)


def clip_dataset(
    protocol: ClipProtocol,
    data: str,
    model: VideoAutoencoder,
    backend: ReaderBackend = "auto",
    out: str | Path | None = None,
) -> VideoClipDataset:
    """Centre clips (or whole videos) of ``data``'s videos under ``protocol``; unusable files raise on load.

    A manifest's verified frame counts and frame rates (``frames``, ``fps``, as ``vtok prepare`` writes
    them) bound the clips, as in training: a damaged file is read only up to its last good frame.
    The files under ``out`` (the folder the command writes its videos in, when given) are left out: videos it
    wrote there are no data (see :func:`~vtok.data.sources.files_outside`); so are the pictures of earlier
    evaluations wherever they were written (:func:`~vtok.evaluation.report.without_evaluation_pictures`), and
    each video is taken once however often, or however spelt, ``data`` lists it.

    Raises:
        FileNotFoundError: ``data`` names nothing.
        ValueError: ``data`` holds no video file (outside ``out``), or a manifest line has a malformed
            ``frames`` or ``fps``.
    """
    records = list_clip_records(data)
    kept = without_evaluation_pictures([record["path"] for record in records])
    if out is not None:
        kept = files_outside(kept, out)
    kept_paths = set(kept)  # each video once below: listed twice (or spelt two ways), it is read, scored and indexed once
    records = unique_records([record for record in records if record["path"] in kept_paths])
    if not records:
        raise ValueError(f"no video files found in {data!r}; give a folder of videos, a glob or a manifest")
    files = [record["path"] for record in records]
    lengths = [VideoLength.from_record(record) for record in records]
    size = (protocol.height, protocol.width)
    if protocol.frames is None:
        multiple = model.frame_multiple
        return WholeVideoDataset(files, size, multiple, protocol.stride, protocol.fps, backend, lengths)
    clip = ClipSpec(protocol.frames, protocol.stride, protocol.fps)
    return VideoClipDataset(files, clip, size, backend=backend, lengths=lengths, train=False)
