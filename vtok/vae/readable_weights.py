"""Weights files that others can read: diffusers' ``save_pretrained`` leaves its safetensors owner-only
(``-rw-------``, however permissive the umask) beside a world-readable config.json, so an export
folder shared with a team cannot be loaded by anyone else. safetensors' ``save_file`` does the same to
any file it writes (vtok's token files too)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def give_umask_permissions(path: str | os.PathLike) -> None:
    """Sets ``path``'s permissions to those the umask gives any new file (``0o666 & ~umask``,
    ``-rw-r--r--`` under the usual 022), undoing a writer that made it owner-only."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


class ReadableWeightsMixin:
    """Mixed into a diffusers ``ModelMixin``: ``save_pretrained`` gives its weights files the
    permissions the umask gives any new file (see :func:`give_umask_permissions`)."""

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, **kwargs: Any) -> None:
        super().save_pretrained(save_directory, *args, **kwargs)  # type: ignore[misc]
        for weights in Path(save_directory).glob("*.safetensors"):
            give_umask_permissions(weights)
