"""The first line of an exception's message: how vtok quotes a library's error inside its own."""

from __future__ import annotations


def first_line(error: BaseException | str, limit: int | None = 200) -> str:
    """The first non-blank line of ``error``'s message, cut to ``limit`` characters (``None``: whole); the
    exception's type name when the message is empty (many decoders raise with none)."""
    lines = str(error).strip().splitlines()
    return lines[0][:limit] if lines else type(error).__name__
