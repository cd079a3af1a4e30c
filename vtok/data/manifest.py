"""The manifest ``vtok prepare`` writes: one JSON line per verified video, and one per rejected file.

Lines are appended and flushed one at a time, so a run that stops half-way leaves every finished
file recorded and the next run carries on from there.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TextIO

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoInfo:
    """What ``vtok prepare`` verified about one video: a line of ``manifest.jsonl``.

    Args:
        path: the file training reads (relative paths are relative to the manifest's folder).
        frames: frames that decode; clips are drawn within them, whatever the header says.
        fps: frames per second.
        width: frame width in pixels (as stored, upright).
        height: frame height in pixels.
        duration: ``frames / fps`` in seconds (``None`` when the frame rate is unknown).
        codec: the video codec's name (e.g. ``h264``), where known.
        keyframe_interval: the longest run of frames between keyframes, where known: a clip
            read at random costs up to this many decoded frames.
        source: the file ``vtok prepare`` scanned (differs from ``path`` after re-encoding).
        reported_frames: the count the file's header claims, when it is more than decodes.
        pixel_aspect: how wide a pixel is shown, where not square (anamorphic video: 0.889 for an NTSC
            DVD at 4:3, whose 720x480 frames show as 640x480); clips are made square-pixelled from it.
        reader: the decoder that reads the file right with the default ``auto`` backend (``decord``,
            or ``pyav`` where decord reads it wrong); training opens the file with it instead of
            checking decord against PyAV again (see :class:`~vtok.data.readers.FallbackReader`).
        decord_check: the version of the check that found decord reads it right
            (:data:`~vtok.data.decord_check.CHECK_VERSION`), beside ``reader: decord``; training checks files
            whose verdict came from an older check again.
        every_frame: ``True`` when ``vtok prepare --every-frame`` decoded all of its frames (not only
            the first, middle and last), so that a rerun asking for that check knows which lines lack it.
        reencoded_with: the settings ``vtok prepare --reencode`` wrote the copy with (``short_side``,
            ``keyframe_interval``, ``crf``), so that a rerun with other settings can say which copies differ.
        source_bytes: the size of ``source`` when it was checked.
        source_mtime_ns: its modification time then (nanoseconds since the epoch): a rerun checks the
            file again when either has changed (a file replaced, or still being copied when checked).
    """

    path: str
    frames: int
    fps: float
    width: int
    height: int
    duration: float | None
    codec: str | None = None
    keyframe_interval: int | None = None
    source: str | None = None
    reported_frames: int | None = None
    pixel_aspect: float | None = None
    reader: str | None = None
    decord_check: int | None = None
    every_frame: bool | None = None
    reencoded_with: dict[str, Any] | None = None
    source_bytes: int | None = None
    source_mtime_ns: int | None = None

    def to_record(self) -> dict[str, Any]:
        """The JSON-serialisable line (unknown fields left out)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> VideoInfo:
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in names})


def file_version(path: str | Path) -> dict[str, int]:
    """``{"source_bytes", "source_mtime_ns"}`` of ``path`` as it is now (empty when it cannot be
    read): recorded with each checked file, so that a rerun can tell whether it changed since."""
    try:
        stat = os.stat(path)
    except OSError:
        return {}
    return {"source_bytes": stat.st_size, "source_mtime_ns": stat.st_mtime_ns}


# A recorded mtime (about 1.8e18 ns) passed through a double (jq, pandas) comes back up to 128 ns off.
MTIME_ROUNDING_NS = 1000
SECOND_NS = 1_000_000_000


def changed_since_checked(record: dict[str, Any], path: str | Path) -> bool:
    """Whether ``path`` (the file ``record`` was checked from) differs in size or modification time
    from what ``record`` recorded (numbers, or their text, as a token file's header holds them); ``False`` for a
    record without them (written by an earlier vtok), ``True`` for values that are not whole numbers. The time is
    compared to within :data:`MTIME_ROUNDING_NS`, and to the second where the file's own time is a whole second
    (restored from an archive that keeps seconds, as tar does)."""
    if "source_bytes" not in record or "source_mtime_ns" not in record:
        return False
    try:
        recorded_bytes, recorded = int(record["source_bytes"]), int(record["source_mtime_ns"])
    except (TypeError, ValueError):  # edited by hand: what was checked cannot be vouched for
        return True
    now = file_version(path)
    if not now or now["source_bytes"] != recorded_bytes:
        return True
    mtime = now["source_mtime_ns"]
    if abs(recorded - mtime) <= MTIME_ROUNDING_NS:
        return False
    return not (mtime % SECOND_NS == 0 and recorded // SECOND_NS == mtime // SECOND_NS)


def checked_file(record: dict[str, Any]) -> str:
    """The file a manifest line was checked from: its ``source`` (a re-encoded copy's original), else its ``path``."""
    return record.get("source", record["path"])


def sample_key(source: str) -> str:
    """A stable name for a source file, unique per path and free of dots (WebDataset splits keys at
    the first dot): its stem, then a hash of its whole path."""
    stem = re.sub(r"[^A-Za-z0-9_-]", "_", Path(source).stem)[:48]
    return f"{stem}-{hashlib.sha1(os.fsencode(source)).hexdigest()[:12]}"  # the name's bytes, UTF-8 or not


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The records of a JSONL file (none when it does not exist); a torn line, left by a run that
    was killed while writing it, is skipped with a warning."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    with path.open() as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                log.warning("%s, line %d, is not JSON (a run interrupted while writing it?); ignoring it", path, number)
    return records


@contextmanager
def appending(path: str | Path) -> Iterator[TextIO]:
    """Opens a JSONL file for appending, first cutting off a torn last line (a run killed while
    writing it: not JSON), so that the file stays valid JSONL for a strict reader such as training's
    manifest reader; callers read the file first (:func:`read_jsonl` skips the torn line), so its file
    is checked again. A whole last line without its newline is ended instead."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ending = ""
    if path.exists() and path.stat().st_size > 0:
        with path.open("rb+") as handle:
            end = _end_of_last_whole_line(handle)
            handle.seek(end)
            tail = handle.read()
            if tail and _is_json(tail):  # a whole line written without its newline (by hand, another tool): kept
                ending = "\n"
            else:
                handle.truncate(end)
    with path.open("a") as handle:
        handle.write(ending)
        yield handle


def _is_json(line: bytes) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def _end_of_last_whole_line(handle: BinaryIO, block: int = 1 << 16) -> int:
    """The offset just after the file's last newline (0 when it has none), read from the end."""
    end = handle.seek(0, 2)
    while end > 0:
        start = max(0, end - block)
        handle.seek(start)
        found = handle.read(end - start).rfind(b"\n")
        if found >= 0:
            return start + found + 1
        end = start
    return 0


def append_line(handle: TextIO, record: dict[str, Any]) -> None:
    """Writes one JSON line and flushes it, so it survives the run being killed."""
    handle.write(json.dumps(record) + "\n")
    handle.flush()
