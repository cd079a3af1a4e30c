"""The one exception a dataset catches, a file that cannot give a sample (skipped and counted); the
one it raises when skipping cannot help: no file gives a sample at all; the one a loader raises
when a saved place in the data cannot be resumed as this run is launched; and the one the data
module's setup raises for data that cannot be trained on as configured."""

from __future__ import annotations

import json
from pathlib import Path


class UnusableFileError(Exception):
    """A file that cannot give a sample: unreadable, truncated, empty, too short, wrong channels.

    Args:
        path: the file.
        reason: what is wrong with it, in words a user can act on.
        every_clip: every read of the file fails this way (it cannot be opened, holds too few frames):
            a dataset may remember it and not read the file again. ``False`` where only some frames
            fail to decode (another clip of the file may), so that what a sample holds never
            depends on which loader worker read the file before.
    """

    def __init__(self, path: str | Path, reason: str, every_clip: bool = True) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason
        self.every_clip = every_clip

    @property
    def note(self) -> str:
        """One line, ``["path", "reason"]`` in JSON (whatever characters the name holds): how a sample
        tells the main process what it skipped (several notes joined by newlines; see :func:`read_notes`)."""
        return json.dumps([str(self.path), self.reason])


def read_notes(notes: str) -> list[tuple[str, str]]:
    """``(path, reason)`` of each note in ``notes``, the newline-joined :attr:`UnusableFileError.note` lines."""
    return [tuple(json.loads(line)) for line in notes.split("\n") if line]


class NoUsableDataError(RuntimeError):
    """Every file (or shard member) a loader was given is unusable: training cannot go on."""


class ResumeMismatchError(RuntimeError):
    """A checkpoint's place in the data that cannot be resumed as this run is launched (another
    number of processes or loader workers for a shard stream)."""


class DataSetupError(ValueError):
    """The data as configured cannot be used: no files, fewer than one batch per rank, none usable.

    Raised by the data module's ``setup``, which multi-process runs reach inside Lightning's launch
    (single-process runs check earlier): its own type lets the command line report it in one line
    on every rank instead of a traceback each.
    """
