"""Diffusers' pretrained video VAEs as vtok's encoder and decoder (OneVAE's continuous priors).

A thin adapter, not a copy: the diffusers model is built from its own config and called through
its public ``encode(...).latent_dist`` and ``decode(...).sample``, which handle its causal caches
and long clips. The encoder side gives the posterior's mean and log-variance; vtok's bottleneck
(KL, FSQ or GQ with 1x1x1 projections) sits between them. The diffusers class name and config
are part of vtok's model config, so an export rebuilds the same network without the prior.
"""

from __future__ import annotations

from typing import Any, Literal

import diffusers
import torch
from torch import nn

PriorClass = Literal["AutoencoderKLWan", "AutoencoderKLCogVideoX", "AutoencoderKLLTXVideo", "AutoencoderKLHunyuanVideo"]
PRIOR_CLASSES: tuple[str, ...] = PriorClass.__args__


def prior_compression(vae: nn.Module) -> tuple[int, int]:
    """``(temporal, spatial)`` factors of a diffusers video VAE."""
    config = vae.config
    name = type(vae).__name__
    if name == "AutoencoderKLWan":
        return int(config.scale_factor_temporal), int(config.scale_factor_spatial)
    if name == "AutoencoderKLLTXVideo":
        return int(vae.temporal_compression_ratio), int(vae.spatial_compression_ratio)
    if name == "AutoencoderKLCogVideoX":
        return int(config.temporal_compression_ratio), 2 ** (len(config.block_out_channels) - 1)
    if name == "AutoencoderKLHunyuanVideo":
        return int(config.temporal_compression_ratio), int(config.spatial_compression_ratio)
    raise ValueError(f"{name} is not a supported video VAE prior; supported: {', '.join(PRIOR_CLASSES)}")


def prior_latent_channels(vae: nn.Module) -> int:
    config = vae.config
    return int(config.z_dim if "z_dim" in config else config.latent_channels)


def build_prior(class_name: str, config: dict[str, Any]) -> nn.Module:
    """The diffusers VAE ``class_name`` from ``config``, with random weights (they are loaded later)."""
    if class_name not in PRIOR_CLASSES:
        raise ValueError(f"backbone_class={class_name!r} is not supported; choose one of {PRIOR_CLASSES}")
    return getattr(diffusers, class_name).from_config(config)


class PriorEncoder(nn.Module):
    """The diffusers VAE's encoder side: ``[B, 3, T, H, W]`` -> posterior mean and log-variance
    concatenated on channels (``2C``), or the mean alone (``C``) for a discrete bottleneck.

    The diffusers model is registered here, once; :class:`PriorDecoder` reaches it through this
    module so its weights are stored once.

    Args:
        vae: the diffusers video VAE.
        mean_only: give the posterior mean only.
    """

    def __init__(self, vae: nn.Module, mean_only: bool) -> None:
        super().__init__()
        self.vae = vae
        self.mean_only = mean_only

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        posterior = self.vae.encode(video).latent_dist
        return posterior.mean if self.mean_only else torch.cat([posterior.mean, posterior.logvar], dim=1)


class PriorDecoder(nn.Module):
    """The diffusers VAE's decoder side: latents ``[B, C, t, h, w]`` -> video.

    Args:
        encoder: the :class:`PriorEncoder` holding the diffusers model (not registered again here).
    """

    def __init__(self, encoder: PriorEncoder) -> None:
        super().__init__()
        self._encoder = (encoder,)  # a tuple keeps the shared model out of this module's state dict
        convolutions = [m for m in encoder.vae.decoder.modules() if isinstance(m, (nn.Conv3d, nn.Conv2d))]
        self._conv_out = (convolutions[-1],)  # found once: the adversarial weight reads it every step

    @property
    def vae(self) -> nn.Module:
        return self._encoder[0].vae

    @property
    def conv_out(self) -> nn.Module:
        """The decoder's last convolution (the adaptive adversarial weight reads its gradient)."""
        return self._conv_out[0]

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latents).sample
