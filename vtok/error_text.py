"""Exception messages as vtok shows them: the first line of a library's error quoted inside its own, and
the message an error raised in a loader worker had there."""

from __future__ import annotations


def first_line(error: BaseException | str, limit: int | None = 200) -> str:
    """The first non-blank line of ``error``'s message, cut to ``limit`` characters (``None``: whole); the
    exception's type name when the message is empty (many decoders raise with none)."""
    lines = str(error).strip().splitlines()
    return lines[0][:limit] if lines else type(error).__name__


def worker_message(error: BaseException) -> str:
    """``error``'s message as it was raised in a DataLoader worker process: torch raises it again in the main
    process with "Caught ... in DataLoader worker process N." and the worker's traceback as its message. An
    error raised in the main process keeps its message."""
    text = str(error)
    if not text.startswith("Caught "):
        return text
    marker = f"{type(error).__module__}.{type(error).__qualname__}: "
    at = text.rfind(marker)
    return text[at + len(marker) :].rstrip() if at >= 0 else text
