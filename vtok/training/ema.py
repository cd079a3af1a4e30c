"""Exponential moving average of weights with a warm-up of the decay (as in timm and diffusers).

With a fixed decay of 0.999 the average is mostly the random initialisation for thousands of
steps; ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates lets it follow the weights early
and settle to ``decay`` later.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.optim.swa_utils import AveragedModel
from torch import nn


def warmup_ema_fn(decay: float) -> Callable[[Sequence[torch.Tensor], Sequence[torch.Tensor], torch.Tensor | int], None]:
    """A ``multi_avg_fn`` for ``torch.optim.swa_utils.AveragedModel``."""

    def update(averaged: Sequence[torch.Tensor], current: Sequence[torch.Tensor], num_averaged: torch.Tensor | int) -> None:
        n = float(num_averaged)
        effective = min(decay, (1.0 + n) / (10.0 + n))
        pairs = [(a, c) for a, c in zip(averaged, current) if a.is_floating_point()]
        if pairs:
            torch._foreach_lerp_([a for a, _ in pairs], [c for _, c in pairs], 1.0 - effective)
        for a, c in zip(averaged, current):
            if not a.is_floating_point():  # integer buffers (quantizer constants) are copied
                a.copy_(c)

    return update


def ema_copy(model: nn.Module, decay: float) -> AveragedModel:
    """A frozen EMA copy of ``model`` (its parameters never require grad, so DDP ignores them)."""
    if not 0 < decay < 1:
        raise ValueError(f"ema_decay must be in (0, 1) or null, got {decay}")
    average = AveragedModel(model, multi_avg_fn=warmup_ema_fn(decay), use_buffers=True)
    return average.requires_grad_(False)
