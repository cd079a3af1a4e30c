"""Where a stuck run is: ``kill -USR2 <pid>`` makes a vtok process print every thread's Python stack
to stderr and go on running. Data-loader workers are forked from it and inherit the handler, so
``kill -USR2`` to a rank's process group (or to one worker) shows the workers too. SIGTERM and SIGUSR1
are taken (checkpoint and stop, SLURM's requeue); SIGUSR2 is free.
"""

from __future__ import annotations

import faulthandler
import logging
import signal
import sys

log = logging.getLogger(__name__)


def dump_stacks_on_sigusr2() -> None:
    """Registers the SIGUSR2 stack dump (where the platform has the signal and stderr is a real file)."""
    stderr = sys.__stderr__
    if not hasattr(signal, "SIGUSR2") or stderr is None:
        return
    try:
        faulthandler.register(signal.SIGUSR2, file=stderr, all_threads=True)
    except (AttributeError, OSError, ValueError) as error:  # stderr without a file descriptor
        log.debug("no stack dump on SIGUSR2: %s", error)
