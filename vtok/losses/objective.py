"""The autoencoder's training objective: L1 reconstruction plus the bottleneck's weighted terms."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from vtok.vae import AutoencoderOutput

# Published defaults: KL 1e-6 (LDM, VidTok); LFQ entropy 0.1 and commitment 0.25 (MAGVIT-v2).
DEFAULT_BOTTLENECK_WEIGHTS = {"kl": 1e-6, "entropy": 0.1, "commitment": 0.25}


class AutoencoderLoss(nn.Module):
    """``l1_weight · |x - x̂|₁ + Σ weight[name] · bottleneck_loss[name]``.

    The L1 term is a per-pixel mean. Every loss the bottleneck reports must have a weight, so a
    term is never trained with a weight nobody chose.

    Args:
        l1_weight: weight of the per-pixel L1 reconstruction loss.
        bottleneck_weights: weight per bottleneck loss name; merged over the published defaults
            ``{"kl": 1e-6, "entropy": 0.1, "commitment": 0.25}``.
    """

    def __init__(self, l1_weight: float = 1.0, bottleneck_weights: Mapping[str, float] | None = None) -> None:
        super().__init__()
        self.l1_weight = l1_weight
        self.bottleneck_weights = {**DEFAULT_BOTTLENECK_WEIGHTS, **(bottleneck_weights or {})}

    def forward(self, video: torch.Tensor, output: AutoencoderOutput) -> dict[str, torch.Tensor]:
        """Unweighted terms by name plus their weighted sum under ``"loss"``."""
        terms = {"l1": F.l1_loss(output.reconstruction.float(), video.float())}
        total = self.l1_weight * terms["l1"]
        for name, value in output.losses.items():
            if name not in self.bottleneck_weights:
                raise ValueError(
                    f"the bottleneck reports a loss {name!r} without a weight; "
                    f"set model.loss.bottleneck_weights.{name}"
                )
            terms[name] = value
            total = total + self.bottleneck_weights[name] * value
        terms["loss"] = total
        return terms
