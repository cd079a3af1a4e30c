"""Frames to model input: crop to the target aspect ratio, resize, flip, scale to [-1, 1]."""

from __future__ import annotations

import torch
from torchvision.transforms.v2 import functional as TF


def crop_box(
    height: int,
    width: int,
    out_height: int,
    out_width: int,
    generator: torch.Generator | None = None,
    pixel_aspect: float = 1.0,
) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of the largest box, in the frame's stored pixels, that shows with the
    output's aspect ratio.

    Placed at random with ``generator``, else centred. Cropping at the source resolution before
    resizing is the same as "resize the short side, then crop" and resizes fewer pixels. The box
    is at least one pixel each way, however far a tiny frame is from the output's aspect ratio.
    ``pixel_aspect`` is how wide a stored pixel is shown (anamorphic video, see
    :func:`~vtok.data.pyav_frames.pixel_aspect`): the box is as wide as shows right, so that resizing
    it to the output gives square pixels, as a player shows the frame.
    """
    scale = min(height / out_height, width * pixel_aspect / out_width)
    h = max(1, min(height, round(out_height * scale)))
    w = max(1, min(width, round(out_width * scale / pixel_aspect)))
    if generator is None:
        return (height - h) // 2, (width - w) // 2, h, w
    top = int(torch.randint(height - h + 1, (), generator=generator))
    left = int(torch.randint(width - w + 1, (), generator=generator))
    return top, left, h, w


def shown_size(height: int, width: int, pixel_aspect: float = 1.0) -> tuple[int, int]:
    """``(height, width)`` of a frame as a player shows it: stored pixels ``pixel_aspect`` wide."""
    return height, max(1, round(width * pixel_aspect))


def enlarges(height: int, width: int, size: tuple[int, int]) -> bool:
    """Whether a source shown at ``height x width`` (:func:`shown_size`) is smaller than the output
    ``size`` at its crop, so that its crops are enlarged (blurrier than those of larger sources)."""
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
    placement = draw_placement(frames.shape[1], frames.shape[2], size, generator, horizontal_flip)
    return place_frames(frames, size, placement)


def draw_placement(
    height: int,
    width: int,
    size: tuple[int, int],
    generator: torch.Generator | None = None,
    horizontal_flip: bool = False,
    pixel_aspect: float = 1.0,
) -> tuple[tuple[int, int, int, int], bool]:
    """``(crop box, flip)`` of a clip from ``height x width`` frames of pixels ``pixel_aspect`` wide (drawn
    with ``generator``: the crop position, then the flip; ``None``: centred, unflipped): drawn once, applied
    to each window of a long clip."""
    box = crop_box(height, width, *size, generator, pixel_aspect)
    flip = horizontal_flip and generator is not None and bool(torch.rand((), generator=generator) < 0.5)
    return box, flip


def place_frames(frames: torch.Tensor, size: tuple[int, int], placement: tuple[tuple[int, int, int, int], bool]) -> torch.Tensor:
    """uint8 ``[T, H, W, 3]`` cropped, resized and flipped as ``placement`` says -> float ``[3, T, h, w]`` in ``[-1, 1]``."""
    (top, left, h, w), flip = placement
    video = TF.resized_crop(frames.permute(0, 3, 1, 2), top, left, h, w, list(size), antialias=True)  # T, 3, h, w
    if flip:
        video = video.flip(-1)
    return video.permute(1, 0, 2, 3).float().div_(127.5).sub_(1.0)
