"""Loader workers write vtok's warnings as their main process does (``vtok WARNING: ...``).

A worker started by the fork server has no handler on the ``vtok`` logger, so Python's last-resort output printed
its warnings bare: a log filtered on ``vtok WARNING`` lost the stale-index, damaged-shard and borrowing warnings of
every run with loader workers, the usual setup.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence


def vtok_formatters() -> list[logging.Formatter]:
    """The formatters of this process's handlers on the ``vtok`` logger, for its loader workers."""
    return [handler.formatter for handler in logging.getLogger("vtok").handlers if handler.formatter is not None]


def show_vtok_warnings_as(formatters: Sequence[logging.Formatter]) -> None:
    """In a loader worker: vtok's warnings on stderr through one handler per formatter of the main process (none
    when it had none, as for the Python API used without a handler); its info lines stay with the main process."""
    logger = logging.getLogger("vtok")
    if logger.handlers or not formatters:  # a worker forked with its parent's handlers has them already
        return
    for formatter in formatters:
        handler = logging.StreamHandler()
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
