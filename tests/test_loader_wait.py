"""The loader-wait monitor: every window it logs the fraction of training time spent waiting for
the next batch and the clips per second, leaves validation out, and warns once when data is the
bottleneck."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, Dataset

from vtok import VideoAutoencoder
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
    assert [int(row["step"]) for row in rows] == [2, 4]  # windows of batches 1-2 and 3-4 (batch 5 starts a third)
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
    # Batch 0's 5 s wait is worker start-up, not counted. Window 1 (batches 0-1): 1 + 2 + 1 = 4 s, 2 s waiting.
    # Window 2 (batches 2-3) starts where window 1 ended: 1 + 1 + 0 + 1 = 3 s, 1 s waiting.
    # Validation after batch 3 (30 s), then batch 4's 3 s fetch: both left out, batch 4 starts window 3.
    # Window 3 (batches 4-5): 1 + 0.5 + 0.5 = 2 s, 0.5 s waiting. Six clips a window.
    train = DataLoader(ClockedBatches(clock, waits=[5.0, 2.0, 1.0, 0.0, 3.0, 0.5]), batch_size=None)
    val = DataLoader([{"video": torch.zeros(1, 3, 1, 2, 2)}], batch_size=None)
    module = ClockedModule(clock, steps=[1.0, 1.0, 1.0, 1.0, 1.0, 0.5], validation=30.0)
    trainer = Trainer(max_epochs=1, val_check_interval=4, limit_val_batches=1, num_sanity_val_steps=0,
                      logger=CSVLogger(tmp_path), enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, accelerator="cpu",
                      callbacks=[LoaderWaitMonitor(window_batches=2, warn_fraction=0.2)])  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="vtok.training.loader_wait"):
        trainer.fit(module, train_dataloaders=train, val_dataloaders=val)
    assert clock.now == 5 + 1 + 2 + 1 + 1 + 1 + 0 + 1 + 30 + 3 + 1 + 0.5 + 0.5  # one validation, not at the epoch's end
    with open(next(tmp_path.rglob("metrics.csv"))) as file:
        rows = [row for row in csv.DictReader(file) if row.get("perf/clips_per_s")]
    windows = [(int(r["step"]), float(r["perf/data_wait_fraction"]), float(r["perf/clips_per_s"])) for r in rows]
    assert windows == [(2, 2 / 4, 6 / 4), (4, 1 / 3, 6 / 3), (6, 0.5 / 2, 6 / 2)]  # exact: the CSV holds each repr
    warnings = [r.getMessage() for r in caplog.records if r.name == "vtok.training.loader_wait"]
    assert len(warnings) == 1 and "waited for data 50% of the last 2 batches" in warnings[0]  # once: not 33%, 25%
