"""Which files a run validates on, recorded in its checkpoints, so that a resume validating on others says so:
its ``val/*`` values after the resume would not compare with those before it."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from typing import Any

from vtok.data.sources import RealPaths, source_root

log = logging.getLogger(__name__)
VALIDATION_KEY = "vtok_validation_files"  # {"count": files, "digest": of their paths relative to the data's folder}


def validation_record(files: Sequence[str], source: str) -> dict[str, Any]:
    """How many ``files`` there are and a digest of their paths relative to ``source``'s own folder (see
    :func:`~vtok.data.sources.source_root`): the same for a dataset moved whole."""
    root, real = os.path.realpath(source_root(source)), RealPaths()  # each folder resolved once, not each file
    names = sorted(os.fsencode(os.path.relpath(real(file), root)) for file in files)
    return {"count": len(names), "digest": hashlib.blake2b(b"\0".join(names), digest_size=16).hexdigest()}


def say_if_validation_changed(saved: dict[str, Any] | None, now: dict[str, Any] | None) -> None:
    """Warns when the checkpoint's validation files (``saved``) are not the ones validated now."""
    if saved is None or now is None or saved == now:
        return
    log.warning(
        "the validation files are not the checkpoint's (%d then, %d now): val/* values after this resume do not "
        "compare with those before it (data.val_path, data.val_fraction, data.seed or the files changed; runs "
        "trained before vtok split data.val_fraction by path, 2026-11-28, hold out other files now)",
        saved.get("count", 0), now["count"],
    )  # fmt: skip
