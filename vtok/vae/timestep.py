"""Timestep conditioning for LTX-Video's denoising decoder (2501.00103): the noise level ``t`` of
the latent becomes a vector that sets a per-channel scale and shift inside the decoder's blocks."""

from __future__ import annotations

import math

import torch
from torch import nn


def check_noise_level(timestep: float | torch.Tensor) -> None:
    """Raises ``ValueError`` unless ``timestep`` (a number or a tensor of them) lies in ``[0, 1]``; NaN does not."""
    t = torch.as_tensor(timestep, dtype=torch.float32)
    if not bool(((t >= 0) & (t <= 1)).all()):
        raise ValueError(f"timestep must lie in [0, 1] (the latents' noise level: 0 clean, 1 pure noise), got {t.tolist()}")


def noised(latents: torch.Tensor, timestep: float | torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Latents at noise level ``t``: ``(1 - t)·z + t·ε`` (``t`` a float or broadcastable tensor)."""
    return (1 - timestep) * latents + timestep * noise


class TimestepEmbedding(nn.Module):
    """``t`` in ``[0, 1]`` (``[B]``) -> ``[B, channels]``: sinusoidal features of ``1000·t``, then an MLP.

    Args:
        channels: width of the embedding.
        frequencies: sinusoid pairs fed to the MLP.
    """

    def __init__(self, channels: int, frequencies: int = 64) -> None:
        super().__init__()
        self.frequencies = frequencies
        self.mlp = nn.Sequential(nn.Linear(2 * frequencies, channels), nn.SiLU(), nn.Linear(channels, channels))

    def forward(self, timestep: torch.Tensor) -> torch.Tensor:
        """``[B, channels]`` in the MLP's dtype; the sinusoids are computed in float32 whatever the
        dtype of ``timestep`` or of the model (bfloat16 cannot tell ``1000·t`` apart finely enough)."""
        exponent = torch.arange(self.frequencies, device=timestep.device, dtype=torch.float32) / self.frequencies
        angles = 1000.0 * timestep.float()[:, None] * torch.exp(-math.log(10_000.0) * exponent)[None]
        features = torch.cat([angles.sin(), angles.cos()], dim=1)
        return self.mlp(features.to(self.mlp[0].weight.dtype))


class Modulation(nn.Module):
    """``x · (1 + scale) + shift`` per channel from an embedding; zero-initialised, so a new
    conditioning starts as the identity.

    Args:
        embedding_channels: width of the embedding.
        channels: channels of the modulated activation ``[B, C, T, H, W]``.
    """

    def __init__(self, embedding_channels: int, channels: int) -> None:
        super().__init__()
        self.linear = nn.Linear(embedding_channels, 2 * channels)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        scale, shift = self.linear(embedding).to(x.dtype)[:, :, None, None, None].chunk(2, dim=1)
        return x * (1 + scale) + shift
