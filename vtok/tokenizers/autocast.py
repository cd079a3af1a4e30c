"""Code that must run outside ``torch.autocast`` (quantizers in float32, norms in their input's dtype), on any
device: ``torch.autocast(device, enabled=False)`` itself raises for a device without autocast (``meta``, where a
model built without memory gives the shapes of its outputs)."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch


def autocast_on(device_type: str) -> bool:
    """Whether an autocast is on for ``device_type`` (``False`` for a device that has none)."""
    return torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type)


def without_autocast(device_type: str) -> AbstractContextManager[object]:
    """A context in which no autocast casts for ``device_type``; nothing to turn off where none is on."""
    return torch.autocast(device_type, enabled=False) if autocast_on(device_type) else nullcontext()
