"""Where the files of a dataset come from: a folder, a glob pattern, or a manifest (CSV/JSONL/TXT)."""

from __future__ import annotations

import csv
import glob
import hashlib
from pathlib import Path
from typing import Any

from vtok.jsonfile import parse_json_object

VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts"})
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp"})
MANIFEST_SUFFIXES = frozenset({".csv", ".jsonl", ".txt"})


def list_files(source: str | Path, suffixes: frozenset[str] = VIDEO_SUFFIXES) -> list[str]:
    """The files named by ``source``: sorted, or in a manifest's order (see :func:`list_records`)."""
    return [record["path"] for record in list_records(source, suffixes)]


def list_records(source: str | Path, suffixes: frozenset[str] = VIDEO_SUFFIXES) -> list[dict[str, Any]]:
    """One record per file named by ``source``: ``{"path": ...}``, plus the other fields of a
    manifest's line or row (``frames``, ``fps``, ... as ``vtok prepare`` writes them).

    Args:
        source: a folder (searched recursively for ``suffixes``), a glob pattern (``**`` allowed),
            or a manifest: ``.jsonl`` with a ``path`` field per line, ``.csv`` with a ``path``
            column, or ``.txt`` with one path per line. Relative paths in a manifest are relative
            to the manifest's folder.
        suffixes: file endings a folder search keeps (case-insensitive).

    Raises:
        FileNotFoundError: ``source`` names nothing that exists.
        ValueError: a manifest without a ``path`` column or field.
    """
    text = str(source)
    path = Path(text).expanduser()
    if path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
        return _read_manifest(path)
    if path.is_dir():
        files = sorted(str(p) for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
    elif path.is_file():
        files = [str(path)]
    elif glob.has_magic(text):
        files = sorted(p for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
    else:
        raise FileNotFoundError(f"data source {text!r} is not a folder, a file, a manifest or a glob pattern that exists")
    return [{"path": file} for file in files]


def _read_manifest(path: Path) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    with path.open(newline="") as handle:
        if suffix == ".txt":
            records = [{"path": line.strip()} for line in handle if line.strip() and not line.startswith("#")]
        elif suffix == ".csv":
            reader = csv.DictReader(handle)
            if not reader.fieldnames or "path" not in reader.fieldnames:
                raise ValueError(f"manifest {path} has no 'path' column (columns: {reader.fieldnames})")
            records = list(reader)
        else:
            records = []
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                record = parse_json_object(line, f"manifest {path}, line {number},")
                if not isinstance(record.get("path"), str) or not record["path"]:
                    raise ValueError(f"manifest {path}, line {number}, has no 'path' field holding a file path")
                records.append(record)
    for record in records:
        if not Path(record["path"]).is_absolute():
            record["path"] = str(path.parent / record["path"])
    return records


def file_key(path: str | Path) -> str:
    """A short name for a file that stays unique across folders: ``<stem>-<8 hex of sha1(path)>``."""
    return f"{Path(path).stem}-{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
