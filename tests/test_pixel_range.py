"""Clips hold pixels in [-1, 1]: what every model, loss and metric in vtok takes them to be."""

from __future__ import annotations

import torch

from vtok.data.transforms import place_frames


def test_pixels_map_to_minus_one_to_one_exactly() -> None:
    """0 and 255 to -1 and 1, every step 2/255 (found by a mutation review: no test read a pixel's value)."""
    frames = torch.arange(0, 256, dtype=torch.uint8).view(1, 16, 16, 1).expand(1, 16, 16, 3)
    clip = place_frames(frames, (16, 16), ((0, 0, 16, 16), False))  # the whole frame, its own size: no resampling
    expected = torch.arange(256, dtype=torch.float32).view(16, 16) / 127.5 - 1
    assert clip.shape == (3, 1, 16, 16) and clip.dtype == torch.float32
    assert clip[:, 0, 0, 0].tolist() == [-1.0] * 3 and clip[:, 0, -1, -1].tolist() == [1.0] * 3
    torch.testing.assert_close(clip[1, 0], expected, rtol=0, atol=1e-6)
