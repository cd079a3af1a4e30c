"""Image files that are not plain stills: animated ones, and HEIF/AVIF photos under another name."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from vtok.data.errors import UnusableFileError
from vtok.data.images import read_rgb_image


def test_an_animated_image_is_a_skip_with_its_reason(tmp_path: Path) -> None:
    """GIFs are left out of folder searches as animated, but an animated WebP trained on its first frame in silence."""
    frames = [Image.new("RGB", (16, 16), colour) for colour in ("black", "white")]
    frames[0].save(tmp_path / "blink.webp", save_all=True, append_images=frames[1:], duration=100, loop=0)
    with pytest.raises(UnusableFileError, match=r"an animated image \(2 frames\): vtok reads stills"):
        read_rgb_image(str(tmp_path / "blink.webp"))
    frames[1].save(tmp_path / "still.webp")
    assert int(read_rgb_image(str(tmp_path / "still.webp")).min()) == 255  # a still WebP reads as before
    # a camera's JPEG often holds a second picture (MPO: a preview, a depth map): a photo, no animation
    frames[1].save(tmp_path / "camera.jpg", format="MPO", save_all=True, append_images=frames[:1])
    assert int(read_rgb_image(str(tmp_path / "camera.jpg")).float().mean()) > 250


def test_a_heif_photo_named_jpg_is_called_an_image_not_a_video(tmp_path: Path) -> None:
    """An ISO media file's ftyp box was taken for an mp4 whatever its brand: a phone's HEIC photo renamed .jpg
    was "a video (mp4) named as an image"."""
    photo = tmp_path / "IMG_0001.jpg"
    photo.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(200))
    with pytest.raises(UnusableFileError, match=r"a HEIF/AVIF image \(heic\), which vtok does not read"):
        read_rgb_image(str(photo))
