"""Drops diffusers' warning on ``model.to(dtype)`` when the model keeps no module in float32.

diffusers (0.3x-0.4x) warns "There are modules in VideoAutoencoder that should be kept in float32: []" on every
cast of any model, the list empty: ``_keep_in_fp32_modules or []`` is never ``None``. vtok's models keep no module
in float32, so the warning names nothing and tells users their cast is inconsistent when it is not. The warning of
a model that does list modules is left alone.
"""

from __future__ import annotations

import logging

_EMPTY_LIST_WARNING = "that should be kept in float32: []."


class _EmptyFloat32ListFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return _EMPTY_LIST_WARNING not in record.getMessage()


def drop_empty_float32_warning() -> None:
    """Adds the filter to diffusers' model logger (once)."""
    logger = logging.getLogger("diffusers.models.modeling_utils")
    if not any(isinstance(existing, _EmptyFloat32ListFilter) for existing in logger.filters):
        logger.addFilter(_EmptyFloat32ListFilter())
