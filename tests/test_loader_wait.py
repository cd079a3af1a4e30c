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
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader

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


def test_wait_is_the_gap_between_batches_without_validation(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    monkeypatch.setattr(loader_wait.time, "perf_counter", clock)
    written: list[dict[str, float]] = []
    trainer = SimpleNamespace(is_global_zero=True, global_step=0,
                              loggers=[SimpleNamespace(log_metrics=lambda metrics, step: written.append(metrics))])  # fmt: skip
    monitor = LoaderWaitMonitor(window_batches=2, warn_fraction=0.2)
    batch = {"video": torch.zeros(3, 3, 1, 2, 2)}

    def run_batch(wait: float, step: float) -> None:
        clock.now += wait
        monitor.on_train_batch_start(trainer, None, batch, 0)
        clock.now += step
        monitor.on_train_batch_end(trainer, None, None, batch, 0)

    with caplog.at_level(logging.WARNING, logger="vtok.training.loader_wait"):
        run_batch(wait=5.0, step=1.0)  # worker start-up before the first batch: not counted
        run_batch(wait=1.0, step=1.0)  # window 1: 3 s, 1 s of it waiting, 6 clips
        monitor.on_validation_start(trainer, None)
        clock.now += 30.0  # validation, then the next batch starts a new window
        run_batch(wait=0.0, step=1.0)
        run_batch(wait=0.0, step=1.0)  # window 2: 2 s, no wait
    assert written == [{"perf/data_wait_fraction": pytest.approx(1 / 3), "perf/clips_per_s": pytest.approx(2.0)},
                       {"perf/data_wait_fraction": 0.0, "perf/clips_per_s": pytest.approx(3.0)}]  # fmt: skip
    assert len([r for r in caplog.records if "waited for data 33%" in r.getMessage()]) == 1
