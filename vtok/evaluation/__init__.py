"""Reconstruction evaluation: the metrics shared with training, the evaluation runner and its report.

Models are read through :mod:`vtok.export`'s loader, never through :mod:`vtok.training`.
"""

from vtok.evaluation.metrics import (
    frechet_distance,
    high_frequency_energy,
    high_frequency_ratio,
    lpips_per_video,
    psnr_per_video,
    ssim_per_video,
)

__all__ = [
    "frechet_distance",
    "high_frequency_energy",
    "high_frequency_ratio",
    "lpips_per_video",
    "psnr_per_video",
    "ssim_per_video",
]
