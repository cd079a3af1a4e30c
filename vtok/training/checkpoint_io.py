"""Atomic checkpoint files: written next to their destination, flushed, then renamed into place.

Lightning's default writer stages the file in the system temp folder and moves it, which is a
copy (not atomic) when that folder is on another file system; a job killed mid-copy would leave a
truncated checkpoint under the real name.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO


_NEARLY_FULL = 256 * 2**20  # free bytes below which a failed write is put down to a full disk


class CheckpointWriteError(OSError):
    """A checkpoint that could not be written whole: a full disk, a file size limit, a failing disk. torch's
    writer turns the disk's own error into ``unexpected pos N vs M``, so this says how much was written and
    how much room is left."""


def _write_failure(path: Path, partial: Path, error: BaseException) -> CheckpointWriteError:
    try:
        written, free = (partial.stat().st_size if partial.exists() else 0), shutil.disk_usage(partial.parent).free
    except OSError:  # the folder itself is gone (an unmounted disk)
        return CheckpointWriteError(f"could not write the checkpoint {path}: its folder cannot be read ({error})")
    cause = (
        "the disk is full: free space there or give the run a --trainer.default_root_dir on a larger disk "
        "(a preset's checkpoint is 2.0 to 2.6 GB)"
        if free < _NEARLY_FULL
        else "not for want of space: a file size limit (ulimit -f), a quota or a failing disk?"
    )
    return CheckpointWriteError(
        f"could not write the checkpoint {path}: {written / 2**30:.2f} GiB written, {free / 2**30:.2f} GiB free "
        f"on its disk, {cause} ({type(error).__name__}: {error})"
    )


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose files appear complete or not at all (local paths)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        path = Path(path)
        if "://" in str(path):  # remote file systems: leave it to fsspec's transaction
            return super().save_checkpoint(checkpoint, path, storage_options)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        try:
            with open(partial, "wb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())
        except (OSError, RuntimeError) as error:  # a full disk: no truncated file of gigabytes left on it
            failure = _write_failure(path, partial, error)
            partial.unlink(missing_ok=True)
            raise failure from error
        except BaseException:  # a kill's KeyboardInterrupt
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, path)
