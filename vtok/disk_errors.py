"""The disk a command writes to failing it: full, over quota, read-only, or past a file size limit.

These are the machine's state, not the data's: a run stops on them with one line that says so (never a traceback,
and never a verdict on an input file that a later run would keep), and the same command, run again once the disk
takes the writes, goes on.
"""

from __future__ import annotations

import errno
import os
import re

# what to do about each
OUTPUT_DISK_ERRNOS = {
    errno.ENOSPC: "free some space",
    errno.EDQUOT: "free some of your quota",
    errno.EROFS: "write to a folder on a writable file system",
    errno.EFBIG: "raise the file size limit (ulimit -f) or write to a file system that takes larger files",
}
# how safetensors' writer (Rust) names the OS error in the text of its SafetensorError, which is no OSError
_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def _output_disk_errno(error: BaseException) -> int | None:
    """The errno of ``error`` when it is the disk refusing a write (see :data:`OUTPUT_DISK_ERRNOS`), else ``None``."""
    if isinstance(error, OSError):
        code = error.errno
    else:
        found = _RUST_OS_ERROR.search(str(error))
        code = int(found.group(1)) if found else None
    return code if code in OUTPUT_DISK_ERRNOS else None


def is_output_disk_error(error: BaseException) -> bool:
    """Whether ``error`` is the disk refusing a write: an ``OSError``, or safetensors' error that carries one."""
    return _output_disk_errno(error) is not None


def disk_error_line(error: BaseException) -> str:
    """``error`` (one :func:`is_output_disk_error` takes) in one line: what the disk said, of which file, and what to do."""
    code = _output_disk_errno(error)
    said = (error.strerror if isinstance(error, OSError) else None) or os.strerror(code)
    where = f" ({error.filename})" if isinstance(error, OSError) and error.filename else ""
    return f"{said}{where}: {OUTPUT_DISK_ERRNOS[code]}, then run the same command again"
