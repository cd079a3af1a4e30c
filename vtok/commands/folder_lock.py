"""One writer at a time for a folder's shared files (an index several runs into one ``--out`` update)."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class FolderBusy(RuntimeError):
    """Another process holds the lock asked for without waiting."""


@contextmanager
def folder_lock(folder: Path, name: str = ".lock", wait: bool = True) -> Iterator[None]:
    """Holds an exclusive advisory lock on ``folder/name`` (created, and left, as an empty file) while the
    block runs; another process asking for it waits, or with ``wait=False`` gets :class:`FolderBusy`. The
    lock goes with its process, killed or not. Locks on network file systems are as good as their ``flock``:
    NFS v4 and Lustre honour it across machines."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / name, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderBusy(f"{folder / name} is held by another process") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
