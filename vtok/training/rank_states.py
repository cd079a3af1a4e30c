"""What every rank keeps for itself in a checkpoint: its place in the training data, its RNG state and the
buffers that each rank moves on its own data (the LeCAM anchors: DDP broadcasts no buffers under vtok's
manual optimisation).

Lightning builds the checkpoint on every rank but writes rank 0's, so the training loader's state
in it (and the RNG state vtok adds) is rank 0's, and every rank of a resumed run would take it. For
a shard stream, where each rank reads its own shards, the other ranks would restart at rank 0's
place: samples of the epoch lost or read twice. :func:`gather_rank_states` collects each rank's
states into the checkpoint while it is built (every rank takes part, as in every Lightning save)
and :func:`take_rank_state` gives each rank its own back when the checkpoint is loaded, before
Lightning restores the loops from it.

A checkpoint written by another number of ranks is taken over where the data allows it: each rank
takes rank 0's loader state (file data: the sampler shares out the rest of the epoch among the new
ranks; a shard stream refuses, see :class:`~vtok.data.trained_state.TrainedStateLoader`) and the
count of batches Lightning has trained in the epoch is rescaled to the new ranks, so that Lightning
neither ends the epoch before the data does nor counts past it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from vtok.data.errors import ResumeMismatchError
from vtok.data.trained_state import LAUNCH_KEY

RANK_STATES_KEY = "vtok_rank_states"


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


def gather_rank_states(checkpoint: dict[str, Any], rng: dict[str, Any], buffers: Sequence[str] = ()) -> None:
    """Stores every rank's training-loader state, ``rng`` and its values of the ``buffers`` named (keys of
    the checkpoint's ``state_dict``, which holds rank 0's) under :data:`RANK_STATES_KEY`.

    Must run on every rank when more than one runs (it is a collective), as Lightning's
    ``on_save_checkpoint`` hooks do.
    """
    loop = _fit_loop_state(checkpoint) or {}
    weights = checkpoint.get("state_dict", {})
    own = {name: weights[name].detach().cpu() for name in buffers if name in weights}
    states = from_every_rank({"loader": loop.get("combined_loader"), "rng": rng, "buffers": own})
    checkpoint[RANK_STATES_KEY] = {"world_size": len(states), "states": states}


def take_rank_state(checkpoint: dict[str, Any], rank: int, world: int) -> dict[str, Any] | None:
    """This rank's saved states (``None`` for a checkpoint from before they were saved per rank),
    with its loader state put where Lightning restores the training loader from, and its buffers into the
    checkpoint's ``state_dict`` (call it before Lightning loads the weights: ``on_load_checkpoint``).

    From a checkpoint of another number of ranks, rank ``r`` takes rank ``r``'s RNG state (``None`` for a
    rank the checkpoint had none for: it seeds its own) and rank 0's loader state, and the epoch's batch
    count in the fit loop is rescaled (see the module docstring).

    Raises:
        ResumeMismatchError: another number of ranks wrote a checkpoint whose loader states do not say
            how they were launched (an older vtok's).
    """
    record = checkpoint.get(RANK_STATES_KEY)
    if record is None:
        return None
    saved = int(record["world_size"])
    mine = dict(record["states"][rank]) if rank < saved else {"rng": None}
    loop = _fit_loop_state(checkpoint)
    if saved != world:
        mine["loader"] = record["states"][0]["loader"]
        if any(LAUNCH_KEY not in state for state in mine["loader"] or []):
            raise ResumeMismatchError(
                f"the checkpoint was written by {saved} processes and this run has {world}, and it is from a "
                f"vtok that saved no launch with its place in the data. Resume with {saved} processes; to go on "
                f"with {world}, start a new run from its weights (--model.init_from <checkpoint>, without --ckpt_path)"
            )
        _rescale_epoch_batches(checkpoint, saved, world)
    if loop is not None and mine.get("loader") is not None:
        loop["combined_loader"] = mine["loader"]
    if "state_dict" in checkpoint:
        checkpoint["state_dict"].update(mine.get("buffers") or {})
    return mine


def _rescale_epoch_batches(checkpoint: dict[str, Any], saved: int, world: int) -> None:
    """The fit loop's count of batches in the current epoch, as ``world`` ranks count the clips that
    ``saved`` ranks trained (rounded down: Lightning then never ends the epoch before the data runs out).

    The batches processed are rescaled and the others follow with their lag kept: a checkpoint written
    at a batch's end (``ModelCheckpoint(every_n_train_steps)``, a stop signal) has one batch processed and
    not yet completed, which Lightning completes when it restores; rescaling ``completed`` on its own
    would round it to one batch more than the processed clips are worth.
    """
    progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_loop.batch_progress", {}).get("current")
    if progress and "processed" in progress:
        old = dict(progress)
        processed = old["processed"] * saved // world
        progress.update({name: max(0, processed - (old["processed"] - count)) for name, count in old.items()})


def keep_out_of_ddp_broadcasts(module: nn.Module, names: Sequence[str]) -> None:
    """Keeps the buffers ``names`` of ``module`` (each rank's own, saved per rank) out of DDP's buffer broadcasts; call
    it before DDP wraps ``module``. DDP copies rank 0's buffers to every rank when it wraps the module and before the
    first forward after that: a resumed run's other ranks went on from rank 0's LeCAM anchors, not the ones they took
    back (:func:`take_rank_state`). Later steps broadcast none, so an unbroken run kept each rank's own."""
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, list(names))
