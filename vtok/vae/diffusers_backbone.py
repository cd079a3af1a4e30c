"""Diffusers' pretrained video VAEs as vtok's encoder and decoder (OneVAE's continuous priors).

A thin adapter, not a copy: the diffusers model is built from its own config and called through
its public ``encode(...).latent_dist`` and ``decode(...).sample``, which handle its causal caches
and long clips. The encoder side gives the posterior's mean and log-variance; vtok's bottleneck
(KL, FSQ or GQ with 1x1x1 projections) sits between them. The diffusers class name and config
are part of vtok's model config, so an export rebuilds the same network without the prior.

LTX-Video 0.9.1+ decoders (``timestep_conditioning``, ``decoder_inject_noise``) are told the
noise level of their latents and add random noise inside their residual blocks; see
:class:`PriorDecoder` for how vtok calls them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any, Literal

import diffusers
import torch
from torch import nn

PriorClass = Literal["AutoencoderKLWan", "AutoencoderKLCogVideoX", "AutoencoderKLLTXVideo", "AutoencoderKLHunyuanVideo"]
PRIOR_CLASSES: tuple[str, ...] = PriorClass.__args__

# The noise level told to a timestep-conditioned decoder (LTX-Video 0.9.1+): vtok decodes its
# encoder's latents, which are clean, so t = 0 (diffusers' LTXPipeline default, decode_timestep=0.0;
# the small non-zero values suggested for 0.9.1 pipelines go with the pipeline mixing that much noise
# into the diffusion latents before decoding: decode_noise_scale defaults to decode_timestep).
CLEAN_DECODE_TIMESTEP = 0.0
# Seed of the noise an LTX-Video decoder injects (decoder_inject_noise) outside training.
EVAL_NOISE_SEED = 0


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


def prior_frame_multiple(class_name: str, temporal: int) -> int:
    """``m`` of the clip lengths ``T = 1 + k·m`` the ``class_name`` backbone reconstructs: its temporal factor, but
    twice that for CogVideoX, whose diffusers decoder takes latent frames in pairs after the first and doubled every
    frame of an even count (2 latent frames gave 8 frames, not 5): it takes an odd number, ``T = 1 + 8k``."""
    return 2 * temporal if class_name == "AutoencoderKLCogVideoX" else temporal


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


@contextmanager
def _seeded_default_generator(device: torch.device, seed: int) -> Iterator[None]:
    """Inside, ``device``'s default generator starts from ``seed``; after, it is back where it was
    (the caller's random stream is untouched, and no other device's generator is used)."""
    with torch.random.fork_rng(devices=[] if device.type == "cpu" else [device], device_type=device.type):
        if device.type == "cpu":
            torch.default_generator.manual_seed(seed)
        else:
            module = torch.get_device_module(device.type)
            with module.device(device):
                module.manual_seed(seed)  # this device's generator only
        yield


def _injects_noise(decoder: nn.Module) -> bool:
    """Whether a diffusers decoder adds random noise in its blocks (LTX-Video's ``inject_noise``)."""
    return any(
        getattr(m, "per_channel_scale1", None) is not None or getattr(m, "per_channel_scale2", None) is not None
        for m in decoder.modules()
    )


class PriorDecoder(nn.Module):
    """The diffusers VAE's decoder side: latents ``[B, C, t, h, w]`` -> video.

    A timestep-conditioned decoder (LTX-Video 0.9.1+) is told ``t = 0``
    (:data:`CLEAN_DECODE_TIMESTEP`): vtok's latents come from the encoder, without added noise.
    A decoder that injects noise (``decoder_inject_noise``) draws it in training as diffusers does
    (fresh each call, from the global generator); outside training it draws the same noise on every
    call (the latents' device generator seeded with :data:`EVAL_NOISE_SEED` for the call, then
    restored), so decoding, and detokenizing, the same latents gives the same video. The noise is
    kept, not switched off, because the decoder was trained with it; a seed is set around the call
    because diffusers' decoder does not pass a generator down to the blocks that draw it.

    Args:
        encoder: the :class:`PriorEncoder` holding the diffusers model (not registered again here).
    """

    def __init__(self, encoder: PriorEncoder) -> None:
        super().__init__()
        self._encoder = (encoder,)  # a tuple keeps the shared model out of this module's state dict
        convolutions = [m for m in encoder.vae.decoder.modules() if isinstance(m, (nn.Conv3d, nn.Conv2d))]
        self._conv_out = (convolutions[-1],)  # found once: the adversarial weight reads it every step
        self._timestep_conditioning = bool(getattr(encoder.vae.config, "timestep_conditioning", False))
        self._injects_noise = _injects_noise(encoder.vae.decoder)

    @property
    def vae(self) -> nn.Module:
        return self._encoder[0].vae

    @property
    def conv_out(self) -> nn.Module:
        """The decoder's last convolution (the adaptive adversarial weight reads its gradient)."""
        return self._conv_out[0]

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        told = {}  # only LTX-Video's decode takes temb (the others' second argument is return_dict)
        if self._timestep_conditioning:
            batch = latents.shape[0]
            told["temb"] = torch.full((batch,), CLEAN_DECODE_TIMESTEP, device=latents.device, dtype=latents.dtype)
        fixed_noise = not self.training and self._injects_noise
        with _seeded_default_generator(latents.device, EVAL_NOISE_SEED) if fixed_noise else nullcontext():
            return self.vae.decode(latents, **told).sample
