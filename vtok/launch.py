"""What the launcher says about the job: ranks and nodes from torchrun/accelerate or SLURM.

``accelerate launch`` starts torchrun, which exports ``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``,
``RANK`` and ``TORCHELASTIC_RUN_ID``; Lightning takes the ranks from that environment but refuses
to run unless ``devices x num_nodes == WORLD_SIZE``. vtok derives both from the environment so the
user never repeats them. Under SLURM, ``srun`` starting the ranks itself is read the same way
(``SLURM_NTASKS_PER_NODE``, ``SLURM_NNODES``) and keeps Lightning's auto-requeue; a torchrun or
accelerate launch inside a SLURM job is seen as TorchElastic first and loses auto-requeue.

A SLURM job of one task is a launch too (Lightning's auto-requeue works for it): its run folder is
named by the job id, which a requeued job keeps, and ``SLURM_RESTART_COUNT`` says it was requeued (also
for a torchrun inside the job), so it goes on from its newest checkpoint instead of starting over.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from vtok.usage_error import UsageError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LaunchEnvironment:
    """Devices per node and nodes of a launched job (one process for a SLURM job of one task), and whether it was
    restarted (``restart_count``: by the launcher, or a requeue of its SLURM job)."""

    launcher: str  # "torchelastic" (torchrun, accelerate) or "slurm"
    devices: int
    num_nodes: int
    run_id: str | None
    restart_count: int

    @property
    def processes(self) -> int:
        """The launch's processes, one per device on every node."""
        return self.devices * self.num_nodes


def _int(name: str) -> int | None:
    value = os.environ.get(name, "")
    return int(value) if value.isdigit() else None


def _is_interactive(job_name: str) -> bool:
    """Whether a SLURM job is a shell or notebook in an allocation rather than a submitted run: Lightning takes
    ``bash`` and ``interactive`` for one; ``srun --pty zsh`` (any shell) and Jupyter servers are too, and each
    command typed in them is a run of its own, not the job's one run."""
    shells = {"bash", "sh", "zsh", "fish", "tcsh", "csh", "ksh", "dash", Path(os.environ.get("SHELL", "")).name}
    return job_name in (shells | {"interactive"}) - {""} or "jupyter" in job_name.lower()


def detect_launch() -> LaunchEnvironment | None:
    """The launch this process belongs to (several processes, or one SLURM task), or ``None`` for a plain
    single process.

    Raises:
        UsageError: a layout Lightning cannot run: nodes with unequal numbers of processes, or a SLURM job of
            several tasks without ``--ntasks-per-node``.
    """
    world, local = _int("WORLD_SIZE"), _int("LOCAL_WORLD_SIZE")
    requeued = _int("SLURM_RESTART_COUNT") or 0  # a requeued SLURM job: also when torchrun runs inside it
    if world and local and "TORCHELASTIC_RUN_ID" in os.environ:
        if world % local:
            raise UsageError(
                f"the launch has {world} processes, {local} on this node: every node needs as many processes "
                "(Lightning runs devices x num_nodes); start the same number on each node"
            )
        # inside a submitted SLURM job, its id: torchrun's own (a new uuid at every start of a single node's
        # launch, `none` under accelerate) would send a requeued job to a new folder, to start over there
        in_job = "SLURM_JOB_ID" in os.environ and not _is_interactive(os.environ.get("SLURM_JOB_NAME", ""))
        run_id = os.environ["SLURM_JOB_ID"] if in_job else os.environ["TORCHELASTIC_RUN_ID"]
        restarts = max(_int("TORCHELASTIC_RESTART_COUNT") or 0, requeued)
        return LaunchEnvironment("torchelastic", local, world // local, None if run_id == "none" else run_id, restarts)
    tasks, nodes = _int("SLURM_NTASKS"), _int("SLURM_NNODES") or 1
    if not tasks or _is_interactive(os.environ.get("SLURM_JOB_NAME", "")):
        return None
    # one task is one process, whatever --ntasks-per-node the job script names (SLURM exports it as given)
    per_node = 1 if tasks == 1 else _int("SLURM_NTASKS_PER_NODE")
    if per_node is None:
        raise UsageError(
            f"this SLURM job has {tasks} tasks but no --ntasks-per-node, which Lightning needs to place the ranks; "
            f"submit it with --ntasks-per-node={max(tasks // nodes, 1)} (one task per GPU) and --nodes={nodes}"
        )
    if tasks > 1 and "SLURM_STEP_NUM_TASKS" not in os.environ:  # srun sets it for the tasks it starts; a batch
        log.warning(  # script's own process has none, and alone it waits for the other ranks until the group's timeout
            "this SLURM job has %d tasks, but this process was not started by srun: it will wait for %d more "
            "ranks that nothing starts; start the command with srun (or run it outside the job's allocation)",
            tasks, tasks - 1,
        )  # fmt: skip
    return LaunchEnvironment("slurm", per_node, nodes if tasks > 1 else 1, os.environ.get("SLURM_JOB_ID"), requeued)
