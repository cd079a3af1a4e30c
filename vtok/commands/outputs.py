"""The ``--out`` flag of the offline commands: a folder to write, checked before any work is done."""

from __future__ import annotations

from pathlib import Path


def output_folder(path: str | Path, flag: str = "--out") -> Path:
    """``path`` as the folder a command will write (created later), checked up front.

    Raises:
        ValueError: ``path``, or the nearest of its parents that exists, is a file, not a folder.
    """
    folder = Path(path)
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            if not candidate.is_dir():
                what = "is a file" if candidate == folder else f"cannot be a folder: {candidate} is a file"
                raise ValueError(f"{flag} {path} {what}; give the path of a new or an existing folder")
            break
    return folder
