"""Training objectives: reconstruction, bottleneck terms (and, later, perceptual and adversarial)."""

from vtok.losses.objective import AutoencoderLoss

__all__ = ["AutoencoderLoss"]
