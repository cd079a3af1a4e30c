"""An epoch-aware, rank-sharding sampler that yields ``(epoch, index)`` keys.

The dataset needs the epoch to seed its per-sample generator; passing it with the index keeps the
dataset stateless, so persistent workers and resumed runs draw the same clips. Each rank takes a
disjoint, equal share of a permutation that changes every epoch: the index list is padded by
repeating its start until it divides the world size (so every rank runs the same number of
steps; a few samples are seen twice per epoch when the size does not divide).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from vtok.data.seeding import sample_generator


def _rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields ``(epoch, index)`` for this rank's share of ``size`` samples.

    Args:
        size: number of samples in the dataset.
        shuffle: a new permutation every epoch (seeded by ``seed`` and the epoch).
        seed: seed of the permutation.
    """

    def __init__(self, size: int, shuffle: bool = True, seed: int = 0) -> None:
        self.size = size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        world = _rank_and_world()[1]
        return -(-self.size // world)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        rank, world = _rank_and_world()
        if self.shuffle:
            order = torch.randperm(self.size, generator=sample_generator(self.seed, self.epoch, -1)).tolist()
        else:
            order = list(range(self.size))
        padded = -(-self.size // world) * world
        order = (order * (padded // max(len(order), 1) + 1))[:padded]
        return iter([(self.epoch, index) for index in order[rank::world]])
