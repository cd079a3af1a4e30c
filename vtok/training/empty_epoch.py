"""Stops a run whose training epoch ends without a single batch.

A data source smaller than one batch (``drop_last``), or shards whose every member was skipped,
gives empty epochs; Lightning then starts the next one, and the next, without ever reaching
``max_steps``: a run that never ends and never trains. Sources whose size is known are refused
before training (``VideoDataModule.setup``); this catches the rest (shards without an index) at
the end of the second empty epoch in a row. One alone is normal: a run resumed from a checkpoint
written on an epoch's last batch starts with the empty remainder of that epoch.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer


class NoTrainingBatchesError(RuntimeError):
    """A training epoch ended without one batch."""


class EmptyEpochGuard(Callback):
    """Raises :class:`NoTrainingBatchesError` at the end of the second training epoch in a row that
    gave no batch."""

    def __init__(self) -> None:
        self._batches = 0
        self._empty_in_a_row = 0

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._batches = 0

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        self._batches += 1

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._empty_in_a_row = self._empty_in_a_row + 1 if self._batches == 0 else 0
        if self._empty_in_a_row >= 2 and not trainer.should_stop:
            datamodule = getattr(trainer, "datamodule", None)
            batch_size = getattr(datamodule, "batch_size", "?")
            raise NoTrainingBatchesError(
                f"epochs {trainer.current_epoch - 1} and {trainer.current_epoch} gave no training batch: the data yields fewer usable clips "
                f"than one batch (data.batch_size={batch_size}, partial batches are dropped) on this rank. "
                "Lower data.batch_size, add data, or check the warnings above for skipped files"
            )
