"""What ``torch.autocast`` casts, and code that must run outside it (quantizers in float32, norms in their input's
dtype), on any device: ``torch.autocast(device, enabled=False)`` itself raises for a device without autocast
(``meta``, where a model built without memory gives the shapes of its outputs)."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch


def autocast_on(device_type: str) -> bool:
    """Whether an autocast is on for ``device_type`` (``False`` for a device that has none)."""
    return torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type)


def without_autocast(device_type: str) -> AbstractContextManager[object]:
    """A context in which no autocast casts for ``device_type``; nothing to turn off where none is on."""
    return torch.autocast(device_type, enabled=False) if autocast_on(device_type) else nullcontext()


def autocast_casts(tensor: torch.Tensor) -> bool:
    """Whether ``torch.autocast`` is on for ``tensor``'s device and casts its dtype as it goes: float32 and the
    autocast's own dtype. Never float64 (a numpy ``frames / 127.5 - 1``, which failed deep inside a convolution),
    nor float16 under a bf16 autocast (the two meet in ``torch.cat``, whose type promotion under autocast refuses
    them); a meta tensor has no autocast."""
    device = tensor.device.type
    return autocast_on(device) and tensor.dtype in (torch.float32, torch.get_autocast_dtype(device))
