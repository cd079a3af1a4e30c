"""``VideoAutoencoder``: the causal video VAE / tokenizer, saved and loaded with diffusers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import math

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.utils import BaseOutput

from vtok.vae.backbone import BackboneSpec
from vtok.vae.bottleneck import BottleneckKind, QuantizerSettings, build_bottleneck
from vtok.vae.causal_conv import FramePadding
from vtok.vae.compression import Compression, resampling_plan
from vtok.vae.decoder import Decoder3d
from vtok.vae.encoder import Encoder3d
from vtok.vae.streaming import run_in_chunks
from vtok.vae.tiling import tiled_map


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
    """Causal 3D convolutional autoencoder for video: a continuous VAE or a discrete tokenizer.

    Videos are float ``[B, 3, 1 + k·t, H, W]`` in ``[-1, 1]`` (an image is ``T = 1``). ``encode``
    gives ``[B, C, 1 + k, H/s, W/s]``: the Gaussian posterior mean (``kl``, ``C = latent_channels``)
    or the quantized codes (``fsq``/``gq``, ``C`` = the quantizer's width); ``decode`` takes them
    back. Discrete models also ``tokenize`` to int64 ``[B, K, 1 + k, H/s, W/s]`` and
    ``detokenize``. Every config field is flat and JSON-serialisable, so ``save_pretrained`` /
    ``from_pretrained`` round-trip the model exactly.

    Long videos: ``encode``/``decode``/``tokenize`` process ``temporal_chunk`` latent frames at a
    time with a causal cache carried between chunks (the result equals one pass; activation
    memory depends on the chunk alone); ``None`` does one pass. :meth:`enable_tiling` adds
    spatial tiling with blending for frames larger than the training size (off by default).

    Args:
        temporal_compression: time factor ``t`` (1, 2, 4 or 8).
        spatial_compression: height/width factor ``s`` (4, 8, 16 or 32).
        latent_channels: channels per latent position.
        block_out_channels: widths per resolution level, full resolution first; a shorter list is
            extended with its last width.
        layers_per_block: residual blocks per resolution level.
        patch_size: space-to-depth factor before the first convolution (a divisor of ``s``).
        bottleneck: ``"kl"`` (diagonal Gaussian), ``"fsq"`` (finite scalar quantization) or
            ``"gq"`` (group-wise lookup-free quantization).
        frame_padding: what causal convolutions see before the first frame.
        resample_shortcut: parameter-free space/time-to-depth shortcuts around resampling.
        in_channels: video channels.
        fsq_levels: FSQ levels per channel, e.g. ``[8, 8, 8, 5, 5, 5]`` (64,000 codes).
        tokens_per_position: FSQ tokens per latent position (OneVAE multi-token quantization).
        gq_bits: GQ bits per latent position (effective codebook ``2^gq_bits``).
        gq_groups: GQ groups; each is one token of ``gq_bits / gq_groups`` bits.
        gq_single_token: GQ gives one ``gq_bits``-wide token per position instead (``<= 62`` bits).
        gq_temperature: temperature of GQ's soft assignment in its entropy loss.
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
        fsq_levels: Sequence[int] = (8, 8, 8, 5, 5, 5),
        tokens_per_position: int = 1,
        gq_bits: int = 18,
        gq_groups: int = 3,
        gq_single_token: bool = False,
        gq_temperature: float = 0.01,
    ) -> None:
        super().__init__()
        self.compression = Compression(temporal=temporal_compression, spatial=spatial_compression)
        if latent_channels < 1:
            raise ValueError(f"latent_channels must be positive, got {latent_channels}")
        plan = resampling_plan(self.compression, patch_size)
        settings = QuantizerSettings(fsq_levels, tokens_per_position, gq_bits, gq_groups, gq_single_token, gq_temperature)
        self.quantizer = build_bottleneck(bottleneck, latent_channels, settings)
        spec = BackboneSpec(block_out_channels, layers_per_block, plan, patch_size, resample_shortcut, frame_padding)
        self.encoder = Encoder3d(in_channels, self.quantizer.input_channels, spec)
        self.decoder = Decoder3d(self.quantizer.output_channels, in_channels, spec)
        self.temporal_chunk: int | None = 4  # latent frames per chunk in encode/decode/tokenize
        self.tile: tuple[int, int] | None = None  # (tile, overlap) in pixels, see enable_tiling

    def enable_tiling(self, tile: int = 256, overlap: int = 64) -> None:
        """Encode and decode in overlapping ``tile`` x ``tile`` pixel tiles, blended over ``overlap``.

        Raises:
            ValueError: sizes that are not multiples of the spatial factor, or an overlap that
                leaves no stride.
        """
        s = self.compression.spatial
        if tile % s or overlap % s or not 0 <= overlap < tile:
            raise ValueError(f"tile={tile} and overlap={overlap} must be multiples of {s} with 0 <= overlap < tile")
        self.tile = (tile, overlap)

    def disable_tiling(self) -> None:
        self.tile = None

    def _encode_features(self, video: torch.Tensor) -> torch.Tensor:
        """The encoder's output for a whole video: in temporal chunks, and tiles when enabled."""

        def chunked(x: torch.Tensor) -> torch.Tensor:
            if self.temporal_chunk is None:
                return self.encoder(x)
            span = self.temporal_chunk * self.compression.temporal
            return run_in_chunks(self.encoder, self.encoder, x, 1 + span, span)

        if self.tile is None:
            return chunked(video)
        return tiled_map(chunked, video, *self.tile, scale=1 / self.compression.spatial)

    def _decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """The decoder's output for whole latents: in temporal chunks, and tiles when enabled."""

        def chunked(z: torch.Tensor) -> torch.Tensor:
            decode = lambda piece: self.decoder(self.quantizer.to_decoder(piece))  # noqa: E731
            if self.temporal_chunk is None:
                return decode(z)
            return run_in_chunks(self.decoder, decode, z, 1 + self.temporal_chunk, self.temporal_chunk)

        if self.tile is None:
            return chunked(codes)
        s = self.compression.spatial
        return tiled_map(chunked, codes, self.tile[0] // s, self.tile[1] // s, scale=s)

    @property
    def is_discrete(self) -> bool:
        return self.config.bottleneck != "kl"

    @property
    def codebook_size(self) -> int | None:
        """Vocabulary of one token (``None`` for a continuous model)."""
        return self.quantizer.quantizer.codebook_size if self.is_discrete else None

    @property
    def tokens_per_position(self) -> int | None:
        """Tokens per latent position, ``K`` (``None`` for a continuous model)."""
        return self.quantizer.quantizer.tokens_per_position if self.is_discrete else None

    @property
    def bits_per_token(self) -> float | None:
        """``log2(codebook_size)`` (``None`` for a continuous model)."""
        return self.quantizer.quantizer.bits_per_token if self.is_discrete else None

    def bits_per_pixel(self, frames: int, height: int, width: int) -> float | None:
        """Token bits per pixel of a ``frames x height x width`` clip (``None`` for a continuous model):
        ``K · log2(codebook_size) · latent positions / (T·H·W)``."""
        if not self.is_discrete:
            return None
        positions = math.prod(self.compression.latent_shape(frames, height, width))
        return self.tokens_per_position * self.bits_per_token * positions / (frames * height * width)

    def _require_discrete(self, what: str) -> None:
        if not self.is_discrete:
            raise ValueError(
                f"{what} needs a discrete model (bottleneck fsq or gq); this one is continuous (kl): "
                "use encode/decode for its latents"
            )

    def check_video(self, video: torch.Tensor) -> None:
        """Raises ``ValueError`` naming the fix when ``video`` is not ``[B, C, 1 + k·t, H, W]``."""
        if video.ndim != 5 or video.shape[1] != self.config.in_channels:
            raise ValueError(
                f"expected a video batch [B, {self.config.in_channels}, T, H, W], got shape {tuple(video.shape)}"
            )
        self.compression.check_clip(*video.shape[2:])

    def latent_values_per_pixel(self) -> float:
        """Latent values per input pixel value, ``C / (3·t·s·s)``, for long clips."""
        return self.quantizer.code_channels / (self.config.in_channels * self.compression.pixels_per_latent_position())

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """Deterministic latents ``[B, C, 1 + k, H/s, W/s]``: the posterior mean for ``kl``, the
        quantized codes for ``fsq``/``gq``."""
        self.check_video(video)
        return self.quantizer.encode(self._encode_features(video))

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Video ``[B, 3, 1 + k·t, h·s, w·s]`` from latents ``[B, C, 1 + k, h, w]`` (as ``encode`` gives)."""
        if latents.ndim != 5 or latents.shape[1] != self.quantizer.code_channels:
            raise ValueError(
                f"expected latents [B, {self.quantizer.code_channels}, t, h, w], got {tuple(latents.shape)}"
            )
        return self._decode_codes(latents)

    def tokenize(self, video: torch.Tensor) -> torch.Tensor:
        """int64 token indices ``[B, K, 1 + k, H/s, W/s]`` (discrete models only)."""
        self._require_discrete("tokenize")
        self.check_video(video)
        return self.quantizer.quantizer(self.quantizer.project_in(self._encode_features(video))).indices

    def indices_to_latents(self, indices: torch.Tensor) -> torch.Tensor:
        """The exact codes of ``indices``, in the model's dtype; ``ValueError`` when out of range."""
        self._require_discrete("indices_to_latents")
        return self.quantizer.quantizer.indices_to_codes(indices).to(self.dtype)

    def detokenize(self, indices: torch.Tensor) -> torch.Tensor:
        """Video from token indices ``[B, K, t', h', w']`` (discrete models only)."""
        return self.decode(self.indices_to_latents(indices))

    def forward(self, video: torch.Tensor, sample_posterior: bool | None = None) -> AutoencoderOutput:
        """Encodes, passes the bottleneck (sampling it in training mode unless told) and decodes."""
        self.check_video(video)
        sample = self.training if sample_posterior is None else sample_posterior
        out = self.quantizer(self.encoder(video), sample=sample)
        return AutoencoderOutput(
            reconstruction=self.decoder(self.quantizer.to_decoder(out.latents)),
            latents=out.latents,
            indices=out.indices,
            losses=out.losses,
            stats=out.stats,
        )
