"""The loader-wait monitor: every window it logs the fraction of training time spent waiting for
the next batch and the clips per second, leaves validation out, and warns once when data is the
bottleneck."""

from __future__ import annotations

import csv
import logging
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, Dataset

from vtok import VideoAutoencoder
from vtok.data import trained_state
from vtok.data.trained_state import TrainedStateLoader
from vtok.training import AutoencoderModule, LoaderWaitMonitor
from vtok.training import loader_wait


def test_a_training_run_logs_a_row_per_window(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = AutoencoderModule(VideoAutoencoder(block_out_channels=[8, 16], latent_channels=4))
    batches = [{"video": torch.rand(2, 3, 5, 16, 16) * 2 - 1} for _ in range(5)]
    trainer = Trainer(max_steps=5, logger=CSVLogger(tmp_path), enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, accelerator="cpu", callbacks=[LoaderWaitMonitor(window_batches=2)])  # fmt: skip
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))
    with open(next(tmp_path.rglob("metrics.csv"))) as file:
        rows = [row for row in csv.DictReader(file) if row.get("perf/clips_per_s")]
    assert [int(row["step"]) for row in rows] == [1, 3]  # windows of batches 0-1 and 2-3 (batch 4 starts a third)
    for row in rows:
        assert 0 <= float(row["perf/data_wait_fraction"]) < 1 and float(row["perf/clips_per_s"]) > 0


