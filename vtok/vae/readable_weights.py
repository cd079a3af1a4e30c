"""Weights files that others can read: diffusers' ``save_pretrained`` leaves its safetensors owner-only
(``-rw-------``, however permissive the umask) beside a world-readable config.json, so an export
folder shared with a team cannot be loaded by anyone else."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


class ReadableWeightsMixin:
    """Mixed into a diffusers ``ModelMixin``: ``save_pretrained`` gives its weights files the
    permissions the umask gives any new file (``-rw-r--r--`` under the usual 022)."""

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, **kwargs: Any) -> None:
        super().save_pretrained(save_directory, *args, **kwargs)  # type: ignore[misc]
        umask = os.umask(0)
        os.umask(umask)
        for weights in Path(save_directory).glob("*.safetensors"):
            weights.chmod(0o666 & ~umask)
