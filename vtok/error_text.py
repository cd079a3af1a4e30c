"""Exception messages as vtok shows them: the first line of a library's error quoted inside its own, and
the message an error raised in a loader worker had there, hints for common mix-ups, and jsonargparse's errors
without the noise of its unions."""

from __future__ import annotations

from pathlib import Path


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


def run_folder_hint(path: Path) -> str:
    """``"; it is a training run's folder: give one of its checkpoints (<path>/checkpoints/last.ckpt)"`` for a
    folder ``vtok fit`` wrote (a ``checkpoints/`` folder in it), to end a message refusing it as an
    export or model folder; ``""`` for any other."""
    if not (path / "checkpoints").is_dir():
        return ""
    newest = path / "checkpoints" / "last.ckpt"
    return f"; it is a training run's folder: give one of its checkpoints ({newest if newest.exists() else path / 'checkpoints'})"


def without_union_noise(message: str) -> str:
    """jsonargparse reports an error raised while building an optional component (``model.loss``:
    ``AutoencoderLoss | None``, ``trainer.callbacks``: ``list[Callback] | Callback | None``) as a failure to match
    each type of the union, the real error among lines about ``NoneType`` and the forms a single subclass could take;
    this keeps the real one."""
    if "Does not validate against any of the Union subtypes" not in message:
        return message
    other_forms = ("NoneType", "Not a valid subclass of")
    reasons = [line[4:] for line in message.splitlines() if line.startswith("  - ") and not any(f in line for f in other_forms)]
    return reasons[0] if len(reasons) == 1 else message
