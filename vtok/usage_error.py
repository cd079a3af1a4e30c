"""The error for a mistake in the command line or the config."""

from __future__ import annotations


class UsageError(Exception):
    """A mistake in the command line or the config: reported in one line, without a traceback."""
