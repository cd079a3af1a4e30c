"""Diagonal Gaussian bottleneck with a KL penalty towards N(0, I) (the "KL-VAE" of LDM, 2112.10752)."""

from __future__ import annotations

import torch
from torch import nn

from vtok.vae.bottleneck import BottleneckOutput

# Bounds on the log-variance: an unbounded learnable log-variance is a known source of NaNs.
LOGVAR_MIN, LOGVAR_MAX = -30.0, 20.0


class GaussianBottleneck(nn.Module):
    """Splits the encoder output into mean and log-variance and samples the latent.

    The KL term is summed over a clip's latent elements and divided by the clip's pixel values
    (``pixel_values``, 3·T·H·W), then averaged over the batch: nats per pixel value, on the scale of
    vtok's per-pixel-mean L1. The published weight (1e-6, LDM and VidTok) weighs the KL summed over
    the latent against the L1 summed over the pixels, which is the same ratio; against a summed KL,
    a per-pixel-mean L1 would make that weight about 10^5 to 10^6 times stronger at 256x256 (it
    would dominate the objective once reconstructions are good).

    Args:
        latent_channels: channels of the latent (the encoder produces twice as many).
    """

    def __init__(self, latent_channels: int) -> None:
        super().__init__()
        self.input_channels = 2 * latent_channels
        self.code_channels = self.output_channels = latent_channels
        self.first_frame_channels = 0

    def forward(self, h: torch.Tensor, sample: bool = True, pixel_values: int = 1) -> BottleneckOutput:
        """The (sampled) latent, the KL per pixel value (``pixel_values``: of one input clip; 1
        gives the KL summed over the latent) and the posterior's statistics."""
        mean, logvar = h.float().chunk(2, dim=1)
        logvar = logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)
        std = torch.exp(0.5 * logvar)
        # noise in logical order, so a channels-last run draws the same sample as a contiguous one
        latents = mean + std * torch.randn(mean.shape, dtype=mean.dtype, device=mean.device) if sample else mean
        kl = 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar)
        return BottleneckOutput(
            latents=latents.to(h.dtype),
            losses={"kl": kl.flatten(1).sum(1).mean() / pixel_values},
            stats={"posterior_std": std.detach().mean(), "latent_rms": mean.detach().square().mean().sqrt()},
        )

    def encode(self, h: torch.Tensor) -> torch.Tensor:
        """The posterior mean, a tensor of its own: a view of ``h``'s first half would not save with
        safetensors, and ``torch.save`` would write the log-variance with it."""
        return h.chunk(2, dim=1)[0].contiguous()

    def to_decoder(self, codes: torch.Tensor) -> torch.Tensor:
        return codes
