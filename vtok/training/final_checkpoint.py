"""``ModelCheckpoint`` whose ``last.ckpt`` always ends at the final training step, and whose
``train_time_interval`` saves under vtok's manual optimisation.

Lightning's ``ModelCheckpoint(save_last=True)`` copies ``last.ckpt`` whenever it saves a checkpoint,
and at the end of training only when it never saved one. With ``every_n_train_steps: 50`` a run
that stopped at step 53 left step 50 in ``last.ckpt``: the last three steps were saved nowhere,
``--ckpt_path last`` trained them again and ``vtok export`` exported older weights (with
``save_last: link`` too: the link pointed at step 50's file). Lightning's manual-optimisation branch
(vtok steps its two optimisers itself) also saves by ``every_n_train_steps`` only: a
``train_time_interval`` never saved. vtok's CLI uses this class wherever a config names Lightning's.

For the run folder's own ``checkpoints/`` (no ``dirpath`` given), vtok's CLI also sets
``enable_version_counter: false``, so that Lightning never adds its version suffix (``last-v1.ckpt``) to a
name a file already has: vtok refuses a new run into a run folder holding checkpoints, so such a file is
the same run's, and a run resumed from an earlier
``step=N.ckpt`` (rolled back, or its folder moved) left its final step in ``last-v1.ckpt`` and an older
line of training in the ``last.ckpt`` that ``vtok export`` and the README's commands read.

Lightning's ``every_n_epochs`` saves after a validation unless ``check_val_every_n_epoch`` is 1 (it cannot tell
when one will come), and vtok's configs set another: it saved only every fifth epoch under default.yaml, and never
in a run that does not validate (``limit_val_batches: 0``, or no files held out). It saves at the end of the
training epoch instead, unless it ranks checkpoints by a metric (``monitor``), which validation may log, or
``save_on_train_epoch_end`` is set.

A validation may fall inside an accumulation group (``model.accumulate_batches`` not dividing
``trainer.val_check_interval``); a save after it (``monitor``, or ``every_n_epochs``) held the weights without the
gradients the group had summed so far, and a run resumed from it stepped on the group's later batches alone. Such a
save waits for the group's step: the file then holds the weights one optimiser step newer than those the validation
scored (a run that stops before it, as EarlyStopping may at that validation, saves at its end as it is).
"""

from __future__ import annotations

import time
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn

from vtok.training.stop_on_signal import StopOnSignal


class FinalStepCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint``, also writing ``last.ckpt`` at the end of training when the
    final step is newer than its last save (and a signal's checkpoint has not just saved it), and
    saving every ``train_time_interval`` at the first batch after it that ends an accumulation group, and saving
    after a validation inside an accumulation group once the group has stepped."""

    _save_after_group = False  # a validation inside an accumulation group asked for a save

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)  # after the data module's: its held-out set is known
        held_out = getattr(trainer.datamodule, "datasets", None)
        never_validates = trainer.limit_val_batches == 0 or (isinstance(held_out, dict) and "val" not in held_out)
        if self._every_n_epochs >= 1 and self._save_on_train_epoch_end is None and (self.monitor is None or never_validates):
            self._save_on_train_epoch_end = True  # else saved after validations only (see the module's docstring)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        steps_after = getattr(pl_module, "steps_after", None)
        if steps_after is not None and not steps_after(batch_idx):
            # mid-way through accumulating: the summed gradients would be in no checkpoint. Lightning's own branch
            # saves by the step count, which has not moved since the group's last step: the first batch of a run
            # resumed from step=N.ckpt (its every_n_train_steps) wrote step=N.ckpt and last.ckpt again, a batch on
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        self._save_deferred(trainer, pl_module)  # the validation's save, now with the group's step in it
        interval = self._train_time_interval
        if pl_module.automatic_optimization or interval is None or self._should_skip_saving_checkpoint(trainer):
            return
        now = time.monotonic()
        due = self._last_time_checked is not None and now - self._last_time_checked >= interval.total_seconds()
        if not trainer.strategy.broadcast(due):  # rank 0's clock decides for all, as Lightning's own branch does
            return
        self._last_time_checked = now
        candidates = self._monitor_candidates(trainer)
        if self.monitor is not None and self.monitor not in candidates:
            self._defer_save_until_validation = True  # saved once validation has logged the monitored metric
            return
        self._save_topk_checkpoint(trainer, candidates)
        self._save_last_checkpoint(trainer, candidates)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        fitting = trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking
        if fitting and getattr(pl_module, "inside_accumulation_group", False):
            self._save_after_group = True  # saved once the group has stepped (see the module's docstring)
            return
        super().on_validation_end(trainer, pl_module)

    def _save_deferred(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """The save a validation inside an accumulation group asked for, if one did."""
        if self._save_after_group:
            self._save_after_group = False
            super().on_validation_end(trainer, pl_module)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.fast_dev_run:  # a smoke test saves nothing (Lightning's own on_train_end saved last.ckpt, which then
            return  # kept the real run out of the folder: "already holds a run's checkpoints")
        self._save_deferred(trainer, pl_module)  # the run stopped inside the group (EarlyStopping there): saved as it is
        saved_by_signal = any(
            isinstance(callback, StopOnSignal) and callback.saved_step == trainer.global_step for callback in trainer.callbacks
        )
        if saved_by_signal:  # it holds the final step: a copy would spend time a launcher's kill deadline may not give
            return
        behind = self._last_checkpoint_saved and self._last_global_step_saved < trainer.global_step
        if self.save_last and behind:
            mode, self.save_last = self.save_last, True  # "link" would link last.ckpt to the older save
            try:
                self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
            finally:
                self.save_last = mode
            return
        super().on_train_end(trainer, pl_module)
