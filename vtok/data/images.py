"""Images as one-frame clips, in a dataset of their own (a batch never mixes lengths)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from vtok.data.dataset import SkippingDataset
from vtok.data.errors import UnusableFileError
from vtok.data.transforms import frames_to_clip
from vtok.data.transparency import over_white
from vtok.error_text import first_line


def read_rgb_image(path: str) -> torch.Tensor:
    """uint8 ``[H, W, 3]``, upright as a viewer shows it (EXIF orientation applied, as videos get
    their display rotation), in RGB whatever the file stores, as videos are decoded to RGB whatever
    their pixel format: see :func:`as_rgb`."""
    try:
        with Image.open(path) as image:
            # GIFs are left out of folder searches for this; a camera's MPO JPEG, or a TIFF's pages, are no animation
            if image.format in ("WEBP", "PNG", "GIF") and getattr(image, "n_frames", 1) > 1:
                raise UnusableFileError(path, f"an animated image ({image.n_frames} frames): vtok reads stills; make a video of it")
            image.load()
            ImageOps.exif_transpose(image, in_place=True)  # in place: no copy of an image without the tag
            return torch.from_numpy(np.asarray(as_rgb(image, path)).copy())
    except Image.DecompressionBombError:  # a plain Exception: it stopped the run
        raise UnusableFileError(
            path, f"the image has more than {2 * Image.MAX_IMAGE_PIXELS} pixels (Pillow's guard against decompression "
            "bombs); shrink it, or raise PIL.Image.MAX_IMAGE_PIXELS if it is genuine"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        container = _video_container(path) if isinstance(error, UnidentifiedImageError) else None
        if container in HEIF_BRANDS:
            raise UnusableFileError(path, f"a HEIF/AVIF image ({container}), which vtok does not read; convert it to PNG") from None
        if container:
            raise UnusableFileError(path, f"a video ({container}) named as an image; videos train through data.path") from None
        raise UnusableFileError(path, f"cannot decode the image ({first_line(error)})") from None


# the ftyp brands of still images in an ISO media file (HEIF, as phones write, and AVIF), not videos
HEIF_BRANDS = frozenset({"heic", "heix", "heim", "heis", "mif1", "avif"})


def _video_container(path: str) -> str | None:
    """The video container a file's first bytes announce (an MP4/QuickTime ``ftyp`` box, Matroska's
    EBML header, an AVI RIFF header), else ``None``; for an ``ftyp`` box of a still image, its brand
    (one of :data:`HEIF_BRANDS`)."""
    with open(path, "rb") as handle:
        head = handle.read(12)
    if head[4:8] == b"ftyp":
        brand = head[8:12].decode("latin-1").strip()
        return brand if brand in HEIF_BRANDS else "mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    return "avi" if head[:4] == b"RIFF" and head[8:12] == b"AVI " else None


def as_rgb(image: Image.Image, path: str) -> Image.Image:
    """``image`` as 8-bit RGB: grey repeated on the three channels, 16-bit grey scaled to 8 bits (not
    clipped, as Pillow's own conversion does), CMYK and palettes converted, and transparency laid over
    white (how a viewer on a page shows it; the colours under fully transparent pixels are often junk).
    Raises :class:`UnusableFileError` for floating-point and 32-bit integer images (no known range)."""
    sixteen_bit = image.mode.startswith("I;16") or (image.mode == "I" and image.format == "PNG")  # PNG: 16 bits at most
    if image.mode == "I" and not sixteen_bit:
        raise UnusableFileError(path, "the image has 32-bit integer values (mode I): no known range")
    if sixteen_bit:
        values = np.asarray(image, dtype=np.int64)
        rgb = np.repeat(np.round(values / 257).astype(np.uint8)[..., None], 3, axis=2)
        if isinstance(image.info.get("transparency"), int):  # one grey value marked transparent: white
            rgb[values == image.info["transparency"]] = 255
        return Image.fromarray(rgb, "RGB")
    if image.mode == "F":
        raise UnusableFileError(path, "the image has floating-point values (mode F): no known range")
    if "A" in image.getbands() or "transparency" in image.info:
        return over_white(image)
    return image if image.mode == "RGB" else image.convert("RGB")


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
