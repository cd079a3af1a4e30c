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

    def means(
        self, names: list[str], device: torch.device, sum_over_ranks: Callable[[torch.Tensor], torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """The means of ``names`` over every rank's clips, then starts afresh. Every rank must call it
        with the same ``names`` (``sum_over_ranks`` is a collective); a rank that scored none of them
        (its share was all padding) adds zeros.

        Args:
            names: the metrics every rank reported (the union of :attr:`sums`' keys over ranks).
            device: where a rank with nothing of its own puts its zeros.
            sum_over_ranks: sums a tensor over the ranks (the strategy's ``reduce``).
        """
        if not names:
            return {}
        zero = torch.zeros((), device=device)
        totals = torch.stack([self.sums.get(name, zero).to(device) for name in names])
        reduced = sum_over_ranks(torch.cat([totals, torch.tensor([float(self.clips)], device=device)]))
        self.sums, self.clips = {}, 0
        return dict(zip(names, reduced[:-1] / reduced[-1])) if float(reduced[-1]) > 0 else {}
