"""Codebook usage over a window of training steps, with a warning when the codebook collapses.

A batch's usage says little (a 64,000-code codebook cannot be covered by one batch); the fraction
of codes seen at least once over the last ``window_steps`` batches, on all ranks together, does.
Usage is kept per token slot (per group for GQ), so one dead group cannot hide behind the others.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch.distributed import ReduceOp

from vtok.training.direct_logging import log_on_this_batch

log = logging.getLogger(__name__)

MAX_TRACKED_VOCABULARY = 2**24  # a bool per code and slot; larger vocabularies are not tracked


class CodebookMonitor(Callback):
    """Logs ``codebook/usage`` (mean over slots) and ``codebook/min_slot_usage`` every window.

    Args:
        window_steps: batches per window.
        collapse_threshold: warn when a slot's usage in a window falls below this fraction.
    """

    def __init__(self, window_steps: int = 100, collapse_threshold: float = 0.05) -> None:
        self.window_steps = window_steps
        self.collapse_threshold = collapse_threshold
        self._seen: torch.Tensor | None = None  # bool [slots, vocabulary]
        self._steps = 0
        self._untracked = False

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if not isinstance(outputs, dict) or "indices" not in outputs:
            return
        groups, vocabulary = pl_module.autoencoder.quantizer.quantizer.token_groups(outputs["indices"])
        if vocabulary > MAX_TRACKED_VOCABULARY:
            if not self._untracked:
                log.warning("codebook usage is not tracked for a vocabulary of %d codes per token", vocabulary)
            self._untracked = True
            return
        if self._seen is None:
            self._seen = torch.zeros(groups.shape[1], vocabulary, dtype=torch.bool, device=groups.device)
        self._seen.scatter_(1, groups.t(), True)
        self._steps += 1
        if self._steps < self.window_steps:
            return
        usage = trainer.strategy.reduce(self._seen.float(), reduce_op=ReduceOp.MAX).mean(1)  # codes seen on any rank
        mean, worst = torch.stack([usage.mean(), usage.min()]).tolist()  # the window's one host-device sync
        log_on_this_batch(trainer, {"codebook/usage": mean, "codebook/min_slot_usage": worst})
        if worst < self.collapse_threshold and trainer.is_global_zero:  # the same on every rank: said once
            log.warning(
                "codebook collapse: a token slot used only %.1f%% of its %d codes over the last %d steps "
                "(mean over slots %.1f%%); raise the entropy weight or lower the learning rate",
                100 * worst, vocabulary, self._steps, 100 * mean,
            )
        self._seen.zero_()
        self._steps = 0
