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


class WarmupEMA(AveragedModel):
    """``AveragedModel`` with the warm-up decay of :func:`warmup_ema_fn`, updated without reading
    anything back from the device.

    ``AveragedModel.update_parameters`` tests its counter ``n_averaged`` (a buffer on the GPU) on
    the host, which makes the CPU wait for the GPU at every optimizer step. This one keeps a host
    copy of the count (read from the buffer once after a checkpoint is loaded); the buffer is
    still updated and saved, so checkpoints are unchanged.

    Args:
        model: the network to average (deep-copied).
        decay: the final decay.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        super().__init__(model, multi_avg_fn=warmup_ema_fn(decay), use_buffers=True)
        self._updates: int | None = 0

    def _load_from_state_dict(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super()._load_from_state_dict(*args, **kwargs)
        self._updates = None  # the loaded n_averaged is read at the next update

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        if self._updates is None:
            self._updates = int(self.n_averaged)
        averaged = [*self.module.parameters(), *self.module.buffers()]
        current = [t.detach() for t in (*model.parameters(), *model.buffers())]
        if self._updates == 0:
            for a, c in zip(averaged, current):
                a.detach().copy_(c)
        else:
            self.multi_avg_fn([a.detach() for a in averaged], current, self._updates)
        self.n_averaged += 1
        self._updates += 1


def ema_copy(model: nn.Module, decay: float) -> AveragedModel:
    """A frozen EMA copy of ``model`` (its parameters never require grad, so DDP ignores them)."""
    if not 0 < decay < 1:
        raise ValueError(f"ema_decay must be in (0, 1) or null, got {decay}")
    return WarmupEMA(model, decay).requires_grad_(False)
