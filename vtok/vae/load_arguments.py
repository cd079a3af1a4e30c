"""The ``torch_dtype`` and ``device_map`` arguments of ``from_pretrained``, checked before diffusers reads them.

diffusers takes a dtype given as a string (``torch_dtype="bfloat16"``) for no dtype at all and loads
float32 with only a logged warning, and answers ``device_map="auto"`` (or ``"balanced"``, or a map of
submodules) for a model it cannot split with a message about ``_no_split_modules`` meant for the
model's developers. A vtok model loads whole onto one device: a string dtype names a torch dtype
here, and any other ``device_map`` than one device is a plain error saying what to pass.
"""

from __future__ import annotations

from typing import Any

import torch

DTYPE_KEYS = ("torch_dtype", "dtype")  # diffusers reads either


def _dtype(key: str, value: Any) -> torch.dtype:
    if isinstance(value, torch.dtype):
        return value
    found = getattr(torch, value.removeprefix("torch."), None) if isinstance(value, str) else None
    if not isinstance(found, torch.dtype):
        raise ValueError(
            f"from_pretrained({key}={value!r}): not a torch dtype; give one (torch.bfloat16) or its name ('bfloat16')"
        )
    return found


def _is_one_device(value: Any) -> bool:
    """A device (a ``torch.device``, its name, or a CUDA index) that diffusers loads the whole model onto."""
    if isinstance(value, torch.device):
        return True
    if isinstance(value, int) and not isinstance(value, bool):
        return value >= 0
    if not isinstance(value, str):
        return False
    try:
        torch.device(value)
    except RuntimeError:  # "auto", "balanced", ... and names torch does not know
        return False
    return True


def check_load_arguments(kwargs: dict[str, Any]) -> None:
    """Checks ``from_pretrained``'s keyword arguments in place: a dtype given by name becomes the
    ``torch.dtype``; ``device_map`` must be one device (``"cuda"``, ``"cuda:1"``, ``"cpu"``, a
    ``torch.device``, a CUDA index, or ``{"": device}``).

    Raises:
        ValueError: a dtype that names no torch dtype, or a ``device_map`` that would split the model
            (``"auto"``, ``"balanced"``, a map of submodules) or names no device.
    """
    for key in DTYPE_KEYS:
        if kwargs.get(key) is not None:
            kwargs[key] = _dtype(key, kwargs[key])
    device_map = kwargs.get("device_map")
    if device_map is None or _is_one_device(device_map):
        return
    if isinstance(device_map, dict) and list(device_map) == [""] and _is_one_device(device_map[""]):
        return
    raise ValueError(
        f"from_pretrained(device_map={device_map!r}): a vtok model loads whole onto one device and is not split "
        "across devices; give device_map='cuda' (or 'cuda:1', 'cpu', a torch.device), or load it and call .to(device)"
    )
