"""Reconstruction metrics shared by validation during training and ``vtok evaluate``.

Inputs are videos ``[B, C, T, H, W]`` in ``[-1, 1]``; every metric returns one value per video,
so callers choose how to average (per clip, per video, across ranks).
"""

from __future__ import annotations

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio

DATA_RANGE = 2.0  # videos live in [-1, 1]


def psnr_per_video(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR in dB over all frames of each video, ``[B]``."""
    return peak_signal_noise_ratio(
        reconstruction.float().clamp(-1, 1),
        target.float(),
        data_range=DATA_RANGE,
        reduction="none",
        dim=(1, 2, 3, 4),
    )
