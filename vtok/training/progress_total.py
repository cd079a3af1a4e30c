"""The length of the progress bar's last epoch, in batches, under gradient accumulation."""

from __future__ import annotations

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import TQDMProgressBar


def count_batches_to_the_end(trainer: Trainer, accumulate_batches: int) -> None:
    """Sets the epoch's progress bar to the batches left to ``trainer.max_steps``, called at an epoch's start
    after the bar set its own total. Lightning's bar takes the steps left for batches (``max_steps -
    global_step``), where each step takes ``accumulate_batches`` batches: the last epoch's bar ran past its
    total (``2/2``, then ``3/?``). Other bars, and runs without accumulation or ``max_steps``, are left as they are."""
    bar = trainer.progress_bar_callback
    if accumulate_batches == 1 or not isinstance(bar, TQDMProgressBar) or not bar.is_enabled:
        return
    if bar.total_train_batches == trainer.num_training_batches:  # not cut short by the steps left
        return
    left = (trainer.max_steps - trainer.global_step) * accumulate_batches  # an epoch starts a group
    bar.train_progress_bar.total = min(trainer.num_training_batches, left)
