"""Graceful stop: on SIGTERM (and SIGUSR1 where SLURM's auto-requeue does not own it) every rank
takes part in writing one checkpoint, then training ends normally and the process exits with 0.

Lightning's own SIGTERM handling broadcasts from rank 0 only (a signal reaching another rank
alone leaves rank 0 waiting) and runs a collective inside the signal handler. This callback
replaces it once training starts: the handler only sets a flag, and every few batches the ranks
agree (one tiny all-reduce) whether any of them was signalled. Not at every batch: reading the
all-reduce's answer makes the host wait for the GPU to finish the batch's optimizer step, which
leaves the GPU idle while the host then queues the next batch.

A signal during a fit's validation stops it there too: a validation over many held-out clips can outlast
the time a scheduler gives between its SIGTERM and its SIGKILL (30 s under SLURM's and torchrun's
defaults). The checkpoint then holds the step the validation followed, and a resumed run goes on training
without that validation (Lightning's way with a checkpoint saved during one).

``vtok validate`` and ``test`` read SIGTERM the same way, without a checkpoint: the ranks agree, and all end the
scoring together (vtok says there are no scores and exits with 143).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from vtok.run_folder import newest_checkpoint

log = logging.getLogger(__name__)


class StopOnSignal(Callback):
    """Saves ``<checkpoint dir>/last-signal-step=N.ckpt`` on all ranks and stops, when signalled
    (the name starts with ``last`` so that ``--ckpt_path last`` resumes from it).

    Args:
        signals: names of the signals to handle (SIGUSR1 is left to Lightning under SLURM
            auto-requeue, which checkpoints and requeues the job itself).
        every_n_batches: with several processes, the ranks agree whether one was signalled after
            every this many batches, of training or of a validation (the stop comes at most this many after it); a
            single process checks its flag after every batch, which costs nothing. With
            ``accumulate_batches``, the stop waits for the batch that ends the group and steps.
    """

    def __init__(self, signals: tuple[str, ...] = ("SIGTERM", "SIGUSR1"), every_n_batches: int = 4) -> None:
        if every_n_batches < 1:
            raise ValueError(f"every_n_batches must be at least 1, got {every_n_batches}")
        self.signals = tuple(signals)
        self.every_n_batches = every_n_batches
        self.received: int | None = None
        self.checkpoint_path: Path | None = None
        self.saved_step: int | None = None  # the global step the signal's checkpoint holds
        self._agreed = False  # the ranks know of a signal: stop at the next batch that steps
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = signum  # only a flag: collectives and I/O are unsafe inside a handler

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._agreed = False
        self._take_signals(trainer)

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """``vtok validate`` and ``test`` read SIGTERM as a fit does: Lightning's handler broadcasts from rank 0 inside
        the handler, so a signal to another rank alone left the ranks in crossed collectives, hung for good."""
        if trainer.state.fn in (TrainerFn.VALIDATING, TrainerFn.TESTING) and not self._previous:
            self._take_signals(trainer, [name for name in self.signals if name == "SIGTERM"])  # no checkpoint to requeue

    on_test_start = on_validation_start

    def _take_signals(self, trainer: Trainer, names: Sequence[str] | None = None) -> None:
        environment = trainer._accelerator_connector.cluster_environment
        slurm_requeue = isinstance(environment, SLURMEnvironment) and environment.auto_requeue
        for name in self.signals if names is None else names:
            signum = getattr(signal, name, None)
            if signum is None or (slurm_requeue and signum == signal.SIGUSR1):
                continue
            self._previous[signum] = signal.signal(signum, self._handle)
        if signal.SIGTERM in self._previous:
            self._take_over_lightnings_sigterm(trainer)

    def _take_over_lightnings_sigterm(self, trainer: Trainer) -> None:
        """SIGTERM is this callback's to read from now on. One that Lightning's handler took before (at the sanity
        check's last batch) is acted on at the first batch, with a checkpoint (Lightning acted on it at the epoch's
        end, without one); and Lightning's training loop no longer broadcasts its own flag, unset from now on, at every
        batch of a multi-process run (reading it on the host made each batch wait for the GPU to finish the last)."""
        connector = getattr(trainer, "_signal_connector", None)
        if getattr(connector, "received_sigterm", False):
            self.received, connector.received_sigterm = signal.SIGTERM, False
        epoch_loop = trainer.fit_loop.epoch_loop
        if hasattr(epoch_loop, "_broadcast_sigterm_tensor"):
            epoch_loop._broadcast_sigterm_tensor = _nothing_to_broadcast  # this loop's: the method, shadowed

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if not self._agreed:  # counted across epochs and a resume: alike on every rank
            self._agreed = self._any_rank_signalled(trainer, trainer.fit_loop.epoch_loop.total_batch_idx + 1)
        steps_after = getattr(pl_module, "steps_after", None)
        if not self._agreed or (steps_after is not None and not steps_after(batch_idx)):
            return  # mid-way through accumulating: the summed gradients are in no checkpoint, so stop once they step
        self._save(trainer, "")
        trainer.should_stop = True
        # No validation after it: Lightning starts one after a stop in an epoch that validates (and one may be due at
        # this batch), whose own stop wrote the checkpoint again, spending time a launcher's kill deadline may not
        # give; ending it by an exception skipped every on_train_end (the last pictures). The resumed run goes on
        # training (Lightning takes a validation due at a checkpoint's batch as run).
        trainer.limit_val_batches = 0

    def on_validation_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        """A signal during a fit's validation: writes the checkpoint and ends the fit with Lightning's
        ``SIGTERMException`` (exit status 0; ``vtok fit`` returns normally), the rest of the validation not run. Not
        inside an accumulation group (its summed gradients are in no checkpoint): the stop waits for its step."""
        if not self._previous or trainer.sanity_checking:
            return  # the handlers are not set: no signal is read
        if trainer.state.fn != TrainerFn.FITTING:
            self._stop_scoring(trainer, trainer.validate_loop, batch_idx)
            return
        if getattr(pl_module, "inside_accumulation_group", False):
            return
        if not self._any_rank_signalled(trainer, batch_idx + 1):  # the ranks' validations have as many batches
            return
        self._save(trainer, " during validation (the rest of it is not run)")
        raise SIGTERMException

    def on_test_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if self._previous:
            self._stop_scoring(trainer, trainer.test_loop, batch_idx)

    def _stop_scoring(self, trainer: Trainer, loop: Any, batch_idx: int) -> None:
        """Ends ``vtok validate`` or ``test`` on every rank together once they agree one was signalled (vtok then says
        there are no scores, exit status 143), unless the batch was the last: the scores are then whole."""
        if self._any_rank_signalled(trainer, batch_idx + 1) and not loop.batch_progress.is_last_batch:
            raise SIGTERMException

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.state.fn != TrainerFn.FITTING:
            self._put_back(trainer)

    on_test_end = on_validation_end

    def _any_rank_signalled(self, trainer: Trainer, batches: int) -> bool:
        """Whether any rank was signalled, agreed with one all-reduce after every ``every_n_batches``-th of ``batches``
        (every rank skips the same ones, so all meet there; a single process reads its flag at every batch)."""
        if trainer.world_size > 1 and batches % self.every_n_batches:
            return False
        return trainer.strategy.reduce_boolean_decision(self.received is not None, all=False)

    def _save(self, trainer: Trainer, when: str) -> None:
        """Writes ``last-signal-step=N.ckpt`` (every rank takes part)."""
        dirpath = getattr(trainer.checkpoint_callback, "dirpath", None)
        folder = Path(dirpath) if dirpath else Path(trainer.default_root_dir) / "checkpoints"
        self.checkpoint_path = folder / f"last-signal-step={trainer.global_step}.ckpt"
        log.warning("signal received%s: writing %s and stopping", when, self.checkpoint_path)
        trainer.save_checkpoint(self.checkpoint_path, weights_only=False)  # the full state, to resume from
        self.saved_step = trainer.global_step

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        """After Ctrl-C in a fit, which Lightning ends at once without a checkpoint (its only word: "Detected
        KeyboardInterrupt"), says what is lost and how to go on: the newest checkpoint, the resume command,
        and that SIGTERM would have saved first. After any exception, the signal handlers it set are put back."""
        self._put_back(trainer)
        if not isinstance(exception, KeyboardInterrupt) or trainer.state.fn != TrainerFn.FITTING or not trainer.is_global_zero:
            return
        run = Path(trainer.default_root_dir)
        newest = newest_checkpoint(run)
        config = run / "config.yaml"
        step = trainer.global_step
        if newest is None:
            log.warning("interrupted at step %d (Ctrl-C) with no checkpoint in %s to resume from", step, run / "checkpoints")
            return
        resume = f"vtok fit --config {config} --ckpt_path last" if config.is_file() else f"--ckpt_path {newest}"
        log.warning(
            "interrupted at step %d (Ctrl-C): no checkpoint was written now, so the steps since %s (written %.0f s ago) "
            "are lost; go on with `%s`. To stop with a checkpoint of the current step, send SIGTERM instead (kill %d)",
            step, newest, time.time() - os.stat(newest).st_mtime, resume, os.getpid(),
        )  # fmt: skip

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._put_back(trainer)

    def _put_back(self, trainer: Trainer) -> None:
        """The signal handlers it set at the start, and Lightning's per-batch broadcast, back."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
        vars(trainer.fit_loop.epoch_loop).pop("_broadcast_sigterm_tensor", None)  # Lightning's own, back


def _nothing_to_broadcast() -> None:
    """In place of Lightning's per-batch broadcast of its SIGTERM flag (see ``StopOnSignal``)."""
