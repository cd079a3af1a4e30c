"""What vtok's training commands (``vtok fit`` / ``validate`` / ``test``) print on the console.

vtok's own messages are shown: its INFO lines (files found, effective batch size, ...) from the
first rank, warnings from every rank (Python's default shows nothing below WARNING).

Messages of the libraries under vtok that tell a vtok user nothing they can act on are hidden, so
that vtok's own warnings stand out. Each is matched by its text, so a changed message shows again
rather than something else going missing:

- torchdata's ``StatefulDataLoader`` calls a deprecated torch function (``set_vital``) at every
  loader it builds;
- Lightning's pytree helper uses a deprecated ``LeafSpec`` check of torch's;
- Lightning's "Total length of ``list`` across ranks is zero", about the empty validation loader of a
  run that holds nothing out (vtok says why where it can: shards without ``data.val_path``, one file);
- Lightning's "The number of training batches (N) is smaller than the logging interval", which advises a
  lower ``log_every_n_steps`` for epochs shorter than it: vtok's logs count batches across epochs, so every
  ``log_every_n_steps``-th batch is logged whatever the epoch's length;
- Lightning's advertisement for its cloud logger ("Tip: ... litlogger");
- ModelCheckpoint's "Checkpoint directory ... exists and is not empty", when resuming only
  (:func:`quiet_resumed_checkpoint_folder`): the folder holds the run's own checkpoints then. A new
  run into a folder with checkpoints still hears it (vtok refuses one into its run folder; a
  ``dirpath`` set by hand may still be shared);
- ModelCheckpoint's "The dirpath has changed from ...", when a checkpoint from another folder is
  loaded (a moved run folder, ``vtok validate`` of another run's checkpoint) and no checkpoint callback
  ranks checkpoints by a ``monitor`` (:func:`quiet_moved_checkpoint_folder`): the scores it says it
  will not reload are then never used. A callback with a ``monitor`` still hears it.

And a Ctrl-C that lands while a destructor runs (decord's ``VideoReader.__del__``): Python cannot raise it there and
prints it, "Exception ignored in ..." with a traceback, above vtok's one line about the interrupted run.
"""

from __future__ import annotations

import logging
import sys
import warnings
from typing import Any

from lightning.pytorch.utilities import rank_zero_only

from vtok.data.worker_logging import HANDLER_MARK, MESSAGE_FORMAT, shows_vtok_messages

_WARNINGS = (
    r"'set_vital' is deprecated",
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    r"Total length of `list` across ranks is zero",
    r"The number of training batches \(\d+\) is smaller than the logging interval",
)
_LOGGED = ("💡 Tip: For seamless cloud logging",)


class _DropMessages(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(_LOGGED)


def quiet_third_party_noise() -> None:
    """Hides the messages listed in the module docstring (idempotent)."""
    for message in _WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    if not getattr(sys.unraisablehook, "drops_interrupts", False):
        sys.unraisablehook = _without_interrupts(sys.unraisablehook)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) for f in logger.filters):
            logger.addFilter(_DropMessages())


def _without_interrupts(hook: Any) -> Any:
    """``hook`` (Python's report of an exception it cannot raise) for every exception but a Ctrl-C's."""

    def report(unraisable: Any) -> None:
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            hook(unraisable)

    report.drops_interrupts = True  # type: ignore[attr-defined]
    return report


def quiet_resumed_checkpoint_folder() -> None:
    """Hides ModelCheckpoint's warning that its folder holds checkpoints: call it for a resumed fit."""
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")


def quiet_moved_checkpoint_folder() -> None:
    """Hides ModelCheckpoint's warning that a loaded checkpoint came from another folder: call it when no
    checkpoint callback has a ``monitor``, so the best-k scores it will not reload mean nothing."""
    warnings.filterwarnings("ignore", message=r"The dirpath has changed from ")


class _StderrHandler(logging.StreamHandler):
    """Writes to ``sys.stderr`` as it is at each message (a handler keeping the stream it was made
    with writes to a closed one once that is replaced, e.g. by a test's capture)."""

    @property
    def stream(self) -> Any:  # noqa: D102
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def show_vtok_messages() -> None:
    """vtok's INFO messages on stderr from the first rank, warnings from every rank (idempotent)."""
    logger = logging.getLogger("vtok")
    if shows_vtok_messages():
        return
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter(MESSAGE_FORMAT))
    setattr(handler, HANDLER_MARK, True)
    logger.addHandler(handler)
    # the rank its launcher gave the process: torchrun's and accelerate's RANK, LOCAL_RANK in the processes
    # Lightning starts for devices > 1, SLURM_PROCID under srun (Lightning reads them so, at its import)
    logger.setLevel(logging.INFO if rank_zero_only.rank == 0 else logging.WARNING)
