"""Reconstruction metrics (and, later, the evaluation runner and report)."""

from vtok.evaluation.metrics import psnr_per_video

__all__ = ["psnr_per_video"]
