"""Which training loaders have run out in the epoch under way, kept across a resume.

With clips and images (``data.image_path``) Lightning draws from both loaders each step, restarting
the one that runs out, and ends the epoch by count when both have a length (file data), or else once
each has run out at least once (a shard stream has no length). Which have run out lives in Lightning's
iterator only: a stream resumed mid-epoch after the image loader had restarted ran until the images
ran out once more (30 batches for an epoch of 20), and the stream's next pass, restarted inside that
epoch, was cut off when it ended (20 of 40 samples untrained). This saves the flags with a checkpoint
and lays them back over the resumed epoch's iterator. The iterator is Lightning's (``_MaxSizeCycle``,
reached through private attributes): with another Lightning that has none, nothing is saved or restored.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch import Trainer


def _cycling_iterator(trainer: Trainer) -> Any:
    """The combined training loader's iterator when it cycles loaders that run out, else ``None``."""
    iterator = getattr(getattr(trainer.fit_loop, "_combined_loader", None), "_iterator", None)
    return iterator if isinstance(getattr(iterator, "_consumed", None), list) else None


def run_out_loaders(trainer: Trainer) -> list[bool] | None:
    """For each training loader, whether it has run out in the epoch under way (``None``: one loader)."""
    iterator = _cycling_iterator(trainer)
    return list(iterator._consumed) if iterator is not None and len(iterator._consumed) > 1 else None


def restore_run_out_loaders(trainer: Trainer, run_out: list[bool]) -> None:
    """Marks the loaders that had run out before the checkpoint (call once the resumed epoch's iterator exists)."""
    iterator = _cycling_iterator(trainer)
    if iterator is not None and len(iterator._consumed) == len(run_out):
        iterator._consumed = [now or before for now, before in zip(iterator._consumed, run_out)]
