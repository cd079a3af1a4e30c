"""The effective batch size a run trains with, said once at the start of a fit."""

from __future__ import annotations

from typing import Any

from lightning.pytorch import Trainer


def effective_batch_size(trainer: Trainer, accumulate_batches: int) -> str | None:
    """What one optimizer step sees, in words: clips (and, with ``data.image_path``, images) per device x devices
    x accumulated batches; ``None`` without a datamodule that says its batch size (a plain DataLoader)."""
    datamodule: Any = getattr(trainer, "datamodule", None)
    per_device = getattr(datamodule, "batch_size", None)
    if per_device is None:
        return None
    devices = trainer.num_devices * trainer.num_nodes
    images = getattr(datamodule, "image_batch_size", 0) if getattr(datamodule, "image_path", None) else 0
    also = f" and {images * devices * accumulate_batches} images ({images} per device)" if images else ""
    return (
        f"effective batch size: {per_device * devices * accumulate_batches} clips{also} per optimizer step "
        f"({per_device} per device x {devices} devices x {accumulate_batches} accumulated batches)"
    )
