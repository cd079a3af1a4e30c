"""Writing a manifest's videos into WebDataset tar shards, and the index of what each shard holds.

A sample is ``<key>.mp4`` (the file's bytes, as they are: no decoding, no re-encoding) and
``<key>.json`` (its manifest line, with the verified frame count and fps). Shards are only ever
added: ``index.json`` records the sample keys already in shards (with how many times each, since a
manifest may repeat a line to weight it), so a later run shards only the lines not yet there, however
the manifest was edited in between. The index also gives each shard's sample count, which keeps
ranks in step when they stream (see :mod:`vtok.data.shard_split`). It is rewritten as shards close,
at most every :data:`INDEX_EVERY_SECONDS` (it lists every sample key, so rewriting it at each close
made sharding a million videos take time growing with their square), and at the end, on Ctrl-C too.
A killed run's shards closed after the last rewrite are deleted by the next run, which shards
their lines again.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import random
import re
import tarfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

from tqdm.auto import tqdm

from vtok.data.manifest import changed_since_checked, checked_file, sample_key

log = logging.getLogger(__name__)

SHARD_PATTERN = "shard-%06d.tar"
INDEX_NAME = "index.json"
INDEX_EVERY_SECONDS = 30.0  # at most this much sharding is redone after an interruption


def read_index(folder: str | Path) -> dict[str, Any]:
    """``{"records": manifest lines in shards, "keys": {sample key: times sharded}, "shards": [{"name",
    "samples", "bytes"}]}`` (an index written before keys were recorded has no ``"keys"``)."""
    path = Path(folder) / INDEX_NAME
    return json.loads(path.read_text()) if path.exists() else {"records": 0, "keys": {}, "shards": []}


def record_key(record: dict[str, Any]) -> str:
    """The sample key of a manifest line: its source file's (see :func:`sample_key`)."""
    return sample_key(checked_file(record))


def _sharded_keys(index: dict[str, Any], records: Sequence[dict[str, Any]]) -> Counter[str]:
    """How many times each sample key is already in shards. An index from before keys were recorded
    only counts lines: the manifest's first ``index["records"]`` lines are the ones sharded."""
    if "keys" in index:
        return Counter(index["keys"])
    return Counter(record_key(record) for record in records[: index["records"]])


def _unsharded(records: Sequence[dict[str, Any]], sharded: Counter[str]) -> list[dict[str, Any]]:
    """The lines not yet in shards: a key's first ``sharded[key]`` lines are in shards already."""
    seen: Counter[str] = Counter()
    new = []
    for record in records:
        key = record_key(record)
        seen[key] += 1
        if seen[key] > sharded[key]:
            new.append(record)
    gone = sharded - seen
    if gone:
        log.warning(
            "%d samples in the shards are no longer in the manifest (for instance %s): they stay in the shards, "
            "which are only added to; write the shards into a new folder to leave them out",
            sum(gone.values()), next(iter(gone)),
        )  # fmt: skip
    return new


def _write_index(folder: Path, sharded: Counter[str], shards: list[dict[str, Any]]) -> None:
    """Replaces ``index.json`` in one step: a run stopped at any point leaves the old index or the new one."""
    index = {"records": sum(sharded.values()), "keys": dict(sharded), "shards": shards}
    partial = folder / (INDEX_NAME + ".partial")
    partial.write_text(json.dumps(index, indent=1) + "\n")
    partial.replace(folder / INDEX_NAME)


def _remove_unindexed(folder: Path, index: dict[str, Any]) -> None:
    """Deletes what an interrupted run left outside the index: a shard it was writing (``.tar.partial``)
    and shards it closed after the index's last (a vtok that wrote the index only at the end left
    them). Those are numbered from ``len(index["shards"])`` on, the names this run writes next, and
    their samples' keys are not in the index, so this run shards them again; kept, training would
    read them twice.

    Raises:
        ValueError: shards the index does not account for otherwise (no ``index.json`` beside them, or
            one numbered inside the index's range): vtok cannot tell what they hold, and deleting them
            could lose samples whose source files are gone.
    """
    listed = {entry["name"] for entry in index["shards"]}
    unlisted = [path for path in sorted(folder.glob("shard-*.tar")) if path.name not in listed]
    numbers = [re.fullmatch(r"shard-(\d+)\.tar", path.name) for path in unlisted]
    unknown = [
        path.name for path, number in zip(unlisted, numbers)
        if not (folder / INDEX_NAME).is_file() or number is None or int(number[1]) < len(index["shards"])
    ]  # fmt: skip
    if unknown:
        raise ValueError(
            f"{folder} holds shards that no {INDEX_NAME} there accounts for ({', '.join(unknown[:3])}"
            f"{', ...' if len(unknown) > 3 else ''}): restore the {INDEX_NAME} written with them, or write the shards "
            "to a new --out (or, if a first run was stopped before it wrote an index, delete them)"
        )
    for path in unlisted:
        log.warning("removing %s: an interrupted run closed it after the last shard %s lists", path, INDEX_NAME)
        path.unlink()
    for path in folder.glob("*.tar.partial"):
        path.unlink()


class VideoUnreadable(Exception):
    """A video's read failed part-way through its copy into a shard (the shard's own write errors stay ``OSError``)."""


class _ReadErrorsTold:
    """``video`` for tarfile to copy from, its read errors raised as :class:`VideoUnreadable`."""

    def __init__(self, video: BinaryIO) -> None:
        self.video = video

    def read(self, size: int = -1) -> bytes:
        try:
            return self.video.read(size)
        except OSError as error:
            raise VideoUnreadable(error.strerror or str(error)) from error


