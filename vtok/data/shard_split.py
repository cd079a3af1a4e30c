"""Which shards each rank and data-loader worker reads in an epoch, and how many samples it gives.

The policy, every epoch:

1. The shard list is put in an order shuffled by ``(seed, epoch)`` (the listed order for
   validation); every rank computes the same order.
2. When the number of shards does not divide by the number of ranks, the order is padded by
   repeating its first shards until it does, so every rank reads the same number of shards; the
   repeated shards are read twice that epoch (different ones each epoch), as
   :class:`~vtok.data.sampler.EpochSampler` repeats a few samples.
3. Rank ``r`` takes every ``world``-th shard of that order from position ``r``; its worker ``w``
   takes every ``workers``-th of those from position ``w``. Without padding, each shard (hence each
   sample) goes to exactly one rank and worker. Workers of one rank may get one shard more or
   less than each other; the loader drains them all.
4. Ranks must deliver the same number of batches, or the ones that finish first wait forever for
   the others. When the shards' sample counts are known (``index.json``, written by
   ``vtok prepare --shards``), every rank delivers the largest number of full batches that every
   rank can fill, handed out to its workers in the order the loader takes batches from them
   (:func:`sample_quotas`); samples beyond a worker's quota are left for another epoch. A worker
   whose shards give fewer good samples than its quota (corrupt members) reads them again; one
   whose shards give none at all reads the other shards instead (see ``ShardClipDataset``).
   Without counts, each worker reads its shards once: fine on one rank; on several, give shards
   equal sample counts and divisible shard numbers, or pass the index. With counts, the data module
   checks the quotas before training (:func:`check_quotas`): none at all is an error, and a large share
   of the samples left untrained each epoch (few samples per worker) a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from vtok.data.seeding import sample_generator

log = logging.getLogger(__name__)

UNTRAINED_SHARE_TO_WARN = 0.1
EPOCHS_CHECKED = 50  # the epochs whose quotas check_quotas averages (each epoch deals the shards anew)


def epoch_order(num_shards: int, world: int, epoch: int = 0, seed: int = 0, shuffle: bool = True) -> list[int]:
    """Shard indices in this epoch's order, padded by repeating its start to a multiple of ``world``."""
    if num_shards < 1:
        raise ValueError("there are no shards to split")
    if shuffle:
        order = torch.randperm(num_shards, generator=sample_generator(seed, epoch, -2)).tolist()
    else:
        order = list(range(num_shards))
    padded = -(-num_shards // world) * world
    return (order * (padded // num_shards + 1))[:padded]


def owner(position: int, world: int, workers: int) -> tuple[int, int]:
    """``(rank, worker)`` that reads the shard at ``position`` of the epoch's order."""
    return position % world, (position // world) % workers


def split_shards(
    shards: Sequence[str],
    rank: int,
    world: int,
    worker: int,
    workers: int,
    epoch: int = 0,
    seed: int = 0,
    shuffle: bool = True,
) -> list[str]:
    """The shards worker ``worker`` (of ``workers``) of rank ``rank`` (of ``world``) reads this epoch.

    Args:
        shards: every shard, in a fixed order (the same on every rank).
        rank: this process's rank.
        world: number of ranks.
        worker: this data-loader worker's id (0 without workers).
        workers: data-loader workers per rank (1 without workers).
        epoch: the epoch, which reorders the shards when ``shuffle``.
        seed: seed of the order.
        shuffle: a new order every epoch (training); the listed order otherwise.
    """
    if not (0 <= rank < world and 0 <= worker < workers):
        raise ValueError(f"rank {rank} of {world} or worker {worker} of {workers} is out of range")
    order = epoch_order(len(shards), world, epoch, seed, shuffle)
    return [shards[i] for position, i in enumerate(order) if owner(position, world, workers) == (rank, worker)]


def sample_quotas(
    counts: Sequence[int], world: int, workers: int, batch_size: int, epoch: int = 0, seed: int = 0, shuffle: bool = True
) -> list[list[int]]:
    """Samples each ``[rank][worker]`` delivers this epoch, so that every rank gives the same
    number of full batches.

    Args:
        counts: samples in each shard, in the order of the shard list.
        world: number of ranks.
        workers: data-loader workers per rank.
        batch_size: samples per batch (batches are made inside each worker).
        epoch: as in :func:`split_shards`.
        seed: as in :func:`split_shards`.
        shuffle: as in :func:`split_shards`.
    """
    full = [[0] * workers for _ in range(world)]  # samples each worker's shards hold
    for position, index in enumerate(epoch_order(len(counts), world, epoch, seed, shuffle)):
        rank, worker = owner(position, world, workers)
        full[rank][worker] += counts[index]
    batches = [[samples // batch_size for samples in row] for row in full]
    target = min(sum(row) for row in batches)
    return [[batch * batch_size for batch in _deal(row, target)] for row in batches]


def check_quotas(
    counts: Sequence[int], world: int, workers: int, batch_size: int, seed: int = 0, warn: bool = True
) -> None:
    """Checks the quotas of the first epochs before training: batches are made inside each loader worker from
    its own shards, so samples spread thinly over workers may fill few batches, or none; and every rank
    gives as many as the one whose shards hold fewest.

    Args:
        counts: samples in each shard.
        world: number of ranks.
        workers: data-loader workers per rank (1 without workers).
        batch_size: samples per batch.
        seed: seed of the shard order.
        warn: log the warning for a large untrained share (pass ``False`` on all ranks but one).

    Raises:
        ValueError: no rank would deliver a batch (the training loop would run empty epochs).
    """
    # each epoch deals the shards anew, and so the quotas: epoch 0 alone could look fine where most do not
    # (shards of two incremental prepares, [16, 5, 5, 16], 2 ranks x 2 workers: 95 % at epoch 0, 79 % on average)
    shares = [
        (sum(map(sum, sample_quotas(counts, world, workers, batch_size, epoch, seed))),
         sum(counts[index] for index in epoch_order(len(counts), world, epoch, seed)))
        for epoch in range(EPOCHS_CHECKED)
    ]  # fmt: skip
    trained = round(sum(given for given, _ in shares) / EPOCHS_CHECKED)
    read = round(sum(offered for _, offered in shares) / EPOCHS_CHECKED)
    fewest = min(given / offered for given, offered in shares)
    how = f"each of the {world} rank(s) x {workers} loader worker(s) makes batches of data.batch_size={batch_size}"
    how += " from its own shards"
    smaller_shards = "write smaller shards (vtok prepare --shards --shard-samples, with a new --out)"
    fix = f"Lower {'data.num_workers or ' if workers > 1 else ''}data.batch_size, or {smaller_shards}"
    if shares[0][0] == 0:
        where = "on some rank no worker's" if world > 1 else "no worker's"
        raise ValueError(
            f"the shards hold {sum(counts)} samples in {len(counts)} shards, but {how}, and {where} shards hold "
            f"enough for one: no training batch would be made. {fix}"
        )
    if warn and trained < read * (1 - UNTRAINED_SHARE_TO_WARN):
        even = ", and every rank gives as many as the one that fills fewest" if world > 1 else ""
        by_rank = sum(sum(map(sum, sample_quotas(counts, world, 1, 1, epoch, seed))) for epoch in range(EPOCHS_CHECKED))
        if by_rank < sum(offered for _, offered in shares) * (1 - UNTRAINED_SHARE_TO_WARN):  # with no batches to fill:
            fix = f"The ranks' shards hold unequal numbers of samples: {smaller_shards}, or more shards per rank"
        log.warning(
            "%d of the %d samples an epoch reads from the %d shards are trained (on average over epochs 0-%d; the "
            "fewest: %.0f%%): %s%s; the others wait for another epoch. %s",
            trained, read, len(counts), EPOCHS_CHECKED - 1, 100 * fewest, how, even, fix,
        )  # fmt: skip


def _deal(capacity: list[int], total: int) -> list[int]:
    """What dealing ``total`` items one at a time to the workers in turn, skipping full ones, gives each."""
    low, high = 0, max(capacity, default=0)  # the last full round: the largest L with sum(min(c, L)) <= total
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if sum(min(c, middle) for c in capacity) <= total else (low, middle - 1)
    given = [min(c, low) for c in capacity]
    left = total - sum(given)
    for worker, room in enumerate(capacity):
        if left and room > low:
            given[worker] += 1
            left -= 1
    return given


def warn_about_shard_split(shards: int, counts_known: bool, indexed: bool, world: int, workers: int) -> None:
    """Warns where ``shards`` shared out among ``world`` ranks x ``workers`` loader workers go unevenly: sample
    counts unknown on several ranks (``indexed``: an index.json was found, which lacks some of the shards), or
    fewer shards than readers."""
    if not counts_known and world > 1:
        why = "see the shards named above" if indexed else "no index.json; set data.shard_index to the index vtok prepare wrote"
        log.warning(
            "the shards' sample counts are unknown: %d ranks may end an epoch at different steps, and then hang "
            "there until the process group's timeout (%s)",
            world, why,
        )  # fmt: skip
    if shards < world * workers:
        log.warning(
            "%d shards for %d ranks x %d workers: some workers idle or shards are read twice per epoch; "
            "write smaller shards (vtok prepare --shard-size)",
            shards, world, workers,
        )  # fmt: skip
