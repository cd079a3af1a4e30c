"""The ``--device`` and ``--workers`` flags of the offline commands: CUDA when there is one, else the
CPU; videos decoded ahead in worker processes on a GPU, in this process on a CPU (where the model's
own work keeps the cores busy)."""

from __future__ import annotations

import argparse

import torch


GPU_WORKERS = 4


def add_device_argument(p: argparse.ArgumentParser, workers: bool = True) -> None:
    """Adds ``--device`` and, with ``workers`` (commands that read videos), ``--workers``."""
    p.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    if not workers:
        return
    p.add_argument(
        "--workers",
        type=int,
        help=f"processes decoding the next videos while the model runs (default: {GPU_WORKERS} on a GPU, 0 on a CPU)",
    )


def resolve_workers(workers: int | None, device: torch.device) -> int:
    """The ``--workers`` flag, checked, or its default for ``device``.

    Raises:
        ValueError: below 0.
    """
    if workers is not None and workers < 0:
        raise ValueError(f"--workers must be at least 0, got {workers}")
    return workers if workers is not None else (GPU_WORKERS if device.type == "cuda" else 0)


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
