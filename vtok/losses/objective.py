"""The autoencoder's reconstruction objective: L1, LPIPS and the bottleneck's weighted terms."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from vtok.losses.checks import refuse_negative
from vtok.losses.perceptual import PerceptualLoss
from vtok.vae import AutoencoderOutput

# Published defaults: KL 1e-6 (LDM, VidTok); LFQ entropy 0.1 and commitment 0.25 (MAGVIT-v2).
DEFAULT_BOTTLENECK_WEIGHTS = {"kl": 1e-6, "entropy": 0.1, "commitment": 0.25}


class AutoencoderLoss(nn.Module):
    """``l1 · |x - x̂|₁ + perceptual · LPIPS(x, x̂) + Σ weight[name] · bottleneck_loss[name]``.

    The L1 term is a per-pixel mean. Every loss the bottleneck reports must have a weight, so a
    term is never trained with a weight nobody chose. Steps count training batches.

    Args:
        l1_weight: weight of the per-pixel L1 reconstruction loss.
        perceptual_weight: weight of LPIPS (VGG16) on frames; 0 builds no LPIPS network.
        perceptual_backbone: path to ``vgg16-397923af.pth`` (default: the torch hub cache).
        perceptual_frames: LPIPS on this many frames per clip (default: all): random ones in training, evenly
            spaced ones in validation and test.
        bottleneck_weights: weight per bottleneck loss name; merged over the published defaults
            ``{"kl": 1e-6, "entropy": 0.1, "commitment": 0.25}``.
        bottleneck_weights_start: weights at step 0 for the names to anneal (e.g. a larger
            ``entropy`` weight at the start of LFQ training), moved linearly to their final value.
        anneal_steps: batches over which annealed weights reach their final value.
    """

    def __init__(
        self,
        l1_weight: float = 1.0,
        perceptual_weight: float = 0.0,
        perceptual_backbone: str | None = None,
        perceptual_frames: int | None = None,
        bottleneck_weights: Mapping[str, float] | None = None,
        bottleneck_weights_start: Mapping[str, float] | None = None,
        anneal_steps: int = 0,
    ) -> None:
        super().__init__()
        refuse_negative(
            "model.loss", l1_weight=l1_weight, perceptual_weight=perceptual_weight, anneal_steps=anneal_steps,
            **{f"bottleneck_weights.{k}": v for k, v in (bottleneck_weights or {}).items()},
            **{f"bottleneck_weights_start.{k}": v for k, v in (bottleneck_weights_start or {}).items()},
        )  # fmt: skip
        self.l1_weight = l1_weight
        self.perceptual_weight = perceptual_weight
        self.perceptual = PerceptualLoss(perceptual_backbone, perceptual_frames) if perceptual_weight > 0 else None
        for setting, names in (("bottleneck_weights", bottleneck_weights), ("bottleneck_weights_start", bottleneck_weights_start)):
            unknown = sorted(set(names or {}) - set(DEFAULT_BOTTLENECK_WEIGHTS))
            if unknown:  # a misspelt name would leave the real term at its default weight
                raise ValueError(
                    f"loss.{setting} names {unknown}, which no bottleneck reports; the terms are "
                    f"{sorted(DEFAULT_BOTTLENECK_WEIGHTS)} (kl for kl, entropy and commitment for gq)"
                )
        if bottleneck_weights_start and anneal_steps <= 0:
            raise ValueError("loss.bottleneck_weights_start needs loss.anneal_steps > 0 (the batches to reach the final weights)")
        self.bottleneck_weights = {**DEFAULT_BOTTLENECK_WEIGHTS, **(bottleneck_weights or {})}
        self.bottleneck_weights_start = dict(bottleneck_weights_start or {})
        self.anneal_steps = anneal_steps

    def bottleneck_weight(self, name: str, step: int) -> float:
        """The (possibly annealed) weight of bottleneck loss ``name`` at batch ``step``."""
        if name not in self.bottleneck_weights:
            raise ValueError(
                f"the bottleneck reports a loss {name!r} without a weight; set model.loss.bottleneck_weights.{name}"
            )
        final = self.bottleneck_weights[name]
        if name not in self.bottleneck_weights_start or self.anneal_steps <= 0:
            return final
        progress = min(1.0, step / self.anneal_steps)
        return self.bottleneck_weights_start[name] + (final - self.bottleneck_weights_start[name]) * progress

    def forward(self, video: torch.Tensor, output: AutoencoderOutput, step: int = 0) -> dict[str, torch.Tensor]:
        """Unweighted terms by name, ``reconstruction`` (weighted L1 + LPIPS: what the adaptive
        adversarial weight balances against) and ``loss`` (everything weighted and summed)."""
        terms = {"l1": F.l1_loss(output.reconstruction.float(), video.float())}
        reconstruction = self.l1_weight * terms["l1"]
        if self.perceptual is not None:
            terms["perceptual"] = self.perceptual(output.reconstruction, video).float()
            reconstruction = reconstruction + self.perceptual_weight * terms["perceptual"]
        total = reconstruction
        for name, value in output.losses.items():
            terms[name] = value
            total = total + self.bottleneck_weight(name, step) * value
        terms["reconstruction"] = reconstruction
        terms["loss"] = total
        return terms
