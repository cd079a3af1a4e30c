"""The one exception a dataset catches, a file that cannot give a sample (skipped and counted); the
one it raises when skipping cannot help: no file gives a sample at all; and the one a loader raises
when a saved place in the data cannot be resumed as this run is launched."""

from __future__ import annotations

from pathlib import Path


class UnusableFileError(Exception):
    """A file that cannot give a sample: unreadable, truncated, empty, too short, wrong channels.

    Args:
        path: the file.
        reason: what is wrong with it, in words a user can act on.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason

    @property
    def note(self) -> str:
        """One ``path<TAB>reason`` line: how a sample tells the main process what it skipped."""
        return f"{self.path}\t{self.reason}"


class NoUsableDataError(RuntimeError):
    """Every file (or shard member) a loader was given is unusable: training cannot go on."""


class ResumeMismatchError(RuntimeError):
    """A checkpoint's place in the data that cannot be resumed as this run is launched (another
    number of processes or loader workers for a shard stream)."""
