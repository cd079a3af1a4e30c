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
its own handling and then takes the signals back (:func:`settle_worker`).

The server ends once no process holds its "alive" pipe, and the workers it forks hold it too; a torch
loader worker ends when its parent does, and its parent is the server. So a main process killed outright
(``kill -9``, the out-of-memory killer) left the server and its workers waiting on each other for good.
Each worker therefore watches the process it works for and ends itself once that is gone; and a worker whose
caller let its loader go before the worker read its start request (Ctrl-C while workers start) ends without a word.
"""

from __future__ import annotations

import functools
import multiprocessing
import multiprocessing.forkserver
import multiprocessing.spawn
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing import resource_tracker
from multiprocessing.context import BaseContext
from pathlib import Path

from vtok.stack_dump import dump_stacks_on_sigusr2

# the dataset classes the loader workers unpickle, and what they import: a worker starts in milliseconds
LOADER_PRELOAD = ("vtok.data.dataset", "vtok.data.images", "vtok.data.streaming", "vtok.data.read_ahead")
WATCH_INTERVAL_S = 1.0  # how often a worker looks whether its main process still runs
_GROUP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR1", "SIGUSR2") if hasattr(signal, name))


def refuse_in_a_starting_worker() -> None:
    """Raises ``RuntimeError`` when called while a worker process is starting: a script that calls vtok without an
    ``if __name__ == "__main__":`` guard runs again in each worker vtok starts (multiprocessing imports it there), and
    those re-runs met the calling run's own ``--out`` lock ("another vtok prepare is still writing into --out")
    where Python's own advice would have said to add the guard."""
    if getattr(multiprocessing.current_process(), "_inheriting", False):  # set while a child imports the parent's script
        raise RuntimeError(
            "vtok was called while one of its worker processes was starting: the script that calls it runs again in "
            "every worker process, which imports it. Call vtok under `if __name__ == \"__main__\":` in that script"
        )


def _forget_the_parents_server() -> None:
    """In a process forked from one whose fork server runs: that server is the parent's (multiprocessing's
    ``ensure_running`` would wait on a process that is not this one's child and fail), so this process starts
    its own when it needs one (a rank that ``ddp_fork`` forks after a run in the same program)."""
    server = multiprocessing.forkserver._forkserver  # noqa: SLF001 (the module's one instance)
    alive = getattr(server, "_forkserver_alive_fd", None)
    if getattr(server, "_forkserver_pid", None) is None or alive is None:
        return
    try:
        os.close(alive)  # this copy would only keep the parent's server alive as long as this process
    except OSError:
        pass
    server._forkserver_pid = server._forkserver_address = server._forkserver_alive_fd = None  # noqa: SLF001


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_the_parents_server)


def _quiet_when_abandoned(start: Callable[..., int]) -> Callable[..., int]:
    """``multiprocessing.spawn._main``, which each child of the server runs to read its start request, for a request
    that names semaphores already gone: the process that asked for the worker let its loader go (Ctrl-C while the
    workers start) before the child read it. The child then ends with status 1 without a word; it printed
    multiprocessing's traceback under the caller's one-line stop. Only that error (no file name: a semaphore's)."""
    if hasattr(start, "__wrapped__"):  # this module imported again
        return start

    @functools.wraps(start)
    def quiet(*args: object, **kwargs: object) -> int:
        try:
            return start(*args, **kwargs)
        except FileNotFoundError as error:
            if error.filename is not None:
                raise
            return 1

    return quiet


# in this module: the server imports it (see fork_server_context), and its children run the server's code
multiprocessing.spawn._main = _quiet_when_abandoned(multiprocessing.spawn._main)  # noqa: SLF001


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


def settle_worker(main_pid: int | None) -> None:
    """In a worker from the fork server, once it has set its own handling: prints its threads' stacks on SIGUSR2
    as vtok's processes do, the group's signals reach it again, and it ends itself within a second or so of the
    process ``main_pid`` (the one it works for; ``None``: not watched) being gone."""
    dump_stacks_on_sigusr2()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _GROUP_SIGNALS)
    if main_pid is not None:
        threading.Thread(target=_exit_once_gone, args=(main_pid,), name="vtok-exit-with-main", daemon=True).start()


def _exit_once_gone(main_pid: int) -> None:
    while _is_running(main_pid):
        time.sleep(WATCH_INTERVAL_S)
    os._exit(1)  # as torch's own watchdog ends a worker whose main process died


def _is_running(pid: int) -> bool:
    """Whether ``pid`` runs: exists and, where /proc says, is no zombie (killed, not yet reaped by its parent)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc here: it exists
    return state not in ("Z", "X")
