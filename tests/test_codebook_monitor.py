"""CodebookMonitor in real runs: when each window's usage is logged, and the window open at a checkpoint."""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from tests.helpers import csv_logger, tiny_fit_args
from vtok.cli import main

FSQ = ["--model.autoencoder.bottleneck", "fsq", "--model.autoencoder.fsq_levels", "[8,5,5,5]"]


def logged_usage(run: Path) -> dict[int, float]:
    """0-based step -> codebook/usage, over every metrics.csv of the run (a resume writes another)."""
    usage: dict[int, float] = {}
    for metrics in sorted(run.rglob("metrics.csv")):
        with metrics.open() as handle:
            rows = [row for row in csv.DictReader(handle) if row.get("codebook/usage")]
        usage.update({int(row["step"]): float(row["codebook/usage"]) for row in rows})
    return usage


def test_codebook_usage_is_logged_at_the_batch_that_ends_its_window(tmp_path: Path) -> None:
    """A window of 3 batches with the loggers writing every 2: each window's usage at its own last
    batch (Lightning's own logging from a callback would write it late, again, or never)."""
    main(tiny_fit_args(tmp_path, 9, *FSQ,
                       "--trainer.callbacks+", "vtok.training.CodebookMonitor", "--trainer.callbacks.window_steps", "3",
                       "--trainer.limit_val_batches", "0", *csv_logger(tmp_path), "--trainer.log_every_n_steps", "2"))  # fmt: skip
    usage = logged_usage(tmp_path / "run")
    assert sorted(usage) == [2, 5, 8], "batches 3, 6 and 9 (0-based steps)"
    assert all(0 < value <= 1 for value in usage.values())


def test_a_resumed_run_logs_the_windows_of_an_unbroken_one(tmp_path: Path) -> None:
    """The window open at a checkpoint is saved with it: resumed from step 6 with windows of 4 batches, the
    monitor logged at steps 4 and 10 only (the 2 batches before the stop dropped, every later window shifted)."""
    window = ["--trainer.callbacks+", "vtok.training.CodebookMonitor", "--trainer.callbacks.window_steps", "4",
              "--trainer.limit_val_batches", "0"]  # fmt: skip
    main(tiny_fit_args(tmp_path, 12, *FSQ, *window, *csv_logger(tmp_path, "unbroken"), run="unbroken"))
    main(tiny_fit_args(tmp_path, 6, *FSQ, *window, *csv_logger(tmp_path, "resumed"), run="resumed"))
    main(tiny_fit_args(tmp_path, 12, *FSQ, *window, *csv_logger(tmp_path, "resumed"), "--ckpt_path", "last", run="resumed"))
    last = [tmp_path / run / "checkpoints" / "last.ckpt" for run in ("unbroken", "resumed")]
    weights = [torch.load(path, weights_only=True)["state_dict"] for path in last]
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0]), "the same training"
    unbroken = logged_usage(tmp_path / "unbroken")
    assert sorted(unbroken) == [3, 7, 11] and logged_usage(tmp_path / "resumed") == unbroken
