"""The ``--device`` flag of the offline commands: CUDA when there is one, else the CPU."""

from __future__ import annotations

import argparse

import torch


def add_device_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", help="torch device (default: cuda when available, else cpu)")


def resolve_device(name: str | None) -> torch.device:
    """The ``--device`` flag as a device, checked.

    Raises:
        ValueError: not a device name, or CUDA asked for where there is none.
    """
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name!r} is not a torch device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name} asked for CUDA, which this machine does not have; use --device cpu")
    return device
