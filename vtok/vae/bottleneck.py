"""The bottleneck between encoder and decoder, chosen by the closed ``bottleneck`` config field.

Every bottleneck turns the encoder's output into the latents the decoder reads, plus its own
training losses and statistics; discrete ones also give token indices. Three widths matter:
``input_channels`` (what the encoder produces), ``code_channels`` (what ``encode`` returns and
``decode`` accepts: the Gaussian latent, or the quantizer's codes) and ``output_channels`` (what
the decoder's first convolution reads, after ``to_decoder``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch

BottleneckKind = Literal["kl", "fsq", "gq"]


@dataclass
class BottleneckOutput:
    """Latents in code space, token indices (discrete bottlenecks only), losses and statistics."""

    latents: torch.Tensor
    indices: torch.Tensor | None = None
    losses: dict[str, torch.Tensor] = field(default_factory=dict)
    stats: dict[str, torch.Tensor] = field(default_factory=dict)
    first_frame_indices: torch.Tensor | None = None


class Bottleneck(Protocol):
    """What ``VideoAutoencoder`` needs of a bottleneck module."""

    input_channels: int
    code_channels: int
    output_channels: int
    first_frame_channels: int  # of code_channels, those that carry values in the first latent frame alone

    def __call__(self, h: torch.Tensor, sample: bool, pixel_values: int) -> BottleneckOutput:
        """``pixel_values``: of one input clip (3·T·H·W), for losses reported per pixel value."""
        ...

    def encode(self, h: torch.Tensor) -> torch.Tensor:
        """Deterministic latents in code space, for inference."""
        ...

    def to_decoder(self, codes: torch.Tensor) -> torch.Tensor:
        """Code-space latents -> the decoder's input."""
        ...


@dataclass(frozen=True)
class QuantizerSettings:
    """The quantizer fields of the model config (flat there, grouped here)."""

    fsq_levels: Sequence[int] = (8, 8, 8, 5, 5, 5)
    tokens_per_position: int = 1
    gq_bits: int = 18
    gq_groups: int = 3
    gq_single_token: bool = False
    gq_temperature: float = 0.01
    first_frame_tokens: int = 0


def build_bottleneck(kind: BottleneckKind, latent_channels: int, settings: QuantizerSettings) -> torch.nn.Module:
    """Instantiates the bottleneck named by the config."""
    extra = settings.first_frame_tokens
    if extra < 0 or float(extra) % 1 or (extra and kind != "fsq"):  # kl too: never ignored; 1.5: never truncated
        raise ValueError(
            f"first_frame_tokens={extra}: extra first-frame tokens need bottleneck fsq and "
            "a whole count >= 1 (0 turns them off, as bottleneck kl and gq need)"
        )
    _check_tokens_per_position(kind, settings)
    if kind == "kl":
        from vtok.vae.gaussian import GaussianBottleneck

        return GaussianBottleneck(latent_channels)
    from vtok.tokenizers import FSQ, GroupLFQ
    from vtok.vae.quantized import QuantizedBottleneck

    if kind == "fsq":
        extra = FSQ(settings.fsq_levels, settings.first_frame_tokens) if settings.first_frame_tokens else None
        return QuantizedBottleneck(FSQ(settings.fsq_levels, settings.tokens_per_position), latent_channels, extra)
    if kind == "gq":
        quantizer = GroupLFQ(settings.gq_bits, settings.gq_groups, settings.gq_single_token, settings.gq_temperature)
        return QuantizedBottleneck(quantizer, latent_channels)
    raise ValueError(f"bottleneck={kind!r} is not supported; choose one of {BottleneckKind.__args__}")


def _check_tokens_per_position(kind: BottleneckKind, settings: QuantizerSettings) -> None:
    """Raises ``ValueError`` for a ``tokens_per_position`` the bottleneck would ignore: the field is
    FSQ's; GQ gives ``gq_groups`` tokens per position (1 with ``gq_single_token``) and kl none. The
    default 1, which every earlier kl and gq config carries, and GQ's own count are accepted."""
    if kind == "fsq" or settings.tokens_per_position == 1:
        return
    if kind == "gq":
        count = 1 if settings.gq_single_token else settings.gq_groups
        if settings.tokens_per_position == count:
            return
        raise ValueError(
            f"tokens_per_position={settings.tokens_per_position} is FSQ's: bottleneck gq gives {count} tokens per position "
            f"(gq_groups, or 1 with gq_single_token): set gq_groups and leave tokens_per_position at 1 (or {count})"
        )
    raise ValueError(
        f"tokens_per_position={settings.tokens_per_position} is FSQ's: bottleneck {kind} has no tokens; leave it at 1"
    )
