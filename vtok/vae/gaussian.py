"""Diagonal Gaussian bottleneck with a KL penalty towards N(0, I) (the "KL-VAE" of LDM, 2112.10752)."""

from __future__ import annotations

import torch
from torch import nn

from vtok.vae.bottleneck import BottleneckOutput

# Bounds on the log-variance: an unbounded learnable log-variance is a known source of NaNs.
LOGVAR_MIN, LOGVAR_MAX = -30.0, 20.0


class GaussianBottleneck(nn.Module):
    """Splits the encoder output into mean and log-variance and samples the latent.

    The KL term is summed over latent elements and averaged over the batch, the convention the
    published weight (about 1e-6 against a per-pixel L1) assumes.

    Args:
        latent_channels: channels of the latent (the encoder produces twice as many).
    """

    def __init__(self, latent_channels: int) -> None:
        super().__init__()
        self.input_channels = 2 * latent_channels
        self.code_channels = self.output_channels = latent_channels

    def forward(self, h: torch.Tensor, sample: bool = True) -> BottleneckOutput:
        mean, logvar = h.float().chunk(2, dim=1)
        logvar = logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)
        std = torch.exp(0.5 * logvar)
        # noise in logical order, so a channels-last run draws the same sample as a contiguous one
        latents = mean + std * torch.randn(mean.shape, dtype=mean.dtype, device=mean.device) if sample else mean
        kl = 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar)
        return BottleneckOutput(
            latents=latents.to(h.dtype),
            losses={"kl": kl.flatten(1).sum(1).mean()},
            stats={"posterior_std": std.detach().mean(), "latent_rms": mean.detach().square().mean().sqrt()},
        )

    def encode(self, h: torch.Tensor) -> torch.Tensor:
        return h.chunk(2, dim=1)[0]

    def to_decoder(self, codes: torch.Tensor) -> torch.Tensor:
        return codes
