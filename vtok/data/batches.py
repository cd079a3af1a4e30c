"""The shape of a training batch: one batch of clips, or named parts when images train beside them.

``VideoDataModule.train_dataloader`` returns one loader (batches ``{"video": ...}``) or, with
``data.image_path``, ``{"videos": loader, "images": loader}``, which Lightning combines into
batches ``{"videos": {"video": ...}, "images": {"video": ...}}``.
"""

from __future__ import annotations

from typing import Any


def video_parts(batch: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{"videos": batch}`` for a plain batch; the named parts of a combined (videos + images) one."""
    return {"videos": batch} if "video" in batch else batch
