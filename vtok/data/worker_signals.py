"""Loader workers leave stopping to the main process.

A job is usually stopped by signalling its whole process group (``timeout``, ``kill -- -PGID``,
SLURM at the time limit), so the loader workers get the SIGTERM too. With the default action they
die at once, torch reports "DataLoader worker ... is killed by signal" in the main process before
it has written its stop checkpoint, and the run ends with an error and no checkpoint. Workers that
ignore the stop signals keep serving batches until the main process has saved and shuts them down
(they still exit when the main process dies: torch's workers watch their parent).
"""

from __future__ import annotations

import signal

STOP_SIGNALS = ("SIGTERM", "SIGUSR1")  # what the training loop checkpoints on (vtok.training.StopOnSignal)


def leave_stop_signals_to_main_process(worker_id: int) -> None:
    """A ``worker_init_fn``: the worker ignores :data:`STOP_SIGNALS`."""
    for name in STOP_SIGNALS:
        signum = getattr(signal, name, None)
        if signum is not None:
            signal.signal(signum, signal.SIG_IGN)
