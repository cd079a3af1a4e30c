"""Frames to model input: crop to the target aspect ratio, resize, flip, scale to [-1, 1]."""

from __future__ import annotations

import torch
from torchvision.transforms.v2 import functional as TF


def crop_box(
    height: int, width: int, out_height: int, out_width: int, generator: torch.Generator | None = None
) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of the largest box with the output's aspect ratio.

    Placed at random with ``generator``, else centred. Cropping at the source resolution before
    resizing is the same as "resize the short side, then crop" and resizes fewer pixels. The box
    is at least one pixel each way, however far a tiny frame is from the output's aspect ratio.
    """
    scale = min(height / out_height, width / out_width)
    h, w = (max(1, min(side, round(out * scale))) for side, out in ((height, out_height), (width, out_width)))
    if generator is None:
        return (height - h) // 2, (width - w) // 2, h, w
    top = int(torch.randint(height - h + 1, (), generator=generator))
    left = int(torch.randint(width - w + 1, (), generator=generator))
    return top, left, h, w


def enlarges(height: int, width: int, size: tuple[int, int]) -> bool:
    """Whether a ``height x width`` source is smaller than the output ``size`` at its crop, so that
    its crops are enlarged (blurrier than those of larger sources)."""
    return crop_box(height, width, *size)[2] < size[0]


def frames_to_clip(
    frames: torch.Tensor,
    size: tuple[int, int],
    generator: torch.Generator | None = None,
    horizontal_flip: bool = False,
) -> torch.Tensor:
    """uint8 ``[T, H, W, 3]`` -> float ``[3, T, h, w]`` in ``[-1, 1]``.

    Args:
        frames: decoded RGB frames.
        size: output ``(height, width)``.
        generator: draws the crop position and the flip; ``None`` gives the centre crop, no flip.
        horizontal_flip: flip left-right with probability 1/2 (only with a generator).
    """
    video = frames.permute(0, 3, 1, 2)  # T, 3, H, W
    top, left, h, w = crop_box(video.shape[-2], video.shape[-1], *size, generator)
    video = TF.resized_crop(video, top, left, h, w, list(size), antialias=True)
    if horizontal_flip and generator is not None and torch.rand((), generator=generator) < 0.5:
        video = video.flip(-1)
    return video.permute(1, 0, 2, 3).float().div_(127.5).sub_(1.0)
