"""Loader workers leave stopping to the main process.

A job is usually stopped by signalling its whole process group (``timeout``, ``kill -- -PGID``,
SLURM at the time limit), so the loader workers get the SIGTERM too. With the default action they
die at once, torch reports "DataLoader worker ... is killed by signal" in the main process before
it has written its stop checkpoint, and the run ends with an error and no checkpoint. Workers that
ignore the stop signals keep serving batches until the main process has saved and shuts them down
(they still exit when the main process dies: torch's workers watch their parent).

One exit needs help: when the main process ends with workers still running (an error while a loader
iterator was being made, or one left referenced), Python's exit terminates them with SIGTERM, which
they ignore, and then waits for them forever. :func:`kill_loader_workers_at_exit` makes the exit kill
them instead.
"""

from __future__ import annotations

import atexit
import functools
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable

from vtok.data.fork_server import settle_worker
from vtok.data.worker_logging import show_vtok_warnings, shows_vtok_messages

STOP_SIGNALS = ("SIGTERM", "SIGUSR1")  # what the training loop checkpoints on (vtok.training.StopOnSignal)


def leave_stop_signals_to_main_process(worker_id: int, main_pid: int | None = None) -> None:
    """A ``worker_init_fn``: the worker ignores :data:`STOP_SIGNALS` (and takes Ctrl-C as torch's workers do),
    and ends once ``main_pid`` is gone (see :func:`~vtok.data.fork_server.settle_worker`)."""
    for name in STOP_SIGNALS:
        signum = getattr(signal, name, None)
        if signum is not None:
            signal.signal(signum, signal.SIG_IGN)
    settle_worker(main_pid)  # the signals the fork server blocked, back


def loader_worker_init() -> Callable[[int], None]:
    """The ``worker_init_fn`` of vtok's loaders made in this process: :func:`leave_stop_signals_to_main_process`,
    watching this process, and vtok's warnings written as this process writes them
    (:func:`~vtok.data.worker_logging.show_vtok_warnings`)."""
    return functools.partial(_start_loader_worker, main_pid=os.getpid(), vtok_messages=shows_vtok_messages())


def _start_loader_worker(worker_id: int, main_pid: int, vtok_messages: bool) -> None:
    leave_stop_signals_to_main_process(worker_id, main_pid)
    if vtok_messages:
        show_vtok_warnings()


_exit_hook_registered = False


def kill_loader_workers_at_exit() -> None:
    """Makes this (main) process kill its daemonic children (loader workers) still alive when it
    exits; registered once.

    Runs before multiprocessing's own exit hook (exit hooks run newest first), which would otherwise
    wait for workers that ignore its SIGTERM.
    """
    global _exit_hook_registered
    if not _exit_hook_registered:
        atexit.register(_kill_leftover_workers)
        _exit_hook_registered = True


def _kill_leftover_workers() -> None:
    # Every daemonic child: multiprocessing's own hook would terminate them all next anyway, and a
    # started Process no longer says what it runs (start() drops its target), so loader workers
    # cannot be told apart from other daemonic children. torch's SIGCHLD handler would report each kill as
    # a failed worker ("DataLoader worker ... is killed by signal", a traceback at a clean exit): set aside first.
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGCHLD"):
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for child in multiprocessing.active_children():
        if child.daemon:
            child.kill()
