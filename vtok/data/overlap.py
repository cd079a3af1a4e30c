"""Held-out videos that are also training videos: scores on them are not held-out scores."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from vtok.data.sources import RealPaths

log = logging.getLogger(__name__)


def warn_about_overlap(setting: str, held_out: Sequence[dict[str, Any]], training: Sequence[dict[str, Any]]) -> int:
    """Warns when files of ``held_out`` (the records of ``data.val_path`` or ``data.test_path``, named by
    ``setting``) are among the ``training`` records (``data.path``), however each path is spelt; returns how many."""
    real = RealPaths()
    trained = {real(record["path"]) for record in training}
    shared = [record["path"] for record in held_out if real(record["path"]) in trained]
    if shared:
        log.warning(
            "%d of the %d files of %s are also training files (data.path; for instance %s): their scores are not "
            "held-out scores; give %s videos the model does not train on",
            len(shared), len(held_out), setting, shared[0], setting,
        )  # fmt: skip
    return len(shared)
