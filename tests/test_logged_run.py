"""What the loggers and the progress bar get: the config with the facts a launch settled, a run name, the loss."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch import Callback, Trainer
from torch.utils.data import DataLoader

from tests.helpers import csv_logger, tiny_fit_args
from vtok import VideoAutoencoder
from vtok.cli import main
from vtok.training import AutoencoderModule
from vtok.training.optim import OptimizerConfig
from vtok.training.wandb_logger import OfflineFirstWandbLogger


def _logged_config(run: Path) -> dict:
    """The hyperparameters the newest CSV logger version of ``run`` holds."""
    return yaml.safe_load(max(run.glob("version_*/hparams.yaml")).read_text())


def test_the_loggers_get_what_the_launch_settled_that_the_config_leaves_open(tmp_path: Path) -> None:
    """config.yaml keeps the settings as given (a rerun on other hardware derives its own), and the loggers got
    only that: a wandb run said precision null, devices auto and no checkpoint, also for a resumed 8-GPU run."""
    quiet = ["--trainer.limit_val_batches", "0"]
    main(tiny_fit_args(tmp_path, 2, *csv_logger(tmp_path), *quiet))
    first = _logged_config(tmp_path / "run")
    assert first["trainer"]["precision"] is None and first["ckpt_path"] is None  # as given
    assert first["run"] == {
        "folder": str(tmp_path / "run"), "resumed_from": None, "precision": "32-true", "strategy": "SingleDeviceStrategy",
        "accelerator": "CPUAccelerator", "devices_per_node": 1, "nodes": 1, "processes": 1,
    }  # fmt: skip
    main(tiny_fit_args(tmp_path, 3, *csv_logger(tmp_path), *quiet, "--ckpt_path", "last"))
    resumed = _logged_config(tmp_path / "run")["run"]
    assert resumed["resumed_from"] == str(tmp_path / "run" / "checkpoints" / "last.ckpt")


def test_a_wandb_run_is_named_after_its_run_folder_unless_named(tmp_path: Path) -> None:
    """Each launch of a run (a resume starts a new wandb run) got a random name: nothing tied them together."""
    named = {"project": "p", "offline": True}
    assert OfflineFirstWandbLogger(save_dir=str(tmp_path / "runs" / "kl_2026"), **named)._wandb_init["name"] == "kl_2026"
    assert OfflineFirstWandbLogger(save_dir=str(tmp_path / "a" / ""), **named)._wandb_init["name"] == "a"
    assert OfflineFirstWandbLogger(save_dir=str(tmp_path), name="mine", **named)._wandb_init["name"] == "mine"
    assert OfflineFirstWandbLogger(**named)._wandb_init.get("name") is None  # wandb picks one, as before


def test_with_images_the_progress_bar_shows_the_loss_the_optimiser_follows() -> None:
    """The bar showed train/loss, the videos' part alone, while train/total_loss (videos + images) is optimised."""
    torch.manual_seed(0)
    module = AutoencoderModule(VideoAutoencoder(block_out_channels=[8, 16], latent_channels=4, layers_per_block=1))
    batch = {"videos": {"video": torch.rand(1, 3, 5, 16, 16) * 2 - 1}, "images": {"video": torch.rand(2, 3, 1, 16, 16) * 2 - 1}}
    trainer = Trainer(max_steps=1, log_every_n_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, accelerator="cpu")  # fmt: skip
    trainer.fit(module, train_dataloaders=DataLoader([batch], batch_size=None))
    logged = trainer.logged_metrics
    assert logged["train/total_loss"] == pytest.approx(float(logged["train/loss"] + logged["train/images_loss"]))
    assert trainer.progress_bar_metrics["loss"] == pytest.approx(float(logged["train/total_loss"]))


class _BarTotals(Callback):
    """Test-only: the training progress bar's total at each batch, by epoch."""

    def __init__(self) -> None:
        self.totals: dict[int, set[int]] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self.totals.setdefault(trainer.current_epoch, set()).add(trainer.progress_bar_callback.train_progress_bar.total)


