"""Held-out videos that are also training videos: scores on them are not held-out scores."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from vtok.data.manifest import checked_file, sample_key
from vtok.data.sources import RealPaths
from vtok.data.shard_lists import shard_index
from vtok.jsonfile import read_json_object

log = logging.getLogger(__name__)


def warn_about_overlap(setting: str, held_out: Sequence[dict[str, Any]], training: Sequence[dict[str, Any]]) -> int:
    """Warns when files of ``held_out`` (the records of ``data.val_path`` or ``data.test_path``, named by
    ``setting``) are among the ``training`` records (``data.path``), however each path is spelt; returns how many."""
    real = RealPaths()
    trained = {real(record["path"]) for record in training}
    return _say_shared(setting, [record["path"] for record in held_out if real(record["path"]) in trained], held_out, "data.path")


def warn_about_sharded_overlap(setting: str, held_out: Sequence[dict[str, Any]], shards: Sequence[str], index: str | None) -> int:
    """As :func:`warn_about_overlap`, for training ``shards`` written by ``vtok prepare --shards``: a held-out file is
    in them when its sample key (its source's path, as prepare names samples) is in the shards' ``index.json``
    (``index``, else the one beside each local shard). The key hashes the path prepare read, as spelt: a held-out file
    is found under its absolute and its real path, so shards prepared through a symlinked folder miss the same files
    held out by their real folder. Shards without an index that lists keys cannot be checked: said at info level
    (streamed shards often have none)."""
    indexes = {found for shard in shards if (found := shard_index([shard], index)) is not None}
    listed = [read_json_object(path) for path in sorted(indexes)]
    if not any("keys" in entry for entry in listed):
        log.info("data.shards has no index.json of sample keys: whether files of %s are in it is not checked", setting)
        return 0
    keys = {key for entry in listed for key in entry.get("keys", {})}
    real = RealPaths()  # prepare names a sample after its source's absolute path: the held-out file spelt both ways
    spellings = [(record["path"], checked_file(record)) for record in held_out]
    shared = [path for path, file in spellings if {sample_key(os.path.abspath(file)), sample_key(real(file))} & keys]
    return _say_shared(setting, shared, held_out, "data.shards")


def _say_shared(setting: str, shared: Sequence[str], held_out: Sequence[dict[str, Any]], training: str) -> int:
    """Warns that the files ``shared`` of ``held_out`` (``setting``'s) are in the ``training`` setting's data; returns
    how many."""
    if shared:
        log.warning(
            "%d of the %d files of %s are also training files (%s; for instance %s): their scores are not "
            "held-out scores; give %s videos the model does not train on",
            len(shared), len(held_out), setting, training, shared[0], setting,
        )  # fmt: skip
    return len(shared)
