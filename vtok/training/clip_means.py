"""Validation metrics averaged over clips across ranks, each clip weighted once.

Lightning's ``self.log(..., batch_size=n, sync_dist=True)`` averages the ranks' running sums and
their clip counts separately, and the count is an integer tensor: averaging 2 clips on one rank
with 1 on another gives 1, not 1.5, and the metric comes out 1.5x too large. Ranks score unequal
numbers of clips whenever the validation set does not divide by the world size (the padding is
left out so that each clip counts once), so vtok keeps the sums and the count itself and gathers
them once at the end of validation (torchmetrics' ``MeanMetric`` would need every rank to know
every metric's name beforehand; a rank whose share is all padding knows none).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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

    def means(self, from_every_rank: Callable[[Any], list[Any]]) -> dict[str, float]:
        """The means over every rank's clips, then starts afresh. Every rank must call it
        (``from_every_rank`` is a collective); a rank that scored nothing (its share was all
        padding) adds nothing.

        Args:
            from_every_rank: gathers a picklable value from every rank
                (:func:`vtok.training.rank_states.from_every_rank`).
        """
        parts = from_every_rank(({name: float(total) for name, total in self.sums.items()}, self.clips))
        self.sums, self.clips = {}, 0
        clips = sum(count for _, count in parts)
        names = sorted(set().union(*(sums for sums, _ in parts)))
        return {name: sum(sums.get(name, 0.0) for sums, _ in parts) / clips for name in names} if clips else {}
