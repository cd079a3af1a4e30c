"""``ModelCheckpoint`` whose ``last.ckpt`` always ends at the final training step.

Lightning's ``ModelCheckpoint(save_last=True)`` copies ``last.ckpt`` whenever it saves a checkpoint,
and at the end of training only when it never saved one. With ``every_n_train_steps: 50`` a run
that stopped at step 53 left step 50 in ``last.ckpt``: the last three steps were saved nowhere,
``--ckpt_path last`` trained them again and ``vtok export`` exported older weights. vtok's CLI uses
this class wherever a config names Lightning's.
"""

from __future__ import annotations

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from vtok.training.stop_on_signal import StopOnSignal


class FinalStepCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint``, also writing ``last.ckpt`` at the end of training when the
    final step is newer than its last save (and a signal's checkpoint has not just saved it)."""

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        saved_by_signal = any(
            isinstance(callback, StopOnSignal) and callback.saved_step == trainer.global_step for callback in trainer.callbacks
        )
        if saved_by_signal:  # it holds the final step: a copy would spend time a launcher's kill deadline may not give
            return
        behind = self._last_checkpoint_saved and self._last_global_step_saved < trainer.global_step
        if self.save_last and behind:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
            return
        super().on_train_end(trainer, pl_module)
