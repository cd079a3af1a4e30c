"""The global random state at the first training batch of a run: a resumed run's own, or each rank's own."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import Trainer

from vtok.data.seeding import mixed_seed


def restore_or_split_rng(saved: dict[str, Any] | None, trainer: Trainer, split_already: bool) -> None:
    """Sets the global random state at a training batch's start (call until the first, then with ``None``
    and ``split_already``).

    Args:
        saved: the state a checkpoint saved (``{"torch": ..., "cuda": ...}``), set here rather than at load
            time: creating the data iterator draws from the global RNG.
        trainer: the trainer (its world size and this process's rank).
        split_already: whether each rank already draws from a seed of its own. seed_everything gives every
            rank one seed, so every rank would draw the same noise (the KL sample, the denoising decoder's t,
            the generative decoder's noise) for different clips; the weights are the same on every rank
            already (DDP broadcasts rank 0's), so from the first batch on each rank draws its own.
    """
    if saved is not None:
        torch.set_rng_state(saved["torch"])
        if "cuda" in saved and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(saved["cuda"])
    elif not split_already and trainer.world_size > 1:
        torch.manual_seed(mixed_seed(torch.initial_seed(), trainer.global_rank))
