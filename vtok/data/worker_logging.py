"""Loader workers write vtok's warnings as their main process does (``vtok WARNING: ...``).

A worker started by the fork server has no handler on the ``vtok`` logger, so Python's last-resort output printed
its warnings bare: a log filtered on ``vtok WARNING`` lost the stale-index, damaged-shard and borrowing warnings of
every run with loader workers, the usual setup.
"""

from __future__ import annotations

import logging

MESSAGE_FORMAT = "vtok %(levelname)s: %(message)s"  # vtok's own lines on stderr (vtok.console.show_vtok_messages)
HANDLER_MARK = "vtok_cli"  # the attribute that marks that handler


def shows_vtok_messages() -> bool:
    """Whether this process writes vtok's messages through vtok's own handler (the CLI's, not a user's)."""
    return any(getattr(handler, HANDLER_MARK, False) for handler in logging.getLogger("vtok").handlers)


def show_vtok_warnings() -> None:
    """In a loader worker whose main process :func:`shows_vtok_messages`: vtok's warnings on stderr as the main
    process writes them; its info lines stay with the main process. A user's own handlers (a log file) are the
    main process's to write: the workers' warnings reach them as they did, through Python's last resort."""
    logger = logging.getLogger("vtok")
    if shows_vtok_messages():  # a worker forked with its parent's handler has it already
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(MESSAGE_FORMAT))
    setattr(handler, HANDLER_MARK, True)
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
