"""Which files ``data.val_fraction`` holds out for validation: decided file by file, so that adding or removing
files never moves a file the model trained on into validation."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from vtok.data.sources import source_root


def held_out_files(files: Sequence[str], fraction: float, seed: int, source: str | Path) -> set[str]:
    """The files of ``files`` (real paths, each once) that validation holds out.

    A file is held out when the hash of ``seed`` and its path relative to the folder of ``source`` (``data.path``,
    see :func:`~vtok.data.sources.source_root`) falls in the lowest ``fraction`` of the hash range: about
    ``fraction`` of the files, and each file's side depends on nothing but itself, so a dataset that grows
    between runs (or is moved whole) keeps its validation files out of training. A random draw of the first
    ``fraction`` files of a shuffled list, as vtok did, reshuffled the whole split when one file was added, and
    validation then scored clips the model had trained on. With two or more files and ``fraction > 0``, at
    least one file is held out (the lowest hash) and at least one is trained on (the highest).
    """
    if fraction <= 0 or len(files) < 2:
        return set()
    root = os.path.realpath(source_root(source))
    draws = {file: _uniform(seed, os.path.relpath(file, root)) for file in files}
    held_out = {file for file, draw in draws.items() if draw < fraction} or {min(draws, key=draws.__getitem__)}
    if len(held_out) == len(files):
        held_out.remove(max(draws, key=draws.__getitem__))
    return held_out


def _uniform(seed: int, name: str) -> float:
    """A number in [0, 1) fixed by ``seed`` and ``name`` (the same on every machine and Python run; a name that
    is not UTF-8 hashes by its bytes on disk)."""
    digest = hashlib.blake2b(f"{seed}\0".encode() + os.fsencode(name), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64
