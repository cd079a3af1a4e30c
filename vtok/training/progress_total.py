"""The length of the progress bar's epoch, in batches: under gradient accumulation, and after a resume mid-epoch."""

from __future__ import annotations

import math

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import TQDMProgressBar


def count_batches_to_the_end(trainer: Trainer, accumulate_batches: int) -> None:
    """Sets the epoch's progress bar to the batches left to ``trainer.max_steps``, called at an epoch's start
    after the bar set its own total. Lightning's bar takes the steps left for batches (``max_steps -
    global_step``), where each step takes ``accumulate_batches`` batches: the last epoch's bar ran past its
    total (``2/2``, then ``3/?``). Other bars, and epochs ``max_steps`` does not cut short, are left as they are."""
    bar = _enabled_bar(trainer)
    if bar is None or bar.total_train_batches == trainer.num_training_batches:  # not cut short by the steps left
        return
    bar.train_progress_bar.total = _batches_to_run(trainer, accumulate_batches, done=0)


def show_the_resumed_epoch(trainer: Trainer, accumulate_batches: int) -> None:
    """At the start of a run resumed mid-epoch (``on_train_start``), sets the bar as an epoch's start would:
    Lightning calls no ``on_train_epoch_start`` for a resumed epoch, so its bar had no total and no "Epoch N"
    (``3/?``), also where ``max_steps`` cuts it short (counted as :func:`count_batches_to_the_end` does, from
    the batches run before the stop)."""
    bar = _enabled_bar(trainer)
    if bar is None or not trainer.fit_loop.restarted_mid_epoch:
        return
    done = trainer.fit_loop.epoch_loop.batch_progress.current.completed
    bar.train_progress_bar.total = _batches_to_run(trainer, accumulate_batches, done)
    bar.train_progress_bar.set_description(f"Epoch {trainer.current_epoch}")


def _enabled_bar(trainer: Trainer) -> TQDMProgressBar | None:
    bar = trainer.progress_bar_callback
    return bar if isinstance(bar, TQDMProgressBar) and bar.is_enabled else None


def _batches_to_run(trainer: Trainer, accumulate_batches: int, done: int) -> int | None:
    """The epoch's batches, ``done`` of them run before a resume; cut short by the steps left where Lightning's bar
    is (``max_steps`` with no ``max_epochs``); ``None`` (no total) for a loader of unknown length."""
    total = trainer.num_training_batches
    if trainer.max_epochs == -1 and trainer.max_steps > 0:
        total = min(total, done + (trainer.max_steps - trainer.global_step) * accumulate_batches)  # an epoch starts a group
    return None if math.isinf(total) else int(total)
