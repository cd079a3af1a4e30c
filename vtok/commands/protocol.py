"""The pinned clip protocol of the offline commands: frames, stride or fps, size, centre crop.

Evaluation numbers are only comparable when frames, frame rate, resolution and crop are fixed;
every command that reads videos for a model takes them from the same flags, defaults them to the
clip shape the model was trained on (recorded in its checkpoint or export), and records them.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from typing import Any

from vtok.data import ClipSpec, VideoClipDataset, WholeVideoDataset, list_files
from vtok.data.readers import ReaderBackend
from vtok.vae import VideoAutoencoder

DEFAULT_FRAMES, DEFAULT_SIZE = 17, 256


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
        return {**asdict(self), "crop": "centre", "clip": "centre" if self.frames else "whole video, 1 + k*t frames"}


def add_protocol_arguments(parser: argparse.ArgumentParser, whole_video: bool = False) -> None:
    """The protocol flags; with ``whole_video``, no ``--frames`` means each video whole."""
    default = "whole videos" if whole_video else "the clip shape the model was trained on"
    group = parser.add_argument_group(f"clip protocol (defaults: {default})")
    group.add_argument("--frames", type=int, help="frames per clip, 1 + k*t")
    group.add_argument("--size", type=int, nargs="+", metavar="N", help="output size: one number or H W")
    group.add_argument("--stride", type=int, default=1, help="take every n-th frame")
    group.add_argument("--fps", type=float, help="target frame rate (overrides --stride per video)")
    group.add_argument("--backend", choices=["auto", "decord", "pyav"], default="auto", help="video reader")


def resolve_protocol(
    args: argparse.Namespace, model: VideoAutoencoder, recorded: dict[str, Any] | None, whole_video: bool = False
) -> ClipProtocol:
    """The protocol from the flags, else from the recorded training clip, checked against the model.

    Args:
        args: parsed flags of :func:`add_protocol_arguments`.
        model: the model the clips are for.
        recorded: the model's training clip (``{"num_frames", "size"}``), when known.
        whole_video: without ``--frames``, each video whole instead of the recorded clip length.

    Raises:
        ValueError: the clip shape does not fit the model's compression (the message names sizes that do).
    """
    recorded = recorded or {}
    frames = args.frames or (None if whole_video else recorded.get("num_frames") or DEFAULT_FRAMES)
    size = args.size or recorded.get("size") or [DEFAULT_SIZE]
    height, width = (size[0], size[-1]) if isinstance(size, (list, tuple)) else (size, size)
    model.compression.check_clip(frames or 1, height, width)
    return ClipProtocol(frames=frames, height=height, width=width, stride=args.stride, fps=args.fps)


def clip_dataset(protocol: ClipProtocol, data: str, model: VideoAutoencoder, backend: ReaderBackend = "auto") -> VideoClipDataset:
    """Centre clips (or whole videos) of ``data``'s videos under ``protocol``; unusable files raise on load.

    Raises:
        FileNotFoundError: ``data`` names nothing.
        ValueError: ``data`` holds no video file.
    """
    files = list_files(data)
    if not files:
        raise ValueError(f"no video files found in {data!r}; give a folder of videos, a glob or a manifest")
    size = (protocol.height, protocol.width)
    if protocol.frames is None:
        return WholeVideoDataset(files, size, model.compression.temporal, protocol.stride, protocol.fps, backend)
    clip = ClipSpec(protocol.frames, protocol.stride, protocol.fps)
    return VideoClipDataset(files, clip, size, backend=backend, train=False)


def protocol_dataset(
    args: argparse.Namespace, data: str, model: VideoAutoencoder, recorded: dict[str, Any] | None
) -> VideoClipDataset:
    """Centre clips of ``data``'s videos under the resolved protocol (unusable files are skipped)."""
    return clip_dataset(resolve_protocol(args, model, recorded), data, model, args.backend)