def test_with_accumulation_the_last_epochs_bar_counts_the_batches_left() -> None:
    """Lightning's bar took the optimizer steps left for batches: with 2 batches a step, one step left showed
    a bar of 1 that ran on to 2/?."""
    torch.manual_seed(0)
    module = AutoencoderModule(
        VideoAutoencoder(block_out_channels=[8, 16], latent_channels=4, layers_per_block=1), accumulate_batches=2
    )
    totals = _BarTotals()
    trainer = Trainer(max_steps=3, logger=False, enable_checkpointing=False, enable_model_summary=False,
                      accelerator="cpu", callbacks=[totals])  # fmt: skip
    trainer.fit(module, train_dataloaders=DataLoader([{"video": torch.rand(1, 3, 5, 16, 16) * 2 - 1}] * 4, batch_size=None))
    assert totals.totals == {0: {4}, 1: {2}} and module.batch_step == 6


@pytest.mark.parametrize(
    ("accumulate", "max_steps", "totals"), [(1, 3, {0: {3}}), (2, 2, {0: {4}}), (1, 6, {0: {4}, 1: {2}})]
)
def test_a_resumed_epochs_bar_counts_the_batches_run_before_the_resume(
    tmp_path: Path, accumulate: int, max_steps: int, totals: dict[int, set[int]]
) -> None:
    """Lightning calls no on_train_epoch_start for an epoch resumed mid-way: its bar had no total (3/?)."""
    torch.manual_seed(0)
    data = DataLoader([{"video": torch.rand(1, 3, 5, 16, 16) * 2 - 1}] * 4, batch_size=None)
    settings = dict(logger=False, enable_checkpointing=False, enable_model_summary=False, accelerator="cpu")
    module = AutoencoderModule(
        VideoAutoencoder(block_out_channels=[8, 16], latent_channels=4, layers_per_block=1), accumulate_batches=accumulate
    )
    first = Trainer(max_steps=2 // accumulate, **settings)
    first.fit(module, train_dataloaders=data)  # stops 2 batches into the epoch of 4
    first.save_checkpoint(tmp_path / "mid-epoch.ckpt")
    bars = _BarTotals()
    Trainer(max_steps=max_steps, callbacks=[bars], **settings).fit(
        module, train_dataloaders=data, ckpt_path=tmp_path / "mid-epoch.ckpt"
    )
    assert bars.totals == totals


class _SkippedBefore(Callback):
    """Test-only: a run that had skipped 301 steps before (as a checkpoint restores it)."""

    def on_train_start(self, trainer, module) -> None:  # noqa: ANN001
        module.skipped_steps = 301


def test_under_bf16_true_counts_rates_and_weights_are_logged_in_float32() -> None:
    """Lightning makes bfloat16 the default dtype in training_step: 301 skipped steps were logged as 300, lr 1e-4 as
    1.0014e-4, the kl weight 1e-6 as 9.98e-7."""
    torch.manual_seed(0)
    module = AutoencoderModule(VideoAutoencoder(block_out_channels=[8, 16], latent_channels=4, layers_per_block=1),
                               optimizer=OptimizerConfig(lr=1e-4, warmup_steps=0), ema_decay=None)  # fmt: skip
    trainer = Trainer(max_steps=1, log_every_n_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, accelerator="cpu", precision="bf16-true", callbacks=[_SkippedBefore()])  # fmt: skip
    trainer.fit(module, train_dataloaders=DataLoader([{"video": torch.rand(1, 3, 5, 16, 16) * 2 - 1}], batch_size=None))
    logged = trainer.logged_metrics
    assert float(logged["train/skipped_steps"]) in (301.0, 302.0)  # 302: CPU bf16's backward can give a NaN step
    assert float(logged["train/lr"]) == float(torch.tensor(1e-4, dtype=torch.float32))
    assert float(logged["train/kl_weight"]) == float(torch.tensor(1e-6, dtype=torch.float32))
