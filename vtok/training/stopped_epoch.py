"""The epoch a run stopped by ``trainer.max_steps`` in the middle of, reopened when it resumes.

Lightning marks the epoch completed when ``max_steps`` stops it, wherever it stopped: the checkpoint
it then saves holds epoch 1 after two batches of epoch 0's three. The resumed run trained the rest of
epoch 0 (vtok's samplers and streams keep their own place) under Lightning's number 1, logged
``epoch`` one too high from there on, and validated at other epochs with ``check_val_every_n_epoch``
than a run never stopped. A checkpoint saved mid-epoch any other way (a periodic save, a signal's)
holds the epoch as started and not completed; this makes a ``max_steps`` one read the same, when it
is saved and (one saved before this) when it is loaded.

One saved that other way on an epoch's last batch is counted twice by Lightning: once as it restores
the loops (an epoch restarted after its last batch is done), and again at the end of the empty
remainder of that epoch it then runs. The resumed run was an epoch ahead from there on (``max_epochs``
ended a whole epoch early); :func:`uncount_epoch_resumed_after_its_last_batch` takes the first count back.
That remainder is skipped by the training module: with images beside the clips it was not empty (the loader
not yet run out ran on into a new pass); :func:`uncount_skipped_batch` takes back the count of the batch skipped.

One saved after its epoch ended (at a ``max_steps`` stop on the epoch's last batch) is restarted by Lightning as
if saved on that last batch, with the ended epoch's counts carried into the next: it resumes as an epoch that
begins afresh instead (:func:`forget_the_ended_epochs_places`, :func:`begin_the_epoch_afresh`).
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch import Trainer


def saved_mid_epoch(checkpoint: dict[str, Any]) -> bool:
    """Whether ``checkpoint`` was saved after some but not all of its epoch's batches (Lightning's loop state)."""
    batches = ((checkpoint.get("loops") or {}).get("fit_loop") or {}).get("epoch_loop.batch_progress")
    return bool(batches) and batches.get("is_last_batch") is False and bool(batches["current"]["processed"])


def reopen_epoch_stopped_by_max_steps(checkpoint: dict[str, Any]) -> bool:
    """Counts the epoch of ``checkpoint`` as started, not completed, when it was saved mid-epoch
    (:func:`saved_mid_epoch`; Lightning's loop state, changed in place); returns whether it did."""
    epochs = ((checkpoint.get("loops") or {}).get("fit_loop") or {}).get("epoch_progress")
    if not epochs or not saved_mid_epoch(checkpoint):
        return False
    current = epochs["current"]
    if current["completed"] < current["started"] or current["completed"] == 0:
        return False  # already counted as under way: a periodic or a signal's save
    for counts in (epochs["total"], current):
        counts["processed"] -= 1
        counts["completed"] -= 1
    checkpoint["epoch"] = current["completed"]
    return True


def _ended(epoch_progress: dict[str, int]) -> bool:
    """Whether Lightning's epoch counts (``current``) say the epoch ended: started, processed and completed."""
    return epoch_progress["ready"] == epoch_progress["started"] == epoch_progress["processed"] == epoch_progress["completed"] > 0


def forget_the_ended_epochs_places(checkpoint: dict[str, Any]) -> bool:
    """For a checkpoint saved after its epoch ended (the final one of a run whose ``max_steps`` fell on the epoch's
    last batch, or on its ``limit_train_batches``-th), drops the loaders' places in that epoch, which Lightning
    restores into the next one of a run with ``max_steps`` (not of a run by epochs); returns whether it did. With
    :func:`begin_the_epoch_afresh` the resumed run goes on as a run never stopped. Before, the next epoch ended at
    once (an empty epoch counted: the epoch logged one too high from there on) or, where the loader had not run out
    (an epoch ended by ``limit_train_batches``, not validating there), trained the rest of the ended pass as an
    epoch. The loaders' pass numbers come back with the data module (:mod:`vtok.data.pass_numbers`)."""
    loops = (checkpoint.get("loops") or {}).get("fit_loop") or {}
    epochs = loops.get("epoch_progress")
    if not epochs or not _ended(epochs["current"]):
        return False
    (loops.get("state_dict") or {}).pop("combined_loader", None)
    return True


def begin_the_epoch_afresh(trainer: Trainer) -> None:
    """Starts the epoch after one that had ended at the checkpoint (:func:`forget_the_ended_epochs_places`) as a new
    epoch, not a restarted one (call at ``on_train_start``). Lightning restarts the epoch loop of a run with
    ``max_steps`` whatever the checkpoint: it then took the epoch for one saved on its last batch, and passed over
    the first batch's turn, unless no validation was due there (the logged step one too high from there on). As a new
    epoch, the loop counts its batches from 0, as Lightning does at every epoch's start."""
    fit_loop = trainer.fit_loop
    if fit_loop.epoch_loop.restarting and _ended(fit_loop.epoch_progress.current.state_dict()):
        fit_loop.epoch_loop.restarting = False  # and its validation loop's
        fit_loop.epoch_loop.reset_restart_stage()


def uncount_epoch_resumed_after_its_last_batch(trainer: Trainer) -> bool:
    """Takes back Lightning's first count of an epoch resumed from a checkpoint saved on its last batch (see the
    module's docstring; call it at ``on_train_start``, after the loops are restored); returns whether it did."""
    fit_loop = trainer.fit_loop
    epoch_loop = fit_loop.epoch_loop
    resumed_after_last_batch = (
        getattr(fit_loop, "restarted_mid_epoch", False)
        and getattr(epoch_loop, "restarted_on_train_batch_end", False)
        and epoch_loop.batch_progress.is_last_batch
    )
    if not resumed_after_last_batch:
        return False
    for counts in (fit_loop.epoch_progress.total, fit_loop.epoch_progress.current):
        counts.processed -= 1
        counts.completed -= 1
    return True


def uncount_skipped_batch(trainer: Trainer) -> None:
    """Takes back Lightning's count of the batch the training module skipped to end the rest of an epoch resumed
    after its last batch (``on_train_batch_start`` returning -1: counted as fetched and processed, never trained),
    so that the batch count, vtok's step, goes on as in a run never stopped. Nothing when no batch came."""
    progress = trainer.fit_loop.epoch_loop.batch_progress
    if progress.total.processed > progress.total.completed:
        for counts in (progress.total, progress.current):
            counts.ready -= 1
            counts.processed -= 1