class _Shard:
    """One tar being written under a temporary name; renamed into place once closed. A video is copied into it
    in pieces (read whole, an hour-long source took its size in memory), with its manifest line as ``<key>.json``
    beside it, the members webdataset's readers group into one sample."""

    def __init__(self, folder: Path, number: int) -> None:
        self.path = folder / (SHARD_PATTERN % number)
        self.partial = self.path.with_suffix(".tar.partial")
        self.file = self.partial.open("wb")
        self.tar = tarfile.open(fileobj=self.file, mode="w|")
        self.samples = self.bytes = 0

    def write(self, key: str, suffix: str, video: BinaryIO, size: int, record: dict[str, Any]) -> None:
        """Adds ``size`` bytes of ``video`` as ``<key>.<suffix>``: :class:`VideoUnreadable` when it cannot be read,
        an ``OSError`` without an errno when it holds fewer bytes now."""
        self._add(f"{key}.{suffix}", _ReadErrorsTold(video), size)
        line = json.dumps(record).encode()
        self._add(f"{key}.json", io.BytesIO(line), len(line))
        self.samples += 1
        self.bytes += size

    def _add(self, name: str, data: Any, size: int) -> None:
        member = tarfile.TarInfo(name)
        member.size, member.mtime, member.mode = size, int(time.time()), 0o444
        self.tar.addfile(member, data)

    def close(self) -> dict[str, Any]:
        self.tar.close()
        self.file.close()
        self.partial.replace(self.path)
        return {"name": self.path.name, "samples": self.samples, "bytes": self.path.stat().st_size}


def write_shards(
    records: Sequence[dict[str, Any]],
    root: str | Path,
    folder: str | Path,
    shard_mb: float = 256.0,
    seed: int = 0,
    shard_samples: int | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Appends the manifest lines not yet in shards to new shards in ``folder``; returns the new
    shards' index entries. A line that cannot be read is left out with a warning and tried again
    by the next run. Shards an interrupted run left outside the index are deleted first (their lines
    are sharded again).

    Args:
        records: every line of the manifest (the index says which are already sharded).
        root: the folder relative ``path`` fields are relative to (the manifest's).
        folder: where the shards and ``index.json`` go.
        shard_mb: a shard is closed once it holds this many megabytes (so it ends up slightly larger).
        seed: the new lines are written in an order shuffled by this seed, so a shard does not hold
            only neighbouring files (often cuts of one source video).
        shard_samples: a shard is also closed once it holds this many videos (``None``: no limit);
            whichever limit is reached first closes it.
        progress: show a progress bar over the lines to shard.
    """
    if shard_mb <= 0:
        raise ValueError(f"--shard-size must be positive, got {shard_mb} MB")
    if shard_samples is not None and shard_samples < 1:
        raise ValueError(f"--shard-samples must be at least 1, got {shard_samples}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    index = read_index(folder)
    _remove_unindexed(folder, index)
    if not (folder / INDEX_NAME).is_file():  # before the first shard: a run killed before its first rewrite of the
        _write_index(folder, Counter(), [])  # index left shards no index accounted for, and the next run refused them
    sharded = _sharded_keys(index, records)
    new = _unsharded(records, sharded)
    random.Random(seed + sum(sharded.values())).shuffle(new)
    shards: list[dict[str, Any]] = list(index["shards"])
    shard: _Shard | None = None
    indexed_at = time.monotonic()
    in_open_shard: Counter[str] = Counter()  # keys written to the shard not yet closed
    try:
        for record in tqdm(new, unit="video", desc="writing shards", disable=not progress or not new):
            path = Path(record["path"]) if Path(record["path"]).is_absolute() else Path(root) / record["path"]
            if checked_file(record) == record["path"] and changed_since_checked(record, path):
                what = "it changed since vtok prepare checked it" if path.exists() else "it no longer exists"
                log.warning("not sharding %s: %s; run vtok prepare again", path, what)
                continue
            try:
                video = path.open("rb")
            except OSError as error:
                log.warning("not sharding %s: %s", path, error)
                continue
            if shard is not None and (shard.bytes >= shard_mb * 1e6 or shard.samples >= (shard_samples or math.inf)):
                shards.append(shard.close())
                shard, in_open_shard = None, Counter()
                if time.monotonic() - indexed_at >= INDEX_EVERY_SECONDS:
                    _write_index(folder, sharded, shards)
                    indexed_at = time.monotonic()
            if shard is None:
                shard = _Shard(folder, len(shards))
            # a repeated line's copies get keys of their own (<key>-2, ...), numbered by the copies already in
            # shards (samples of a tar are told apart by their keys; a copy that failed to read takes no number)
            key = record_key(record)
            sharded[key] += 1
            in_open_shard[key] += 1
            name = key if sharded[key] == 1 else f"{key}-{sharded[key]}"
            with video:
                try:
                    shard.write(name, path.suffix.lower().lstrip(".") or "mp4", video, os.fstat(video.fileno()).st_size, record)
                except (OSError, VideoUnreadable) as error:  # the shard holds part of it: deleted by the next run
                    if isinstance(error, OSError) and error.errno is not None:  # the shard's disk (full, gone)
                        raise
                    why = f"could not be read ({error})" if isinstance(error, VideoUnreadable) else "was cut short"
                    raise ValueError(
                        f"{path} {why} while it was copied into a shard: fix it or drop its line from the manifest, "
                        "and run vtok prepare again (the shards closed so far are kept)"
                    ) from None
        if shard is not None:
            shards.append(shard.close())
            in_open_shard = Counter()
    finally:  # Ctrl-C included: the closed shards are indexed; the one being written is deleted by the next run
        _write_index(folder, sharded - in_open_shard, shards)
    return shards[len(index["shards"]) :]
