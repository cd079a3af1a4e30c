"""The ``--out`` flag of the offline commands: a folder to write, checked before any work is done."""

from __future__ import annotations

import tempfile
from pathlib import Path


def output_folder(path: str | Path, flag: str = "--out") -> Path:
    """``path`` as the folder a command will write (created later), checked up front.

    Raises:
        ValueError: ``path``, or the nearest of its parents that exists, is a file, not a folder, or a folder
            nothing can be written into (tried with a file made and removed at once: permissions, a read-only
            mount; the command failed after its work, with a traceback).
    """
    folder = Path(path)
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            if not candidate.is_dir():
                what = "is a file" if candidate == folder else f"cannot be a folder: {candidate} is a file"
                raise ValueError(f"{flag} {path} {what}; give the path of a new or an existing folder")
            try:
                with tempfile.TemporaryFile(dir=candidate):
                    pass
            except OSError as error:
                raise ValueError(f"{flag} {path}: nothing can be written into {candidate} ({error.strerror})") from None
            break
    return folder
