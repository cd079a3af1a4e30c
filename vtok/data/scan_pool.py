"""Running one function over many items in worker processes, with a deadline per item.

A decoder can stall inside C code on a damaged file, where no Python-level timeout reaches it.
So the pool keeps only as many items in flight as it has workers (each starts at once) and, when
one passes its deadline, terminates the whole pool, reports that item as stalled, and starts a
fresh pool for the items that were still in flight and the rest.

The deadline is for silence, not for the whole item: long work that is not stalled (re-encoding an
hour of video, decoding every frame of it) calls :func:`still_working` as it goes, and each call gives
the item ``timeout`` seconds more. Without it, a healthy long video was rejected as stalled.

Workers come from a fork server (:mod:`vtok.data.fork_server`) that has imported ``preload``. The ``vtok`` log
records an item makes in a worker come back with its result and go through the calling process's handlers (its
level, format, progress bar and log files): a worker started by the fork server has no handler of its own, so its
info lines were lost and its warnings came out bare.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import logging.handlers
import multiprocessing
import multiprocessing.pool
import os
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from typing import Any

from vtok.data.fork_server import fork_server_context, settle_worker

STALLED = object()  # the result of an item that passed its deadline
PROGRESS_INTERVAL_S = 1.0  # a worker reports progress at most this often

# In a pool's worker: where progress reports go, the item it runs, when it last reported, and its log records.
_progress: Any = None
_item: Hashable | None = None
_reported_at = 0.0
_records: list[logging.LogRecord] = []


def still_working() -> None:
    """Says that the item this process runs is making progress, restarting its deadline (call it per frame of
    long work; it reports at most once every :data:`PROGRESS_INTERVAL_S`). Does nothing outside a worker of
    :func:`run_with_deadlines` (e.g. ``vtok prepare --workers 0``, which has no deadline)."""
    global _reported_at
    if _progress is None:
        return
    now = time.monotonic()
    if now - _reported_at >= PROGRESS_INTERVAL_S:
        _reported_at = now
        _progress.put(_item)


class _KeepRecords(logging.handlers.QueueHandler):
    """Keeps a worker's records, made picklable (``QueueHandler.prepare``), for :func:`_run_item` to return."""

    def __init__(self) -> None:
        super().__init__(None)  # type: ignore[arg-type]

    def enqueue(self, record: logging.LogRecord) -> None:  # noqa: D102
        _records.append(record)


def _start_worker(progress: Any, main_pid: int, vtok_level: int) -> None:
    global _progress
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the calling process stops the workers
    settle_worker(main_pid)  # the signals the fork server blocked, back: pool.terminate() stops a stalled worker with SIGTERM
    _progress = progress
    logger = logging.getLogger("vtok")
    logger.handlers = [_KeepRecords()]  # a forked worker's copies of its parent's handlers would write a second time
    logger.propagate = False
    logger.setLevel(vtok_level)


def _run_item(function: Callable[[Any], Any], item: Hashable) -> tuple[Any, list[logging.LogRecord]]:
    global _item, _reported_at
    _item, _reported_at = item, time.monotonic()
    _records.clear()
    return function(item), list(_records)


def _log_in_this_process(records: list[logging.LogRecord]) -> None:
    for record in records:
        logging.getLogger(record.name).handle(record)


def _progressed(progress: Any) -> list[Hashable]:
    """The items the workers said were making progress since the last look."""
    items = []
    with contextlib.suppress(queue.Empty):
        while True:
            items.append(progress.get_nowait())
    return items


