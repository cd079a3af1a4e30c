"""Atomic checkpoint files: written next to their destination, flushed, then renamed into place.

Lightning's default writer stages the file in the system temp folder and moves it, which is a
copy (not atomic) when that folder is on another file system; a job killed mid-copy would leave a
truncated checkpoint under the real name.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO


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
        except BaseException:  # a full disk, or a kill's KeyboardInterrupt: no truncated file left on it
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, path)
