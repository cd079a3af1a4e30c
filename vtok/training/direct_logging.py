"""Metrics written straight to the loggers, at the step of the training batch just ended.

``LightningModule.log`` from a callback's ``on_train_batch_end`` reaches the loggers only at the next
``trainer.log_every_n_steps`` boundary, and its value is kept and written again at later boundaries
of the epoch: a value computed once per window of batches comes out late, repeated, or not at all
when the window does not line up with the logging interval. Windowed monitors write here instead.
"""

from __future__ import annotations

from lightning.pytorch import Trainer


def log_on_this_batch(trainer: Trainer, metrics: dict[str, float]) -> None:
    """Writes ``metrics`` to every logger at the step Lightning logs this training batch's ``train/*``
    values at (one per training batch, whatever the accumulation); first rank only, as Lightning's loggers."""
    if not trainer.is_global_zero:
        return
    step = trainer.fit_loop.epoch_loop._batches_that_stepped
    for logger in trainer.loggers:
        logger.log_metrics(metrics, step=step)
