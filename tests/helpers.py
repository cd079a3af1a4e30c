"""Command lines for tiny, fast training runs through the real CLI."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from lightning.pytorch import Callback

from vtok import VideoAutoencoder
from vtok.export import write_export

LAUNCH_VARIABLES = (
    "WORLD_SIZE", "LOCAL_WORLD_SIZE", "RANK", "LOCAL_RANK", "GROUP_RANK", "TORCHELASTIC_RUN_ID", "TORCHELASTIC_RESTART_COUNT",
    "SLURM_NTASKS", "SLURM_NNODES", "SLURM_NTASKS_PER_NODE", "SLURM_JOB_NAME", "SLURM_JOB_ID", "SLURM_RESTART_COUNT",
    "SLURM_STEP_NUM_TASKS", "SLURM_PROCID", "SLURM_LOCALID", "NODE_RANK", "VTOK_RUN_FOLDER",
)  # what a launcher (or a run vtok started) tells a process; cleared around every test, see conftest.py  # fmt: skip

TINY_MODEL = [
    "--model.autoencoder.block_out_channels", "[16, 32]",
    "--model.autoencoder.latent_channels", "8",
]  # fmt: skip
TINY_DATA = [
    "--data.num_frames", "5",
    "--data.size", "32",
    "--data.synthetic_videos", "8",
    "--data.val_fraction", "0.25",
    "--data.num_workers", "0",
]  # fmt: skip


def tiny_fit_args(tmp_path: Path, steps: int, *extra: str, run: str = "run", config: Path | None = None) -> list[str]:
    """``vtok fit`` arguments for a tiny model on generated clips cached under ``tmp_path``
    (``config`` comes first, so the flags here override it)."""
    return [
        "fit", *(["--config", str(config)] if config else []), *TINY_MODEL, *TINY_DATA,
        "--data.synthetic_dir", str(tmp_path / "clips"),
        "--trainer.default_root_dir", str(tmp_path / run),
        "--trainer.max_steps", str(steps),
        "--trainer.enable_progress_bar", "false",
        *extra,
    ]  # fmt: skip


def small_frame_export(folder: Path) -> Path:
    """A tiny random model with 4x spatial compression (for frames of a few pixels), exported to ``folder``."""
    torch.manual_seed(0)
    config = {"block_out_channels": [8, 16, 16], "latent_channels": 4, "layers_per_block": 1, "spatial_compression": 4}
    return write_export(VideoAutoencoder(**config), folder, {})


def csv_logger(tmp_path: Path, run: str = "run") -> list[str]:
    return [
        "--trainer.logger", "lightning.pytorch.loggers.CSVLogger",
        "--trainer.logger.save_dir", str(tmp_path / run),
        "--trainer.log_every_n_steps", "1",
    ]  # fmt: skip


def metric_column(run_folder: Path, name: str) -> list[float]:
    """Every logged value of ``name`` in the run's metrics.csv."""
    metrics = next(run_folder.rglob("metrics.csv"))
    with metrics.open() as handle:
        return [float(row[name]) for row in csv.DictReader(handle) if row.get(name)]


