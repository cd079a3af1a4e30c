"""Transparency laid over white, for images and video frames alike: how a viewer on a page shows them (the
colours under fully transparent pixels are often junk)."""

from __future__ import annotations

from PIL import Image


def over_white(image: Image.Image) -> Image.Image:
    """The RGB picture of ``image`` (any mode with an alpha band or a transparency entry) laid over white."""
    white = Image.new("RGBA", image.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, image.convert("RGBA")).convert("RGB")
