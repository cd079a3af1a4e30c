"""Images as one-frame clips, in a dataset of their own (a batch never mixes lengths)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from vtok.data.dataset import SkippingDataset
from vtok.data.errors import UnusableFileError
from vtok.data.transforms import frames_to_clip
from vtok.error_text import first_line


def read_rgb_image(path: str) -> torch.Tensor:
    """uint8 ``[H, W, 3]``, upright as a viewer shows it (EXIF orientation applied, as videos get
    their display rotation). Palette images are expanded to RGB; other channel layouts (grey,
    alpha, CMYK) raise :class:`UnusableFileError` rather than being converted behind the user's back."""
    try:
        with Image.open(path) as image:
            image.load()
            ImageOps.exif_transpose(image, in_place=True)  # in place: no copy of an image without the tag
            if image.mode == "P" and "transparency" not in image.info:
                image = image.convert("RGB")
            if image.mode != "RGB":
                bands = "".join(image.getbands())
                raise UnusableFileError(path, f"the image has {len(bands)} channels ({bands}), expected 3 (RGB)")
            return torch.from_numpy(np.asarray(image).copy())
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise UnusableFileError(path, f"cannot decode the image ({first_line(error)})") from None


class ImageDataset(SkippingDataset):
    """RGB image files as ``[3, 1, H, W]`` clips.

    Args:
        files: image paths (PNG, JPEG, WebP, ...).
        size: output ``(height, width)``.
        **kwargs: see :class:`~vtok.data.dataset.SkippingDataset`.
    """

    def __init__(self, files: Sequence[str], size: tuple[int, int], **kwargs) -> None:
        super().__init__(files, size, **kwargs)

    def load(self, index: int, generator: torch.Generator | None) -> tuple[torch.Tensor, tuple[int, int]]:
        image = read_rgb_image(self.files[index])
        return frames_to_clip(image[None], self.size, generator, self.horizontal_flip), (image.shape[0], image.shape[1])
