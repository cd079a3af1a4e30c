"""``VideoAutoencoder``: the causal video VAE / tokenizer, saved and loaded with diffusers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.utils import BaseOutput

from vtok.vae.backbone import BackboneSpec
from vtok.vae.bottleneck import BottleneckKind, build_bottleneck
from vtok.vae.causal_conv import FramePadding
from vtok.vae.compression import Compression, resampling_plan
from vtok.vae.decoder import Decoder3d
from vtok.vae.encoder import Encoder3d


@dataclass
class AutoencoderOutput(BaseOutput):
    """Result of ``VideoAutoencoder.forward``.

    Args:
        reconstruction: decoded video ``[B, C, T, H, W]``.
        latents: what the decoder read ``[B, C_lat, t', h', w']`` (sampled or quantized).
        indices: token indices ``[B, K, t', h', w']`` for discrete bottlenecks, else ``None``.
        losses: the bottleneck's unweighted training losses (``kl``, ``entropy``, ...).
        stats: detached statistics of the bottleneck.
    """

    reconstruction: torch.Tensor
    latents: torch.Tensor
    indices: torch.Tensor | None = None
    losses: dict[str, torch.Tensor] = field(default_factory=dict)
    stats: dict[str, torch.Tensor] = field(default_factory=dict)


class VideoAutoencoder(ModelMixin, ConfigMixin):
    """Causal 3D convolutional autoencoder for video, with a configurable bottleneck.

    Videos are float ``[B, 3, 1 + k·t, H, W]`` in ``[-1, 1]`` (an image is ``T = 1``); latents are
    ``[B, latent_channels, 1 + k, H/s, W/s]``. Every config field is flat and JSON-serialisable,
    so ``save_pretrained`` / ``from_pretrained`` round-trip the model exactly.

    Args:
        temporal_compression: time factor ``t`` (1, 2, 4 or 8).
        spatial_compression: height/width factor ``s`` (4, 8, 16 or 32).
        latent_channels: channels per latent position.
        block_out_channels: widths per resolution level, full resolution first; a shorter list is
            extended with its last width.
        layers_per_block: residual blocks per resolution level.
        patch_size: space-to-depth factor before the first convolution (a divisor of ``s``).
        bottleneck: ``"kl"`` (diagonal Gaussian).
        frame_padding: what causal convolutions see before the first frame.
        resample_shortcut: parameter-free space/time-to-depth shortcuts around resampling.
        in_channels: video channels.
    """

    config_name = "config.json"
    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        temporal_compression: Literal[1, 2, 4, 8] = 4,
        spatial_compression: Literal[4, 8, 16, 32] = 8,
        latent_channels: int = 16,
        block_out_channels: Sequence[int] = (64, 128, 256, 256),
        layers_per_block: int = 2,
        patch_size: int = 1,
        bottleneck: BottleneckKind = "kl",
        frame_padding: FramePadding = "replicate",
        resample_shortcut: bool = True,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.compression = Compression(temporal=temporal_compression, spatial=spatial_compression)
        if latent_channels < 1:
            raise ValueError(f"latent_channels must be positive, got {latent_channels}")
        plan = resampling_plan(self.compression, patch_size)
        self.quantizer = build_bottleneck(bottleneck, latent_channels)
        spec = BackboneSpec(block_out_channels, layers_per_block, plan, patch_size, resample_shortcut, frame_padding)
        self.encoder = Encoder3d(in_channels, self.quantizer.input_channels, spec)
        self.decoder = Decoder3d(self.quantizer.latent_channels, in_channels, spec)

    @property
    def is_discrete(self) -> bool:
        return self.config.bottleneck != "kl"

    def check_video(self, video: torch.Tensor) -> None:
        """Raises ``ValueError`` naming the fix when ``video`` is not ``[B, C, 1 + k·t, H, W]``."""
        if video.ndim != 5 or video.shape[1] != self.config.in_channels:
            raise ValueError(
                f"expected a video batch [B, {self.config.in_channels}, T, H, W], got shape {tuple(video.shape)}"
            )
        self.compression.check_clip(*video.shape[2:])

    def latent_values_per_pixel(self) -> float:
        """Latent values per input pixel value: ``C_lat / (3·t·s·s)`` for long clips."""
        return self.config.latent_channels / (self.config.in_channels * self.compression.pixels_per_latent_position())

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """Deterministic latents ``[B, C_lat, 1 + k, H/s, W/s]`` (the posterior mean for ``kl``)."""
        self.check_video(video)
        return self.quantizer.encode(self.encoder(video))

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Video ``[B, 3, 1 + k·t, h·s, w·s]`` from latents ``[B, C_lat, 1 + k, h, w]``."""
        if latents.ndim != 5 or latents.shape[1] != self.quantizer.latent_channels:
            raise ValueError(
                f"expected latents [B, {self.quantizer.latent_channels}, t, h, w], got {tuple(latents.shape)}"
            )
        return self.decoder(latents)

    def forward(self, video: torch.Tensor, sample_posterior: bool | None = None) -> AutoencoderOutput:
        """Encodes, passes the bottleneck (sampling it in training mode unless told) and decodes."""
        self.check_video(video)
        sample = self.training if sample_posterior is None else sample_posterior
        out = self.quantizer(self.encoder(video), sample=sample)
        return AutoencoderOutput(
            reconstruction=self.decoder(out.latents),
            latents=out.latents,
            indices=out.indices,
            losses=out.losses,
            stats=out.stats,
        )
