"""The disk a command writes to failing it: full, over quota, read-only, or past a file size limit.

These are the machine's state, not the data's: a run stops on them with one line that says so (never a traceback,
and never a verdict on an input file that a later run would keep), and the same command, run again once the disk
takes the writes, goes on.
"""

from __future__ import annotations

import errno

# what to do about each
OUTPUT_DISK_ERRNOS = {
    errno.ENOSPC: "free some space",
    errno.EDQUOT: "free some of your quota",
    errno.EROFS: "write to a folder on a writable file system",
    errno.EFBIG: "raise the file size limit (ulimit -f) or write to a file system that takes larger files",
}


def is_output_disk_error(error: BaseException) -> bool:
    """Whether ``error`` is the disk refusing a write (see :data:`OUTPUT_DISK_ERRNOS`)."""
    return isinstance(error, OSError) and error.errno in OUTPUT_DISK_ERRNOS


def disk_error_line(error: OSError) -> str:
    """``error`` (one :func:`is_output_disk_error` takes) in one line: what the disk said, of which file, and what to do."""
    where = f" ({error.filename})" if error.filename else ""
    return f"{error.strerror or error}{where}: {OUTPUT_DISK_ERRNOS[error.errno]}, then run the same command again"