class RecordSamples(Callback):
    """Test-only: writes, per rank, the sample slots each batch held and a hash of the final weights.

    Args:
        folder: where ``rank<R>.json`` is written at the end of training.
    """

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self.rows: list[dict] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        anchor = dict(pl_module.named_buffers()).get("adversarial.ema_real")  # LeCAM's, as the step finds it
        self._anchor = None if anchor is None else float(anchor)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        sampler = getattr(trainer.train_dataloader, "sampler", None)
        epoch = sampler.epoch if hasattr(sampler, "epoch") else trainer.current_epoch  # files vs shards
        clips = batch.get("videos", batch)  # with images beside them, the clips' part
        samples = clips["index"].tolist() if "index" in clips else list(clips["key"])
        rng = hashlib.sha256(torch.get_rng_state().numpy().tobytes()).hexdigest()[:16]  # after the step's draws
        self.rows.append({"step": pl_module.batch_step, "epoch": epoch, "lightning_epoch": trainer.current_epoch,
                          "index": samples, "rng": rng, "anchor": self._anchor})  # fmt: skip

    def on_train_end(self, trainer, pl_module) -> None:  # noqa: ANN001
        digest = hashlib.sha256()
        # parameters (EMA included); buffers such as LeCAM's running means are each rank's own
        for name, tensor in sorted(pl_module.named_parameters()):
            digest.update(name.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
        self.folder.mkdir(parents=True, exist_ok=True)
        record = {"rank": trainer.global_rank, "world": trainer.world_size, "rows": self.rows, "weights": digest.hexdigest()}
        (self.folder / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


class SignalOneRank(Callback):
    """Test-only: rank ``rank`` sends itself SIGTERM at the end of batch ``at_batch`` (counted from 1),
    as a scheduler stopping one process of a job would.

    Args:
        rank: the global rank that is signalled.
        at_batch: the batch after which it is.
    """

    def __init__(self, rank: int, at_batch: int) -> None:
        self.rank = rank
        self.at_batch = at_batch
        self.batches = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self.batches += 1
        if trainer.global_rank == self.rank and self.batches == self.at_batch:
            os.kill(os.getpid(), signal.SIGTERM)


class SignalInValidation(Callback):
    """Test-only: rank ``rank`` sends itself SIGTERM at the end of the fit's validation batch ``at_batch`` (counted from
    1 across its validations, the sanity check's left out; 0: never), and each rank writes the batches each validation
    ran to ``<folder>/rank<R>.json`` as they run (a stop during one ends the fit without ``on_train_end``).

    Args:
        folder: where the ranks' records are written.
        at_batch: the validation batch after which the signal comes.
        rank: the global rank that is signalled.
        sanity_check: count the sanity check's batches instead (and record nothing).
    """

    def __init__(self, folder: str, at_batch: int = 0, rank: int = 0, sanity_check: bool = False) -> None:
        self.folder = Path(folder)
        self.at_batch = at_batch
        self.rank = rank
        self.sanity_check = sanity_check
        self.batches = 0
        self.validations: list[int] = []

    def on_validation_start(self, trainer, pl_module) -> None:  # noqa: ANN001
        if not trainer.sanity_checking:
            self.validations.append(0)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:  # noqa: ANN001
        if trainer.sanity_checking != self.sanity_check:
            return
        self.batches += 1
        if not self.sanity_check:
            self.validations[-1] += 1
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / f"rank{trainer.global_rank}.json").write_text(json.dumps(self.validations))
        if trainer.global_rank == self.rank and self.batches == self.at_batch:
            os.kill(os.getpid(), signal.SIGTERM)

    on_test_start, on_test_batch_end = on_validation_start, on_validation_batch_end  # vtok test's batches alike


class CountBroadcasts(Callback):
    """Test-only: counts the ``torch.distributed.broadcast`` calls made while training (from its start to its end),
    and the training batches, and writes both to ``<folder>/rank<R>.json`` at the end.

    Args:
        folder: where the ranks' counts are written.
    """

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self.broadcasts = self.batches = 0
        self._broadcast = torch.distributed.broadcast

    def on_train_start(self, trainer, pl_module) -> None:  # noqa: ANN001
        def counted(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            self.broadcasts += 1
            return self._broadcast(*args, **kwargs)

        torch.distributed.broadcast = counted

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self.batches += 1

    def on_train_end(self, trainer, pl_module) -> None:  # noqa: ANN001
        torch.distributed.broadcast = self._broadcast
        self.folder.mkdir(parents=True, exist_ok=True)
        counts = {"broadcasts": self.broadcasts, "batches": self.batches}
        (self.folder / f"rank{trainer.global_rank}.json").write_text(json.dumps(counts))


class NonFiniteLossOnOneRank(Callback):
    """Test-only: rank ``rank`` adds a gradient-free inf to its loss at batch ``at_batch`` (counted from 0), as a
    discriminator term that overflows before ``adversarial.start_step`` does (weighted 0: NaN, with zero gradients).

    Args:
        rank: the global rank whose loss is made non-finite.
        at_batch: the batch it happens at.
    """

    def __init__(self, rank: int, at_batch: int) -> None:
        self.rank = rank
        self.at_batch = at_batch

    def setup(self, trainer, pl_module, stage) -> None:  # noqa: ANN001
        objective = pl_module.loss.forward

        def forward(video, output, step):  # noqa: ANN001, ANN202
            terms = objective(video, output, step)
            if trainer.global_rank == self.rank and step == self.at_batch and torch.is_grad_enabled():
                terms["loss"] = terms["loss"] + float("inf")
            return terms

        pl_module.loss.forward = forward


@contextmanager
def lock_held_elsewhere(folder: Path, name: str) -> Iterator[None]:
    """``folder/name`` locked by another process (as a vtok command still writing into ``folder`` holds it)
    while the block runs; that process is killed after it, and its lock goes with it."""
    holder = "import sys, time; from pathlib import Path; from vtok.commands.folder_lock import folder_lock\n" \
             "with folder_lock(Path(sys.argv[1]), sys.argv[2]):\n    print('held', flush=True); time.sleep(120)"
    other = subprocess.Popen([sys.executable, "-c", holder, str(folder), name], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "held"
        yield
    finally:
        other.kill()
        other.wait()
