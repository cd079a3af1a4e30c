"""Training objectives: reconstruction (L1, LPIPS), bottleneck terms and the adversarial terms."""

from vtok.losses.adversarial import AdversarialLoss
from vtok.losses.objective import AutoencoderLoss
from vtok.losses.perceptual import PerceptualLoss

__all__ = ["AdversarialLoss", "AutoencoderLoss", "PerceptualLoss"]