def run_with_deadlines(
    function: Callable[[Any], Any],
    items: Iterable[Hashable],
    workers: int,
    timeout: float,
    preload: Sequence[str] = (),
) -> Iterator[tuple[Any, Any]]:
    """Yields ``(item, function(item))`` as they finish (in any order), ``(item, STALLED)`` for an
    item that went ``timeout`` seconds without finishing or saying it was still working (:func:`still_working`).

    Args:
        function: a picklable function of one item; exceptions it raises are re-raised here.
        items: the work (distinct items).
        workers: worker processes.
        timeout: seconds one item may take, or go on after its last :func:`still_working`.
        preload: modules the fork server imports once, so workers start with them.
    """
    pending: deque[Hashable] = deque(items)
    if not pending:
        return
    context = fork_server_context(preload) or multiprocessing.get_context()
    _check_that_workers_start(context)
    running: dict[Hashable, float] = {}  # item -> deadline
    finished: queue.SimpleQueue[tuple[int, Hashable, Any, bool]] = queue.SimpleQueue()
    generation = 0  # results from a terminated pool are ignored
    progress = context.Queue()  # each pool its own: a worker killed while reporting may leave it broken
    pool = _ready_pool(context, workers, progress)
    try:
        while pending or running:
            while pending and len(running) < workers:
                item = pending.popleft()
                running[item] = time.monotonic() + timeout
                pool.apply_async(
                    _run_item,
                    (function, item),
                    callback=lambda result, item=item, g=generation: finished.put((g, item, result, True)),
                    error_callback=lambda error, item=item, g=generation: finished.put((g, item, error, False)),
                )
            try:
                g, item, result, ok = finished.get(timeout=max(0.0, min(running.values()) - time.monotonic()))
            except queue.Empty:
                now = time.monotonic()
                for item in _progressed(progress):
                    if item in running:
                        running[item] = now + timeout
                stalled = [item for item, deadline in running.items() if deadline <= now]
                if not stalled:
                    continue
                pool.terminate()
                progress.close()  # with the old pool's pipes, now: they waited for a garbage collection (hundreds of
                gc.collect()  # open files when many files stall, toward a 1024 limit)
                generation += 1
                progress = context.Queue()
                pool = _ready_pool(context, workers, progress)
                for item in stalled:
                    del running[item]
                    yield item, STALLED
                pending.extendleft(reversed(list(running)))
                running.clear()
                continue
            if g != generation or item not in running:
                continue
            del running[item]
            if not ok:
                raise result
            result, records = result
            _log_in_this_process(records)
            yield item, result
    finally:
        pool.terminate()


def _check_that_workers_start(context: Any) -> None:
    """Starts one process as the pool's workers start, and raises if it fails: multiprocessing's pool replaces a
    worker that dies as it starts, for good (a script that calls vtok without an ``if __name__ == "__main__":`` guard
    runs again in each worker, and is refused there: the run printed that refusal over and over)."""
    trial = context.Process(target=int)
    trial.start()
    trial.join()
    if trial.exitcode != 0:
        raise RuntimeError(f"vtok's worker processes cannot start: a trial one exited with code {trial.exitcode} (its error is above)")


@contextlib.contextmanager
def _ctrl_c(handler: Any) -> Iterator[None]:
    """``handler`` for SIGINT inside the block (in the main thread: signal handlers are set there only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _ready_pool(context: Any, workers: int, progress: Any) -> multiprocessing.pool.Pool:
    """A pool whose workers ignore Ctrl-C (the calling process stops them: one message, not one
    traceback per worker) and report progress to ``progress``, started before any item's deadline runs: the fork server's start-up
    (importing the preload modules, seconds) counted in the first items' deadlines and rejected
    healthy files as stalled under a short timeout. A Ctrl-C while it starts takes effect once it has:
    stopped half-way, the fork server went on to start the workers asked for, which failed with
    tracebacks of their own once the calling process had gone."""
    interrupted: list[int] = []
    with _ctrl_c(lambda number, frame: interrupted.append(number)):
        vtok_level = logging.getLogger("vtok").getEffectiveLevel()
        pool = context.Pool(workers, initializer=_start_worker, initargs=(progress, os.getpid(), vtok_level))
        pool.apply(int)  # returns once the fork server runs and a worker has started
    if interrupted:
        pool.terminate()
        raise KeyboardInterrupt
    return pool
