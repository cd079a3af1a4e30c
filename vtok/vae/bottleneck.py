"""The bottleneck between encoder and decoder, chosen by the closed ``bottleneck`` config field.

Every bottleneck turns the encoder's output into the latents the decoder reads, plus its own
training losses and statistics; discrete ones also give token indices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch

BottleneckKind = Literal["kl"]


@dataclass
class BottleneckOutput:
    """Latents for the decoder, token indices (discrete bottlenecks only), losses and statistics."""

    latents: torch.Tensor
    indices: torch.Tensor | None = None
    losses: dict[str, torch.Tensor] = field(default_factory=dict)
    stats: dict[str, torch.Tensor] = field(default_factory=dict)


class Bottleneck(Protocol):
    """What ``VideoAutoencoder`` needs of a bottleneck module."""

    input_channels: int  # channels the encoder must produce
    latent_channels: int  # channels the decoder reads

    def __call__(self, h: torch.Tensor, sample: bool) -> BottleneckOutput: ...

    def encode(self, h: torch.Tensor) -> torch.Tensor:
        """Deterministic latents for inference."""
        ...


def build_bottleneck(kind: BottleneckKind, latent_channels: int) -> torch.nn.Module:
    """Instantiates the bottleneck named by the config."""
    if kind == "kl":
        from vtok.vae.gaussian import GaussianBottleneck

        return GaussianBottleneck(latent_channels)
    raise ValueError(f"bottleneck={kind!r} is not supported; choose one of {BottleneckKind.__args__}")
