"""An epoch-counting, rank-sharding, resumable sampler that yields ``(epoch, index)`` keys.

The dataset needs the epoch to seed its per-sample generator; passing it with the index keeps the
dataset stateless, so persistent workers and resumed runs draw the same clips. The sampler counts
its own passes (pass n is epoch n) rather than taking Lightning's epoch number, which can skip
one when a run resumes from a checkpoint written on an epoch's last batch; its ``state_dict``
(saved by torchdata's ``StatefulDataLoader`` inside Lightning's checkpoints) holds the epoch and
the position within it.

Each rank takes a disjoint, equal share of a permutation that changes every epoch: the index list
is padded by repeating its start until it divides the world size (so every rank runs the same
number of steps; a few samples are seen twice per epoch when the size does not divide). With
``mark_repeats`` (validation) the keys are ``(epoch, index, repeated)``, so the padding can be left
out of the metrics: each validation clip then counts once, whatever the world size.

A place saved by another number of ranks is taken over: the ranks had trained the first
``yielded x world`` positions of the epoch's permutation between them, so the new ranks share out
the rest of it (from that ``offset``), and each sample of the epoch is still trained once.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from vtok.data.seeding import sample_generator


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of ranks (``(0, 1)`` outside a process group)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class EpochSampler(Sampler[tuple[int, ...]]):
    """Yields ``(epoch, index)`` for this rank's share of ``size`` samples, one epoch per pass.

    Args:
        size: number of samples in the dataset.
        shuffle: a new permutation every epoch (seeded by ``seed`` and the epoch).
        seed: seed of the permutation.
        first_epoch: epoch number of the first pass.
        mark_repeats: yield ``(epoch, index, repeated)``, ``repeated`` true for the padding.
    """

    def __init__(
        self, size: int, shuffle: bool = True, seed: int = 0, first_epoch: int = 0, mark_repeats: bool = False
    ) -> None:
        self.size = size
        self.shuffle = shuffle
        self.seed = seed
        self.mark_repeats = mark_repeats
        self.epoch = first_epoch  # epoch of the current (or next, before any pass) pass
        self.offset = 0  # positions of the epoch's permutation trained before this pass's share began
        self.yielded = 0
        self._next_epoch = first_epoch
        self._resume: tuple[int, int, int] | None = None  # epoch, offset, yielded
        self._restored_epoch: int | None = None  # the epoch of a checkpoint's place, until the first epoch's end

    def __len__(self) -> int:
        world = rank_and_world()[1]
        return -(-self.size // world)

    def _share(self, epoch: int, offset: int = 0) -> list[tuple[int, bool]]:
        """This rank's ``(index, repeated)`` pairs for ``epoch`` from position ``offset`` of its
        permutation on: ``repeated`` marks the padding."""
        rank, world = rank_and_world()
        if self.shuffle:
            order = torch.randperm(self.size, generator=sample_generator(self.seed, epoch, -1)).tolist()
        else:
            order = list(range(self.size))
        order = order[offset:]
        real = len(order)
        padded = -(-real // world) * world
        order = (order * (padded // max(real, 1) + 1))[:padded]
        return [(index, position >= real) for position, index in enumerate(order)][rank::world]

    def __iter__(self) -> Iterator[tuple[int, ...]]:
        # A generator: nothing below runs until the first sample is asked for, so an iterator
        # created and dropped (as torchdata does while restoring) changes no state.
        epoch, offset, start = self._resume if self._resume is not None else (self._next_epoch, 0, 0)
        self._resume = None
        self._next_epoch = epoch + 1
        self.epoch, self.offset, self.yielded = epoch, offset, start
        for index, repeated in self._share(epoch, offset)[start:]:
            self.yielded += 1
            yield (epoch, index, repeated) if self.mark_repeats else (epoch, index)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "offset": self.offset, "yielded": self.yielded, "world": rank_and_world()[1]}

    @property
    def next_pass(self) -> int:
        """The epoch the next pass takes, unless a restored place comes first."""
        return self._next_epoch

    def start_passes_at(self, epoch: int) -> None:
        """Numbers the next pass ``epoch``: a run resumed after an epoch's end, which Lightning restores without
        the loaders' places, goes on with the pass an unbroken run takes next (a restored place still comes first)."""
        self._next_epoch = epoch

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resumes at ``state``'s place; one saved by another number of ranks continues the epoch
        after the positions those ranks trained."""
        epoch, offset, yielded = int(state["epoch"]), int(state.get("offset", 0)), int(state["yielded"])
        self._restored_epoch = epoch
        world = int(state.get("world", rank_and_world()[1]))
        if world == rank_and_world()[1]:
            self._resume = (epoch, offset, yielded)
        else:
            self._resume = (epoch, min(offset + yielded * world, self.size), 0)

    def skip_unread_epoch_end(self, rest_skipped: bool = False) -> None:
        """Called at the end of every training epoch: a restored place that no pass has read is
        dropped, so the next pass starts the next epoch, as in a run never stopped. Only the epoch
        Lightning restarts from a checkpoint written on an epoch's last batch leaves one unread (it
        skips the loader when the checkpoint had run that epoch's validation); the pass after would
        otherwise read that epoch's end again: its leftover clips, fewer than a batch, or none, a
        second epoch without a batch. ``rest_skipped``: that epoch's rest was fetched from but not
        trained (the training module skips it): the next pass is the one after the restored place's,
        whatever the rest drew ahead (with images beside the clips, Lightning restarts a loader that
        has run out, and fetches a batch ahead of the one it trains)."""
        if rest_skipped and self._restored_epoch is not None:
            self._next_epoch = self._restored_epoch + 1
        elif self._resume is not None:
            self._next_epoch = self._resume[0] + 1
        self._resume, self._restored_epoch = None, None