class Clock:
    """A settable stand-in for ``time.perf_counter``, so the arithmetic is checked exactly."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class ClockedBatches(Dataset):
    """Training batches of three clips; fetching one advances the clock by its wait."""

    def __init__(self, clock: Clock, waits: list[float]) -> None:
        self.clock, self.waits = clock, waits

    def __len__(self) -> int:
        return len(self.waits)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        self.clock.now += self.waits[index]
        return {"video": torch.zeros(3, 3, 1, 2, 2)}


class ClockedModule(LightningModule):
    """Each training step advances the clock by its time, each validation step by ``validation``."""

    def __init__(self, clock: Clock, steps: list[float], validation: float) -> None:
        super().__init__()
        self.clock, self.steps, self.validation = clock, steps, validation
        self.weight = torch.nn.Parameter(torch.zeros(()))

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        self.clock.now += self.steps[batch_idx]
        return self.weight * batch["video"].mean()

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.clock.now += self.validation

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_a_training_run_logs_the_gap_between_batches_as_wait_without_validation_and_warns_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    monkeypatch.setattr(loader_wait, "time", SimpleNamespace(perf_counter=clock))  # the monitor's clock only
    # A sized loader is not prefetched: batch i is fetched just before its on_train_batch_start.
    # Batch 0's 5 s wait is worker start-up, not counted. Window 1 (batches 0-2): 1 + 2 + 1 + 1 + 1 = 6 s, 3 s waiting.
    # Window 2 (batches 3-5) starts where window 1 ended: 0 + 1, validation after batch 3 (30 s: the clock stops),
    # then 3 + 1 + 0.5 + 0.5: 6 s, 3.5 s waiting. Nine clips a window. (A new window after each validation lost
    # every window when validation came more often than window_batches.)
    train = DataLoader(ClockedBatches(clock, waits=[5.0, 2.0, 1.0, 0.0, 3.0, 0.5]), batch_size=None)
    val = DataLoader([{"video": torch.zeros(1, 3, 1, 2, 2)}], batch_size=None)
    module = ClockedModule(clock, steps=[1.0, 1.0, 1.0, 1.0, 1.0, 0.5], validation=30.0)
    trainer = Trainer(max_epochs=1, val_check_interval=4, limit_val_batches=1, num_sanity_val_steps=0,
                      logger=CSVLogger(tmp_path), enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, accelerator="cpu",
                      callbacks=[LoaderWaitMonitor(window_batches=3, warn_fraction=0.2)])  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="vtok.training.loader_wait"):
        trainer.fit(module, train_dataloaders=train, val_dataloaders=val)
    assert clock.now == 5 + 1 + 2 + 1 + 1 + 1 + 0 + 1 + 30 + 3 + 1 + 0.5 + 0.5  # one validation, not at the epoch's end
    with open(next(tmp_path.rglob("metrics.csv"))) as file:
        rows = [row for row in csv.DictReader(file) if row.get("perf/clips_per_s")]
    windows = [(int(r["step"]), float(r["perf/data_wait_fraction"]), float(r["perf/clips_per_s"])) for r in rows]
    assert windows == [(2, 3 / 6, 9 / 6), (5, 3.5 / 6, 9 / 6)]  # exact: the CSV holds each repr
    warnings = [r.getMessage() for r in caplog.records if r.name == "vtok.training.loader_wait"]
    assert len(warnings) == 1 and "waited for data 50% of the last 3 batches" in warnings[0]  # once: not 58% too


@pytest.mark.parametrize("accumulate", [1, 2])
def test_perf_rows_share_the_x_axis_of_the_train_rows(tmp_path: Path, accumulate: int) -> None:
    """One training batch per step on both, whatever ``accumulate_batches`` (global_step counts fewer)."""
    torch.manual_seed(0)
    autoencoder = VideoAutoencoder(block_out_channels=[8, 16], latent_channels=4)
    module = AutoencoderModule(autoencoder, accumulate_batches=accumulate)
    batches = [{"video": torch.rand(1, 3, 5, 16, 16) * 2 - 1} for _ in range(8)]
    trainer = Trainer(max_steps=8 // accumulate, logger=CSVLogger(tmp_path), log_every_n_steps=2,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      accelerator="cpu", callbacks=[LoaderWaitMonitor(window_batches=2)])  # fmt: skip
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))
    with open(next(tmp_path.rglob("metrics.csv"))) as file:
        rows = list(csv.DictReader(file))
    perf = [int(row["step"]) for row in rows if row.get("perf/clips_per_s")]
    train = [int(row["step"]) for row in rows if row.get("train/loss")]
    assert perf == train == [1, 3, 5, 7]


class SlowSave(Callback):
    """Work after the monitor at every batch's end, as ModelCheckpoint's saving: advances the clock."""

    def __init__(self, clock: Clock, seconds: float) -> None:
        self.clock, self.seconds = clock, seconds

    def on_train_batch_end(self, *args: object) -> None:
        self.clock.now += self.seconds


def test_with_vtok_loaders_only_the_time_spent_fetching_counts_as_waiting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    monkeypatch.setattr(loader_wait, "time", SimpleNamespace(perf_counter=clock))
    monkeypatch.setattr(trained_state, "time", SimpleNamespace(perf_counter=clock))  # the loader's own clock
    # Batch i's fetch takes waits[i] inside the loader's next(); each step 1 s; 4 s of saving after every batch.
    # Window 1 (batches 0-1, batch 0's fetch left out): 1 + 4 + 2 + 1 = 8 s, 2 s fetching (the gap clock: 6 s).
    # Window 2 (batches 2-3): 4 + 1 + 1 + 4 + 0 + 1 = 11 s, 1 s fetching (the gap clock: 9 s).
    waits = [5.0, 2.0, 1.0, 0.0]
    train = TrainedStateLoader(ClockedBatches(clock, waits), batch_size=None, track_trained=False)
    module = ClockedModule(clock, steps=[1.0] * 4, validation=0.0)
    callbacks = [LoaderWaitMonitor(window_batches=2, warn_fraction=0.5), SlowSave(clock, 4.0)]
    trainer = Trainer(max_epochs=1, logger=CSVLogger(tmp_path), enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, accelerator="cpu", callbacks=callbacks)  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="vtok.training.loader_wait"):
        trainer.fit(module, train_dataloaders=train)
    with open(next(tmp_path.rglob("metrics.csv"))) as file:
        rows = [row for row in csv.DictReader(file) if row.get("perf/clips_per_s")]
    windows = [(int(r["step"]), float(r["perf/data_wait_fraction"]), float(r["perf/clips_per_s"])) for r in rows]
    assert windows == [(1, 2 / 8, 6 / 8), (3, 1 / 11, 6 / 11)]
    assert not [r for r in caplog.records if r.name == "vtok.training.loader_wait"], "saving is no loader bottleneck"


class SleepyBatches(Dataset):
    """In-memory batches of one 5x16x16 clip, each fetched after ``sleep`` seconds."""

    def __init__(self, count: int, sleep: float) -> None:
        self.count, self.sleep = count, sleep

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        time.sleep(self.sleep)
        return {"video": torch.zeros(1, 3, 5, 16, 16)}


@pytest.mark.parametrize("sleep", [0.0, 0.5])
def test_a_checkpoint_every_step_is_not_taken_for_waiting_for_data(tmp_path: Path, sleep: float) -> None:
    """Real clocks, so only generous bounds that hold on a loaded machine too: the gap clock took saving
    for waiting (about a quarter of the time here); time spent in the loader's next() is a few
    thousandths; a loader that really sleeps shows: at least its sleeps are counted (as a fraction, 0.075 when
    other work slowed the steps, so the bound is on the seconds)."""
    monitor = LoaderWaitMonitor(window_batches=4)
    saving = ModelCheckpoint(tmp_path / "checkpoints", filename="{step}", every_n_train_steps=1, save_top_k=-1)
    trainer = Trainer(max_steps=4, logger=False, enable_progress_bar=False, enable_model_summary=False,
                      accelerator="cpu", callbacks=[monitor, saving])  # fmt: skip
    loader = TrainedStateLoader(SleepyBatches(5, sleep), batch_size=None, track_trained=False)
    torch.manual_seed(0)
    module = AutoencoderModule(VideoAutoencoder(block_out_channels=[8, 16], latent_channels=4))
    trainer.fit(module, train_dataloaders=loader)
    assert len(list((tmp_path / "checkpoints").glob("*.ckpt"))) == 4
    fraction = monitor.last_window["perf/data_wait_fraction"]
    waited = fraction * 4 / monitor.last_window["perf/clips_per_s"]  # the window: 4 batches of one clip
    message = f"data_wait_fraction {fraction:.3f} ({waited:.2f} s) with {sleep} s per fetch"
    # batches 1-3 are fetched inside the window (batch 0 before it): at least their sleeps, however slow the steps
    assert (fraction < 0.05) if sleep == 0 else (waited >= 3 * sleep), message


class CountConversions(Callback):
    """Test-only: counts ``Tensor.item`` calls made by Lightning's code (its logging and progress-bar
    conversions, each a host-device sync for a device tensor) from the first training batch on."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count, self.active, original = 0, False, torch.Tensor.item

        def item(tensor: torch.Tensor) -> Any:
            if self.active and "lightning" in sys._getframe(1).f_code.co_filename:
                self.count += 1
            return original(tensor)

        monkeypatch.setattr(torch.Tensor, "item", item)

    def on_train_batch_start(self, *args: object) -> None:
        self.active = True

    def on_train_end(self, *args: object) -> None:
        self.active = False


@pytest.mark.parametrize("log_every", [50, 2])
def test_the_progress_bar_loss_makes_no_host_sync_between_logging_batches(
    monkeypatch: pytest.MonkeyPatch, log_every: int
) -> None:
    torch.manual_seed(0)
    module = AutoencoderModule(VideoAutoencoder(block_out_channels=[8, 16], latent_channels=4))
    batches = [{"video": torch.rand(1, 3, 5, 16, 16) * 2 - 1} for _ in range(6)]
    conversions = CountConversions(monkeypatch)
    trainer = Trainer(max_steps=6, logger=False, log_every_n_steps=log_every, enable_checkpointing=False,
                      enable_model_summary=False, accelerator="cpu", callbacks=[conversions])  # fmt: skip
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))
    if log_every > 6:
        assert conversions.count == 0, "no logging batch: nothing turned into a Python number"
        assert "loss" not in trainer.progress_bar_metrics
    else:  # the bar shows the loss of the last logging batch (batches 1, 3, 5: here the last batch)
        assert trainer.progress_bar_metrics["loss"] == pytest.approx(trainer.callback_metrics["train/loss"].item())
