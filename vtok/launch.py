"""What the launcher says about the job: ranks and nodes from torchrun/accelerate or SLURM.

``accelerate launch`` starts torchrun, which exports ``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``,
``RANK`` and ``TORCHELASTIC_RUN_ID``; Lightning takes the ranks from that environment but refuses
to run unless ``devices x num_nodes == WORLD_SIZE``. vtok derives both from the environment so the
user never repeats them. Under SLURM, ``srun`` starting the ranks itself is read the same way
(``SLURM_NTASKS_PER_NODE``, ``SLURM_NNODES``) and keeps Lightning's auto-requeue; a torchrun or
accelerate launch inside a SLURM job is seen as TorchElastic first and loses auto-requeue.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LaunchEnvironment:
    """Devices per node and nodes of a multi-process job, and whether it was restarted."""

    launcher: str  # "torchelastic" (torchrun, accelerate) or "slurm"
    devices: int
    num_nodes: int
    run_id: str | None
    restart_count: int


def _int(name: str) -> int | None:
    value = os.environ.get(name, "")
    return int(value) if value.isdigit() else None


def detect_launch() -> LaunchEnvironment | None:
    """The multi-process launch this process belongs to, or ``None`` for a plain single process."""
    world, local = _int("WORLD_SIZE"), _int("LOCAL_WORLD_SIZE")
    if world and local and "TORCHELASTIC_RUN_ID" in os.environ:
        run_id = os.environ["TORCHELASTIC_RUN_ID"]
        return LaunchEnvironment(
            "torchelastic", local, world // local, None if run_id == "none" else run_id, _int("TORCHELASTIC_RESTART_COUNT") or 0
        )
    tasks, nodes = _int("SLURM_NTASKS"), _int("SLURM_NNODES")
    per_node = _int("SLURM_NTASKS_PER_NODE") or (tasks // nodes if tasks and nodes else None)
    if tasks and tasks > 1 and nodes and per_node and os.environ.get("SLURM_JOB_NAME") not in ("bash", "interactive"):
        if "SLURM_STEP_NUM_TASKS" not in os.environ:  # srun sets it for the tasks it starts; a batch script's own
            log.warning(  # process has none, and alone it waits for the other ranks until the group's timeout
                "this SLURM job has %d tasks, but this process was not started by srun: it will wait for %d more "
                "ranks that nothing starts; start the command with srun (or run it outside the job's allocation)",
                tasks, tasks - 1,
            )  # fmt: skip
        return LaunchEnvironment("slurm", per_node, nodes, os.environ.get("SLURM_JOB_ID"), _int("SLURM_RESTART_COUNT") or 0)
    return None
