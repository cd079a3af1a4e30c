"""Where vtok's worker processes come from: a fork server, never a fork of the calling process.

A training rank runs threads (DDP's communication threads, decord's decoder threads, torch's pools),
and a fork copies their locks in whatever state they are in: the child can wait forever on one that no
thread of its own will release. CI saw it: a rank's loader worker hung inside ``os.fork`` itself
(CPython's after-fork clean-up of the other threads' states, waiting on a lock), the rank waited for
that worker's first batch, and the two-rank run hung. A copied decoder state can also crash a child
that frees a reader it inherited. The fork server is one single-threaded process per program, started
on first use, that forks each worker from a clean state; it imports ``preload`` once (seconds), so
the workers start with those modules.

Signals sent to the whole process group (Ctrl-C, ``timeout``, SLURM's SIGTERM and SIGUSR1, vtok's
SIGUSR2 for stacks) are the calling process's to act on: the server, multiprocessing's resource tracker
started with it, and the workers the server forks start with them blocked. So a stop that has the main
process write its checkpoint does not take the server or its workers away first, and a ``kill -USR2``
to the group (whose default action is to end a process) leaves them running. Each kind of worker sets
its own handling and then takes the signals back (:func:`unblock_group_signals`); the server ends when
the calling process does.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import signal
import sys
from collections.abc import Sequence
from multiprocessing import resource_tracker
from multiprocessing.context import BaseContext

from vtok.stack_dump import dump_stacks_on_sigusr2

# the dataset classes the loader workers unpickle, and what they import: a worker starts in milliseconds
LOADER_PRELOAD = ("vtok.data.dataset", "vtok.data.images", "vtok.data.streaming", "vtok.data.read_ahead")
_GROUP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR1", "SIGUSR2") if hasattr(signal, name))


def fork_server_context(preload: Sequence[str] = LOADER_PRELOAD) -> BaseContext | None:
    """The ``forkserver`` multiprocessing context, its server running (``None`` where the platform has no fork
    server: workers then start the platform's own way).

    Args:
        preload: modules the server imports when this call starts it; a server already running (started by
            another caller in this program) is used as it is, and its workers import what they need.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return None
    context = multiprocessing.get_context("forkserver")
    # Python 3.11's server never imports the main module itself (it looks for a key its caller does not give), so
    # each worker runs the main script (or module) again: with the vtok modules it imported, and so their
    # dependencies (Lightning, diffusers), already in the server, that takes milliseconds, not seconds a worker
    imported = sorted(name for name in sys.modules if name.split(".")[0] == "vtok")
    context.set_forkserver_preload(list(dict.fromkeys([*preload, *imported])))
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _GROUP_SIGNALS)  # inherited through the server's fork and exec
    try:
        resource_tracker.ensure_running()  # which the server's start starts first, and then unblocks SIGINT and SIGTERM
        signal.pthread_sigmask(signal.SIG_BLOCK, _GROUP_SIGNALS)
        multiprocessing.forkserver.ensure_running()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)  # a signal that came meanwhile is delivered now
    return context


def unblock_group_signals() -> None:
    """In a worker from the fork server, once it has set its own handling: prints its threads' stacks on SIGUSR2
    as vtok's processes do, and the group's signals reach it again."""
    dump_stacks_on_sigusr2()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _GROUP_SIGNALS)
