"""What every rank keeps for itself in a checkpoint: its place in the training data and its RNG state.

Lightning builds the checkpoint on every rank but writes rank 0's, so the training loader's state
in it (and the RNG state vtok adds) is rank 0's, and every rank of a resumed run would take it. For
a shard stream, where each rank reads its own shards, the other ranks would restart at rank 0's
place: samples of the epoch lost or read twice. :func:`gather_rank_states` collects each rank's
states into the checkpoint while it is built (every rank takes part, as in every Lightning save)
and :func:`take_rank_state` gives each rank its own back when the checkpoint is loaded, before
Lightning restores the loops from it.
"""

from __future__ import annotations

from typing import Any

import torch.distributed as dist

RANK_STATES_KEY = "vtok_rank_states"


class ResumeMismatchError(RuntimeError):
    """A checkpoint that cannot be resumed as this run is launched."""


def _fit_loop_state(checkpoint: dict[str, Any]) -> dict[str, Any] | None:
    return checkpoint.get("loops", {}).get("fit_loop", {}).get("state_dict")


def from_every_rank(value: Any) -> list[Any]:
    """``value`` of every rank, in rank order (``[value]`` in a single process); a collective: every
    rank must call it."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [value]
    values: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def gather_rank_states(checkpoint: dict[str, Any], rng: dict[str, Any]) -> None:
    """Stores every rank's training-loader state and ``rng`` under :data:`RANK_STATES_KEY`.

    Must run on every rank when more than one runs (it is a collective), as Lightning's
    ``on_save_checkpoint`` hooks do.
    """
    loop = _fit_loop_state(checkpoint) or {}
    states = from_every_rank({"loader": loop.get("combined_loader"), "rng": rng})
    checkpoint[RANK_STATES_KEY] = {"world_size": len(states), "states": states}


def take_rank_state(checkpoint: dict[str, Any], rank: int, world: int) -> dict[str, Any] | None:
    """This rank's saved states (``None`` for a checkpoint from before they were saved per rank),
    with its loader state put where Lightning restores the training loader from.

    Raises:
        ResumeMismatchError: the checkpoint was written by another number of ranks.
    """
    record = checkpoint.get(RANK_STATES_KEY)
    if record is None:
        return None
    saved = int(record["world_size"])
    if saved != world:
        raise ResumeMismatchError(
            f"the checkpoint was written by {saved} processes and this run has {world}: each process's place in "
            f"the data is saved for its own share, which another number of processes splits differently. Resume "
            f"with {saved} processes; to go on with {world}, start a new run from its weights "
            "(--model.init_from <checkpoint>, without --ckpt_path)"
        )
    mine = record["states"][rank]
    loop = _fit_loop_state(checkpoint)
    if loop is not None and mine.get("loader") is not None:
        loop["combined_loader"] = mine["loader"]
    return mine
