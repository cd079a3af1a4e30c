"""The shape of the encoder/decoder backbone, shared by both halves, and how stages are run."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from vtok.vae.causal_conv import FramePadding
from vtok.vae.widths import level_widths


@dataclass(frozen=True)
class BackboneSpec:
    """Widths, depth and resampling of the encoder and (mirrored) the decoder.

    Args:
        block_out_channels: width per resolution level, full resolution first (see :func:`level_widths`).
        layers_per_block: residual blocks per level.
        plan: ``(space, time)`` downsampling per stage, from full resolution down.
        patch_size: space-to-depth factor at the input (depth-to-space at the output).
        resample_shortcut: parameter-free shortcuts around the resampling convolutions.
        frame_padding: padding before the first frame in every causal convolution.
    """

    block_out_channels: Sequence[int]
    layers_per_block: int
    plan: Sequence[tuple[bool, bool]]
    patch_size: int = 1
    resample_shortcut: bool = True
    frame_padding: FramePadding = "replicate"

    def __post_init__(self) -> None:
        # a causal convolution pads with zeros only for "zeros": any other value (a typo) replicated in silence
        if self.frame_padding not in FramePadding.__args__:
            raise ValueError(f"frame_padding={self.frame_padding!r} is not supported; choose one of {FramePadding.__args__}")

    @property
    def widths(self) -> list[int]:
        return level_widths(self.block_out_channels, len(self.plan) + 1)


def run_stages(
    stages: Sequence[nn.Module],
    h: torch.Tensor,
    checkpoint: Callable[..., torch.Tensor] | None,
    embedding: torch.Tensor | None = None,
) -> torch.Tensor:
    """Applies ``stages`` in order (each given ``embedding``), through ``checkpoint`` (activation
    checkpointing) when given."""
    for stage in stages:
        h = checkpoint(stage, h, embedding) if checkpoint is not None and torch.is_grad_enabled() else stage(h, embedding)
    return h
