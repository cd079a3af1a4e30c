"""Validation metrics averaged over clips across ranks, each clip weighted once.

Lightning's ``self.log(..., batch_size=n, sync_dist=True)`` averages the ranks' running sums and
their clip counts separately, and the count is an integer tensor: averaging 2 clips on one rank
with 1 on another gives 1, not 1.5, and the metric comes out 1.5x too large. Ranks score unequal
numbers of clips whenever the validation set does not divide by the world size (the padding is
left out so that each clip counts once), so vtok keeps the sums and the count itself, in float,
and reduces them once at the end of validation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class ClipWeightedMeans:
    """Running sums of per-batch mean metrics, weighted by the clips of each batch."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.clips = 0

    def add(self, metrics: dict[str, torch.Tensor], clips: int) -> None:
        """Adds one batch: ``metrics`` are its means over ``clips`` clips (tensors, left on their device)."""
        for name, value in metrics.items():
            weighted = value.detach().float() * clips
            self.sums[name] = self.sums[name] + weighted if name in self.sums else weighted
        self.clips += clips

    def means(self, sum_over_ranks: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, torch.Tensor]:
        """The means over every rank's clips (each rank must call this: ``sum_over_ranks`` is a
        collective), then starts afresh."""
        names = sorted(self.sums)
        if not names:
            return {}
        totals = torch.stack([self.sums[name] for name in names])
        count = torch.tensor([float(self.clips)], device=totals.device)
        reduced = sum_over_ranks(torch.cat([totals, count]))
        self.sums, self.clips = {}, 0
        return dict(zip(names, reduced[:-1] / reduced[-1]))
