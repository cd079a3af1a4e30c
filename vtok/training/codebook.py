"""Codebook usage over a window of training steps, with a warning when the codebook collapses.

A batch's usage says little (a 64,000-code codebook cannot be covered by one batch); the fraction
of codes seen at least once over the last ``window_steps`` batches, on all ranks together, does.
Usage is kept per token slot (per group for GQ), so one dead group cannot hide behind the others.
The window open at a checkpoint is saved with it, so a resumed run logs the same windows as an unbroken one.
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


# what the training step returns -> how a warning names its slots; first-frame extra tokens have codebooks of their own
TOKEN_KINDS = {"indices": "token slot", "first_frame_indices": "first-frame token slot"}


class CodebookMonitor(Callback):
    """Logs ``codebook/usage`` (mean over the slots of the regular tokens) and ``codebook/min_slot_usage`` (the
    least used slot, first-frame extra tokens included) every window, and ``codebook/first_frame_usage`` (mean
    over the extra tokens' slots) for a model with first-frame tokens.

    Args:
        window_steps: batches per window.
        collapse_threshold: warn when a slot's usage in a window falls below this fraction.
    """

    def __init__(self, window_steps: int = 100, collapse_threshold: float = 0.05) -> None:
        self.window_steps = window_steps
        self.collapse_threshold = collapse_threshold
        self._seen: dict[str, torch.Tensor] = {}  # per kind of token (see TOKEN_KINDS): bool [slots, vocabulary]
        self._steps = 0
        self._untracked = False

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Puts the window a checkpoint gave back (on the CPU) where the codes are counted."""
        self._seen = {kind: seen.to(pl_module.device) for kind, seen in self._seen.items()}

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if not isinstance(outputs, dict) or "indices" not in outputs or self._untracked:
            return
        bottleneck = pl_module.autoencoder.quantizer
        quantizers = {"indices": bottleneck.quantizer, "first_frame_indices": bottleneck.first_frame}
        for kind in (kind for kind in TOKEN_KINDS if kind in outputs):
            groups, vocabulary = quantizers[kind].token_groups(outputs[kind])
            if vocabulary > MAX_TRACKED_VOCABULARY:
                log.warning("codebook usage is not tracked for a vocabulary of %d codes per token", vocabulary)
                self._untracked = True
                return
            if kind not in self._seen:
                self._seen[kind] = torch.zeros(groups.shape[1], vocabulary, dtype=torch.bool, device=groups.device)
            self._seen[kind].scatter_(1, groups.t(), True)
        self._steps += 1
        if self._steps < self.window_steps:
            return
        usage = {kind: trainer.strategy.reduce(seen.float(), reduce_op=ReduceOp.MAX).mean(1) for kind, seen in self._seen.items()}
        values = torch.stack([u.mean() for u in usage.values()] + [u.min() for u in usage.values()]).tolist()  # one sync
        mean, least = dict(zip(usage, values[: len(usage)])), dict(zip(usage, values[len(usage) :]))
        logged = {"codebook/usage": mean["indices"], "codebook/min_slot_usage": min(least.values())}
        if "first_frame_indices" in mean:
            logged["codebook/first_frame_usage"] = mean["first_frame_indices"]
        log_on_this_batch(trainer, logged)
        for kind in (kind for kind in usage if least[kind] < self.collapse_threshold and trainer.is_global_zero):
            log.warning(  # the same on every rank: said once
                "codebook collapse: a %s used only %.1f%% of its %d codes over the last %d steps "
                "(mean over slots %.1f%%); raise the entropy weight or lower the learning rate",
                TOKEN_KINDS[kind], 100 * least[kind], self._seen[kind].shape[1], self._steps, 100 * mean[kind],
            )  # fmt: skip
        for seen in self._seen.values():
            seen.zero_()
        self._steps = 0

    def state_dict(self) -> dict[str, Any]:
        """The open window: its batch count, and the codes each slot has used so far, which
        :meth:`on_save_checkpoint` fills in with all ranks' (none between windows)."""
        return {"steps": self._steps, "seen": {}}

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        """Saves the open window's codes of all ranks together (the window ends in that union anyway); every rank
        takes part, as in every Lightning save."""
        state = checkpoint.get("callbacks", {}).get(self.state_key)
        if state is not None and self._steps:  # the same step count on every rank: all reduce, or none
            reduce = trainer.strategy.reduce
            union = {kind: reduce(seen.to(torch.uint8), reduce_op=ReduceOp.MAX) for kind, seen in self._seen.items()}
            state["seen"] = {kind: codes.bool().cpu() for kind, codes in union.items()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._steps = int(state_dict.get("steps", 0))
        self._seen = dict(state_dict.get("seen", {}))
