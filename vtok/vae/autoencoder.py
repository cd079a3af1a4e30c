"""``VideoAutoencoder``: the causal video VAE / tokenizer, saved and loaded with diffusers."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.utils import BaseOutput

from vtok.tokenizers.autocast import autocast_casts
from vtok.vae.backbone import BackboneSpec
from vtok.vae.bottleneck import BottleneckKind, QuantizerSettings, build_bottleneck
from vtok.vae.cast_warning import drop_empty_float32_warning
from vtok.vae.causal_conv import FramePadding
from vtok.vae.compression import Compression, nearest_lengths, resampling_plan
from vtok.vae.decoder import Decoder3d
from vtok.vae.diffusers_backbone import (
    PriorClass,
    PriorDecoder,
    PriorEncoder,
    build_prior,
    prior_compression,
    prior_frame_multiple,
    prior_latent_channels,
)
from vtok.vae.encoder import Encoder3d
from vtok.vae.export_config import ExportConfigMixin
from vtok.vae.finite import NonFiniteLatents, model_fault, non_finite_clips
from vtok.vae.layout import to_network_layout
from vtok.vae.long_video import LongVideoMixin
from vtok.vae.readable_weights import ReadableWeightsMixin
from vtok.vae.strict_loading import StrictLoadingMixin
from vtok.vae.timestep import check_noise_level, noised
from vtok.vae.tokens import FirstFrameTokens

drop_empty_float32_warning()  # a cast of a vtok model is not inconsistent (see vtok.vae.cast_warning)


@dataclass
class AutoencoderOutput(BaseOutput):
    """Result of ``VideoAutoencoder.forward``.

    Args:
        reconstruction: decoded video ``[B, C, T, H, W]``.
        latents: what the decoder read ``[B, C_lat, t', h', w']`` (sampled or quantized).
        indices: token indices ``[B, K, t', h', w']`` for discrete bottlenecks, else ``None``.
        losses: the bottleneck's unweighted training losses (``kl``, ``entropy``, ...).
        stats: detached statistics of the bottleneck.
        continuous_reconstruction: for a discrete model asked for it, the video decoded from the
            continuous latents (before quantization), for joint discrete-continuous training.
        first_frame_indices: extra tokens of the first latent frame (first-frame strengthening).
    """

    reconstruction: torch.Tensor
    latents: torch.Tensor
    indices: torch.Tensor | None = None
    losses: dict[str, torch.Tensor] = field(default_factory=dict)
    stats: dict[str, torch.Tensor] = field(default_factory=dict)
    continuous_reconstruction: torch.Tensor | None = None
    first_frame_indices: torch.Tensor | None = None


class VideoAutoencoder(ReadableWeightsMixin, ExportConfigMixin, StrictLoadingMixin, ModelMixin, ConfigMixin, LongVideoMixin):
    """Causal 3D convolutional autoencoder for video: a continuous VAE or a discrete tokenizer.

    Videos are float ``[B, 3, 1 + k·t, H, W]`` in ``[-1, 1]`` (an image is ``T = 1``). ``encode``
    gives ``[B, C, 1 + k, H/s, W/s]``: the Gaussian posterior mean (``kl``, ``C = latent_channels``)
    or the quantized codes (``fsq``/``gq``, ``C`` = the quantizer's width); ``decode`` takes them
    back. Discrete models also ``tokenize`` to int64 ``[B, K, 1 + k, H/s, W/s]`` and
    ``detokenize``, and give their continuous latents with ``encode(video, discrete=False)``
    (decoded by ``decode(z, discrete=False)``). Every config field is JSON-serialisable, so
    ``save_pretrained`` / ``from_pretrained`` round-trip the model exactly. ``from_pretrained`` reads
    a folder or the Hub cache, never the network unless given ``local_files_only=False``, and refuses
    incomplete weights and a config.json edited after export (:mod:`~vtok.vae.export_config`).

    The backbone is vtok's own causal network, or a diffusers video VAE (``backbone_class`` and
    ``backbone_config``, see :mod:`vtok.vae.diffusers_backbone` and :mod:`vtok.vae.priors`).
    Long videos and large frames: see :class:`~vtok.vae.long_video.LongVideoMixin`.

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
        frame_padding: what causal convolutions see before the first frame: ``"replicate"`` (copies
            of the first frame) or ``"zeros"``.
        resample_shortcut: parameter-free space/time-to-depth shortcuts around resampling.
        in_channels: video channels.
        fsq_levels: FSQ levels per channel, e.g. ``[8, 8, 8, 5, 5, 5]`` (64,000 codes).
        tokens_per_position: FSQ tokens per latent position (OneVAE multi-token quantization);
            ``kl`` takes only 1 and ``gq`` 1 or its own count (``gq_groups``, or 1 with ``gq_single_token``).
        gq_bits: GQ bits per latent position (effective codebook ``2^gq_bits``).
        gq_groups: GQ groups; each is one token of ``gq_bits / gq_groups`` bits.
        gq_single_token: GQ gives one ``gq_bits``-wide token per position instead (``<= 62`` bits).
        gq_temperature: temperature of GQ's soft assignment in its entropy loss.
        first_frame_tokens: extra FSQ tokens per position for the first latent frame (OneVAE's
            first-frame strengthening; 0 turns it off); ``tokenize`` then returns
            :class:`~vtok.vae.tokens.FirstFrameTokens`.
        backbone_class: a diffusers video VAE class whose encoder and decoder are the backbone
            (``None``: vtok's own network; the width and depth fields above are then unused).
        backbone_config: that class's config.
        decoder_causal: causal decoder (``False``: time padded on both sides, as LTX-Video's; long
            videos are then decoded in overlapping, cross-faded chunks).
        decoder_timestep_conditioning: LTX-Video's denoising decoder: ``decode(z, timestep=t)``
            reconstructs the clean video from ``(1 - t)·z + t·ε``; in training ``t`` is drawn from
            ``[0, denoise_max_timestep]`` per clip.
        denoise_max_timestep: the largest noise level drawn in training.
        decoder_noise_channels: WeTok's generative decoder: channels of Gaussian noise read beside
            the latent (sampled in training; zero, or seeded with ``noise_seed``, at inference).
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
        first_frame_tokens: int = 0,
        backbone_class: PriorClass | None = None,
        backbone_config: dict[str, Any] | None = None,
        decoder_causal: bool = True,
        decoder_timestep_conditioning: bool = False,
        denoise_max_timestep: float = 0.2,
        decoder_noise_channels: int = 0,
    ) -> None:
        super().__init__()
        self.compression = Compression(temporal=temporal_compression, spatial=spatial_compression)
        if latent_channels < 1:
            raise ValueError(f"latent_channels must be positive, got {latent_channels}")
        if layers_per_block < 1 or decoder_noise_channels < 0:
            raise ValueError(
                f"layers_per_block must be at least 1 (got {layers_per_block}) and decoder_noise_channels at least 0 "
                f"(got {decoder_noise_channels})"
            )
        if not 0 <= denoise_max_timestep <= 1:
            raise ValueError(f"denoise_max_timestep must lie in [0, 1], got {denoise_max_timestep}")
        settings = QuantizerSettings(
            fsq_levels, tokens_per_position, gq_bits, gq_groups, gq_single_token, gq_temperature, first_frame_tokens
        )
        self.quantizer = build_bottleneck(bottleneck, latent_channels, settings)
        self.temporal_chunk: int | None = 4  # latent frames per chunk in encode/decode/tokenize (see LongVideoMixin)
        self.tile: tuple[int, int] | None = None  # (tile, overlap) in pixels, see enable_tiling
        if backbone_class is None:
            plan = resampling_plan(self.compression, patch_size)
            spec = BackboneSpec(block_out_channels, layers_per_block, plan, patch_size, resample_shortcut, frame_padding)
            self.encoder = Encoder3d(in_channels, self.quantizer.input_channels, spec)
            self.decoder = Decoder3d(
                self.quantizer.output_channels, in_channels, spec, decoder_causal,
                decoder_timestep_conditioning, decoder_noise_channels,
            )  # fmt: skip
        else:
            if not decoder_causal or decoder_timestep_conditioning or decoder_noise_channels:
                raise ValueError("the decoder options (non-causal, timestep, noise) need vtok's own backbone")
            self._build_prior_backbone(backbone_class, backbone_config or {}, latent_channels)

    def _build_prior_backbone(self, class_name: str, config: dict[str, Any], latent_channels: int) -> None:
        vae = build_prior(class_name, config)
        found = Compression(*prior_compression(vae))
        if found != self.compression:
            raise ValueError(
                f"the {class_name} backbone compresses {found}, but the config asks for {self.compression}: "
                f"set temporal_compression={found.temporal} and spatial_compression={found.spatial}"
            )
        if prior_latent_channels(vae) != latent_channels:
            raise ValueError(
                f"the {class_name} backbone has {prior_latent_channels(vae)} latent channels; "
                f"set latent_channels={prior_latent_channels(vae)}"
            )
        self.encoder = PriorEncoder(vae, mean_only=self.is_discrete)
        self.decoder = PriorDecoder(self.encoder)
        self.temporal_chunk = None  # diffusers' encode/decode manage long clips with their own caches
        self._backbone_chunks_itself = True  # and another chunk size is refused (see LongVideoMixin)

    def enable_gradient_checkpointing(self, gradient_checkpointing_func: Callable | None = None) -> None:
        """diffusers' activation checkpointing of the encoder and decoder stages; ``ValueError`` on a diffusers
        backbone (``model.init_from``) whose class has none: Wan 2.1's VAE takes the flag through this model and
        never reads it, so nothing would be recomputed."""
        backbone = self.encoder.vae if isinstance(self.encoder, PriorEncoder) else None
        if backbone is not None and not backbone._supports_gradient_checkpointing:
            raise ValueError(
                f"activation checkpointing (model.activation_checkpointing): the backbone {type(backbone).__name__} "
                "(encoder.vae) has no activation checkpointing in diffusers, so nothing would be recomputed; set it "
                "false (lower data.batch_size or data.num_frames to fit memory instead)"
            )
        super().enable_gradient_checkpointing(gradient_checkpointing_func)

    @property
    def is_discrete(self) -> bool:
        """Whether the bottleneck quantizes (FSQ or GQ: ``tokenize``/``detokenize`` work), not a KL VAE."""
        return self.config.bottleneck != "kl"

    @property
    def codebook_size(self) -> int | None:
        """Vocabulary of one token (``None`` for a continuous model)."""
        return self.quantizer.quantizer.codebook_size if self.is_discrete else None

    @property
    def tokens_per_position(self) -> int | None:
        """Regular tokens per latent position, ``K`` (``None`` for a continuous model)."""
        return self.quantizer.quantizer.tokens_per_position if self.is_discrete else None

    @property
    def bits_per_token(self) -> float | None:
        """``log2(codebook_size)`` (``None`` for a continuous model)."""
        return self.quantizer.quantizer.bits_per_token if self.is_discrete else None

    def tokens_per_clip(self, frames: int, height: int, width: int) -> int | None:
        """Tokens of one ``frames x height x width`` clip, first-frame extras included."""
        if not self.is_discrete:
            return None
        t, h, w = self.compression.latent_shape(frames, height, width)
        return self.tokens_per_position * t * h * w + self.config.first_frame_tokens * h * w

    def bits_per_pixel(self, frames: int, height: int, width: int) -> float | None:
        """Token bits per pixel of a ``frames x height x width`` clip (``None`` for a continuous
        model): ``tokens · log2(codebook_size) / (T·H·W)``."""
        tokens = self.tokens_per_clip(frames, height, width)
        return None if tokens is None else tokens * self.bits_per_token / (frames * height * width)

    def encoder_parameters(self) -> Iterator[torch.nn.Parameter]:
        """Parameters of the encoder side (for freezing), whichever the backbone."""
        if isinstance(self.encoder, PriorEncoder):
            vae = self.encoder.vae
            return (p for name, p in vae.named_parameters() if not name.startswith(("decoder.", "post_quant_conv.")))
        return self.encoder.parameters()

    def decoder_parameters(self) -> Iterator[torch.nn.Parameter]:
        """Parameters of the decoder side (for freezing), whichever the backbone."""
        if isinstance(self.decoder, PriorDecoder):
            vae = self.decoder.vae
            return (p for name, p in vae.named_parameters() if name.startswith(("decoder.", "post_quant_conv.")))
        return self.decoder.parameters()

    def _require_discrete(self, what: str) -> None:
        if not self.is_discrete:
            raise ValueError(
                f"{what} needs a discrete model (bottleneck fsq or gq); this one is continuous (kl): "
                "use encode/decode for its latents"
            )

    def check_video(self, video: torch.Tensor) -> None:
        """Raises ``ValueError`` naming the fix when ``video`` is not ``[B, C, 1 + k·t, H, W]``."""
        if video.ndim != 5 or video.shape[1] != self.config.in_channels or video.shape[0] == 0:
            raise ValueError(  # an empty batch encoded, and its latents were refused by decode
                f"expected a video batch [B, {self.config.in_channels}, T, H, W] of at least one clip, "
                f"got shape {tuple(video.shape)}"
            )
        if not video.is_floating_point():  # uint8 frames straight from a decoder
            raise ValueError(f"expected float pixels in [-1, 1], got {video.dtype}: use video.float() / 127.5 - 1")
        self._check_dtype(video, "the video is", "video")
        self.check_clip(*video.shape[2:])

    def check_clip(self, frames: int, height: int, width: int) -> None:
        """Raises ``ValueError`` naming the nearest sizes that fit when this model cannot take a clip of this shape:
        its own frame rule first where it is stricter than the compression's (a CogVideoX backbone), whose advice
        would name lengths it refuses."""
        if self.frame_multiple != self.compression.temporal:
            self.check_frames(frames)
        self.compression.check_clip(frames, height, width)

    def check_frames(self, frames: int) -> None:
        """Raises ``ValueError`` naming the nearest lengths when this model cannot reconstruct ``frames`` frames
        (see :attr:`frame_multiple`)."""
        multiple = self.frame_multiple
        if frames >= 1 and (frames - 1) % multiple == 0:
            return
        below, above = nearest_lengths(frames, multiple)
        backbone = self.config.backbone_class
        why = f" (its {backbone} backbone: an odd number of latent frames)" if multiple != self.compression.temporal else ""
        raise ValueError(f"frames={frames}: this model reconstructs T = 1 + k*{multiple} frames{why}; use {below} or {above}")

    @property
    def frame_multiple(self) -> int:
        """``m`` of the clip lengths ``T = 1 + k·m`` this model reconstructs: the temporal factor, but twice that on a
        CogVideoX backbone (see :func:`vtok.vae.diffusers_backbone.prior_frame_multiple`)."""
        return prior_frame_multiple(self.config.backbone_class or "", self.compression.temporal)

    @property
    def latent_frame_multiple(self) -> int:
        """``n`` of the latent frame counts ``1 + k·n`` the decoder takes: 1, or 2 on a CogVideoX backbone."""
        return self.frame_multiple // self.compression.temporal

    def _check_dtype(self, tensor: torch.Tensor, subject: str, variable: str) -> None:
        """Raises ``ValueError`` naming the fix when ``tensor`` is not in the model's dtype, nor one that an
        autocast on for its device casts (:func:`~vtok.tokenizers.autocast.autocast_casts`); ``subject`` and
        ``variable`` name it."""
        weights = next(self.parameters()).dtype
        if tensor.dtype != weights and not autocast_casts(tensor):
            raise ValueError(f"{subject} {tensor.dtype} and the model {weights}: use {variable}.to(model.dtype)")

    def latent_values_per_pixel(self) -> float:
        """Latent values per input pixel value, ``C / (3·t·s·s)``, for long clips: ``C`` counts the
        channels of every latent frame, not first-frame extras (zeros in later frames), which vanish
        in the limit as their tokens do in the presets' bits per pixel."""
        channels = self.quantizer.code_channels - self.quantizer.first_frame_channels
        return channels / (self.config.in_channels * self.compression.pixels_per_latent_position())

    def encode(self, video: torch.Tensor, discrete: bool = True) -> torch.Tensor:
        """Deterministic latents ``[B, C, 1 + k, H/s, W/s]``: the posterior mean for ``kl``, the
        quantized codes for ``fsq``/``gq`` (their continuous latents with ``discrete=False``); contiguous, whatever
        layout the network ran in (channels-last on CUDA), so they save with safetensors as they come."""
        self.check_video(video)
        features = self._encode_features(video)
        if self.is_discrete and not discrete:
            return features.contiguous()
        return self.quantizer.encode(features).contiguous()

    def decode(
        self,
        latents: torch.Tensor,
        discrete: bool = True,
        timestep: float | torch.Tensor | None = None,
        noise_seed: int | None = None,
    ) -> torch.Tensor:
        """Video ``[B, 3, 1 + k·t, h·s, w·s]`` from latents as ``encode`` gives them (with the same
        ``discrete`` flag).

        Args:
            latents: ``[B, C, t', h', w']``.
            discrete: ``False`` decodes a discrete model's continuous latents.
            timestep: noise level of ``latents`` for a denoising decoder (default 0: clean).
            noise_seed: a generative decoder reads zero noise (deterministic) unless given a seed,
                which draws one plausible reconstruction; any other decoder refuses one. The seed draws
                the noise of the whole batch at once: a clip decoded alone with it gets other noise than
                in a batch (decode clips one at a time for a draw that depends on the seed alone).
        """
        continuous = self.is_discrete and not discrete
        channels = self.quantizer.input_channels if continuous else self.quantizer.code_channels
        if latents.ndim != 5 or latents.shape[1] != channels or 0 in latents.shape:
            raise ValueError(f"expected latents [B, {channels}, t, h, w] with none empty, got {tuple(latents.shape)}")
        self._check_dtype(latents, "the latents are", "latents")
        if (latents.shape[2] - 1) % self.latent_frame_multiple:
            raise ValueError(f"the {self.config.backbone_class} backbone decodes an odd number of latent frames, got "
                             f"{latents.shape[2]}")  # fmt: skip
        # one layout whatever the caller's, so latents built from token indices decode to the same bits
        latents = to_network_layout(latents)
        features = latents if continuous else self.quantizer.to_decoder(latents)
        if noise_seed is not None and not self.config.decoder_noise_channels:
            raise ValueError("decode(noise_seed=...) needs decoder_noise_channels > 0: this decoder reads no noise")
        generator = torch.Generator(device=features.device).manual_seed(noise_seed) if noise_seed is not None else None
        features = self._decoder_input(features, sample=noise_seed is not None, generator=generator)
        return self._decode_features(features, self._timestep(timestep, latents)).contiguous()  # as encode's

    def decode_noised(
        self, latents: torch.Tensor, timestep: float, noise: torch.Tensor, discrete: bool = True
    ) -> torch.Tensor:
        """Decodes ``latents`` noised to level ``timestep`` (``(1 - t)·z + t·noise``), telling a
        denoising decoder the level (a plain decoder is not told: it cannot take it)."""
        check_noise_level(timestep)
        told = timestep if self.config.decoder_timestep_conditioning else None
        return self.decode(noised(latents, timestep, noise), discrete=discrete, timestep=told)

    def _timestep(self, timestep: float | torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
        """``timestep`` as float32 ``[B]`` for a denoising decoder, ``None`` for any other (which takes none
        but 0); ``ValueError`` for a level outside ``[0, 1]`` or not one per clip of ``like``."""
        if timestep is None or not self.config.decoder_timestep_conditioning:
            if timestep is not None and (torch.is_tensor(timestep) or timestep != 0):
                raise ValueError("decode(timestep=...) needs decoder_timestep_conditioning=true")
            return None
        check_noise_level(timestep)  # as given: a number is checked on the host, with no wait for the device
        t = torch.as_tensor(timestep, device=like.device, dtype=torch.float32)
        if t.ndim > 1 or t.numel() not in (1, like.shape[0]):
            raise ValueError(f"timestep must be a number or one per clip, [{like.shape[0]}], got shape {tuple(t.shape)}")
        return t.expand(like.shape[0])

    def _decoder_input(
        self, features: torch.Tensor, sample: bool, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """What the decoder reads: ``features``, with a generative decoder's noise channels appended
        (drawn when ``sample``, else zeros)."""
        if not self.config.decoder_noise_channels:
            return features
        shape = (features.shape[0], self.config.decoder_noise_channels, *features.shape[2:])
        noise = (
            torch.randn(shape, generator=generator, device=features.device, dtype=features.dtype)
            if sample
            else features.new_zeros(shape)
        )
        return torch.cat([features, noise], dim=1)

    @torch.no_grad()
    def tokenize(self, video: torch.Tensor) -> torch.Tensor | FirstFrameTokens:
        """int64 token indices ``[B, K, 1 + k, H/s, W/s]`` (discrete models only); with first-frame
        strengthening, :class:`~vtok.vae.tokens.FirstFrameTokens` holding them and the extras. Runs
        without gradients (indices carry none): autograd kept every chunk's activations of a long video."""
        self._require_discrete("tokenize")
        self.check_video(video)
        features = self._encode_features(video)
        clips = non_finite_clips(features)  # rounding NaN gives an index out of any codebook
        if clips:
            raise NonFiniteLatents(self._non_finite_reason(video[clips]), clips)
        return self.quantizer.tokenize(features)

    def _non_finite_reason(self, video: torch.Tensor) -> str:
        """Why the encoder gave NaN or inf for ``video``: its pixels, or else the model."""
        if not bool(video.isfinite().all()):
            return "the video has non-finite values (NaN or inf pixels), which no token can hold"
        return f"the encoder gave non-finite values (NaN or inf) for finite pixels: {model_fault(self)}"

    def indices_to_latents(self, tokens: torch.Tensor | FirstFrameTokens) -> torch.Tensor:
        """The exact codes of ``tokens``, in the model's dtype; ``ValueError`` when out of range."""
        self._require_discrete("indices_to_latents")
        return self.quantizer.indices_to_codes(tokens).to(self.dtype)

    def detokenize(self, tokens: torch.Tensor | FirstFrameTokens) -> torch.Tensor:
        """Video from the tokens ``tokenize`` gives (discrete models only)."""
        return self.decode(self.indices_to_latents(tokens))

    def forward(
        self, video: torch.Tensor, sample_posterior: bool | None = None, continuous: bool = False
    ) -> AutoencoderOutput:
        """Encodes, passes the bottleneck (sampling it in training mode unless told) and decodes;
        with ``continuous`` a discrete model also decodes its continuous latents."""
        self.check_video(video)
        sample = self.training if sample_posterior is None else sample_posterior
        features = self.encoder(video)
        out = self.quantizer(features, sample=sample, pixel_values=video[0].numel())
        latents, timestep = out.latents, None
        if self.config.decoder_timestep_conditioning and self.training:  # denoising: z_t = (1 - t) z + t ε
            timestep = torch.rand(video.shape[0], device=video.device) * self.config.denoise_max_timestep
            t = timestep.to(latents.dtype)[:, None, None, None, None]
            # noise in logical order (randn_like would follow the memory layout, which differs by device)
            latents = noised(latents, t, torch.randn(latents.shape, dtype=latents.dtype, device=latents.device))
        latents = to_network_layout(latents)  # as decode() reads them
        decoder_input = self._decoder_input(self.quantizer.to_decoder(latents), sample=self.training)
        continuous_input = self._decoder_input(features, sample=self.training) if continuous and self.is_discrete else None
        return AutoencoderOutput(
            reconstruction=self.decoder(decoder_input) if timestep is None else self.decoder(decoder_input, timestep),
            latents=out.latents,
            indices=out.indices,
            losses=out.losses,
            stats=out.stats,
            continuous_reconstruction=self.decoder(continuous_input) if continuous_input is not None else None,
            first_frame_indices=out.first_frame_indices,
        )
