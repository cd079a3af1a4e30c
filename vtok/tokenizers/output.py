"""The output every quantizer in :mod:`vtok.tokenizers` returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class QuantizerOutput:
    """What a quantizer gives back for a latent ``[B, C, T, H, W]``.

    Args:
        codes: quantized latent, same shape as the input, with a straight-through gradient.
        indices: int64 token indices ``[B, K, T, H, W]``, ``K`` tokens per latent position.
        losses: auxiliary training losses (unweighted scalars), e.g. ``{"entropy": ...}``.
        stats: detached statistics of the batch: ``perplexity`` and ``batch_usage`` (the share of the
            codebook the batch used), and GQ's ``per_sample_entropy`` and ``codebook_entropy``.
    """

    codes: torch.Tensor
    indices: torch.Tensor
    losses: dict[str, torch.Tensor] = field(default_factory=dict)
    stats: dict[str, torch.Tensor] = field(default_factory=dict)
