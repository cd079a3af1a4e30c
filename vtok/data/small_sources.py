"""Videos a manifest records as smaller than the training size: their crops are enlarged (blurrier)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from vtok.data.transforms import enlarges, shown_size

log = logging.getLogger(__name__)


def recorded_size(record: dict[str, Any]) -> tuple[int, int] | None:
    """``(height, width)`` a manifest line records, as shown (:func:`~vtok.data.transforms.shown_size`; JSON numbers
    or CSV text), else ``None``."""
    try:
        height, width = int(record["height"]), int(record["width"])
        aspect = float(record.get("pixel_aspect") or 1.0)
    except (KeyError, TypeError, ValueError):
        return None
    return shown_size(height, width, aspect) if height > 0 and width > 0 and aspect > 0 else None


def warn_about_small_sources(records: Sequence[dict[str, Any]], size: tuple[int, int]) -> bool:
    """Says how many videos a manifest records as smaller than ``size`` (``data.size``): their crops are
    enlarged to it. Files without a recorded size are not opened for it. Returns whether it said so."""
    sizes = {r["path"]: recorded_size(r) for r in records}  # each file once, however often listed
    sized = {path: shape for path, shape in sizes.items() if shape is not None}
    small = [(path, shape) for path, shape in sized.items() if enlarges(*shape, size)]
    if small:
        (path, (height, width)) = small[0]
        log.warning(
            "%d of the %d videos whose size the manifest records are smaller than data.size %s (for instance "
            "%s, %dx%d, height x width as data.size): their crops are enlarged to it; lower data.size or leave them out",
            len(small), len(sized), list(size), path, height, width,
        )  # fmt: skip
    return bool(small)
