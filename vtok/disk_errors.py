"""The disk a command writes to failing it: full, over quota, read-only, or past a file size limit.

These are the machine's state, not the data's: a run stops on them with one line that says so (never a traceback,
and never a verdict on an input file that a later run would keep), and the same command, run again once there is
room, goes on.
"""

from __future__ import annotations

import errno

OUTPUT_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})


def is_output_disk_error(error: BaseException) -> bool:
    """Whether ``error`` is the disk refusing a write (see :data:`OUTPUT_DISK_ERRNOS`)."""
    return isinstance(error, OSError) and error.errno in OUTPUT_DISK_ERRNOS


def disk_error_line(error: OSError) -> str:
    """``error`` in one line: what the disk said and the file it said it of, and what to do."""
    where = f" ({error.filename})" if error.filename else ""
    return f"{error.strerror or error}{where}: make room (or a file size limit, ulimit -f) and run the same command again"
