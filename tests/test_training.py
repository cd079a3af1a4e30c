"""Training through the real entry points: the loss falls, checkpoints and pictures are written."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch

from vtok.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--model.autoencoder.block_out_channels", "[16, 32]",
    "--model.autoencoder.latent_channels", "8",
    "--data.num_frames", "5",
    "--data.size", "32",
    "--data.synthetic_videos", "8",
    "--data.val_fraction", "0.25",
    "--data.num_workers", "0",
]  # fmt: skip


def _column(metrics_csv: Path, name: str) -> list[float]:
    with metrics_csv.open() as handle:
        return [float(row[name]) for row in csv.DictReader(handle) if row.get(name)]


def test_fit_lowers_the_loss_and_writes_checkpoints_and_pictures(tmp_path: Path) -> None:
    main(
        [
            "fit",
            *TINY,
            "--data.synthetic_dir", str(tmp_path / "clips"),
            "--trainer.default_root_dir", str(tmp_path / "run"),
            "--trainer.max_steps", "40",
            "--trainer.log_every_n_steps", "1",
            "--trainer.check_val_every_n_epoch", "4",
            "--trainer.enable_progress_bar", "false",
            "--trainer.logger", "lightning.pytorch.loggers.CSVLogger",
            "--trainer.logger.save_dir", str(tmp_path / "run"),
            "--model.optimizer.lr", "3e-4",
        ]  # fmt: skip
    )
    metrics = next((tmp_path / "run").rglob("metrics.csv"))
    l1 = _column(metrics, "train/l1")
    assert len(l1) == 40
    first, last = sum(l1[:10]) / 10, sum(l1[-10:]) / 10
    assert last < 0.9 * first, f"L1 did not fall: {first:.3f} over the first 10 steps, {last:.3f} over the last 10"
    assert _column(metrics, "val/psnr"), "validation ran and logged PSNR"
    checkpoints = {p.name for p in (tmp_path / "run" / "checkpoints").glob("*.ckpt")}
    assert "last.ckpt" in checkpoints
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["vtok"]["autoencoder_config"]["block_out_channels"] == [16, 32]
    assert checkpoint["vtok"]["batch_step"] == 40
    pictures = sorted((tmp_path / "run" / "reconstructions").glob("*.png"))
    assert [p.name for p in pictures] == ["step_0000000.png", "step_0000039.png"]
    assert list((tmp_path / "run").rglob("config.yaml")), "the resolved config is saved with the run"


def test_console_script_trains_with_offline_wandb(tmp_path: Path) -> None:
    vtok = shutil.which("vtok") or [sys.executable, str(ROOT / "train.py")]
    command = [vtok] if isinstance(vtok, str) else vtok
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env["WANDB_SILENT"] = "true"
    result = subprocess.run(
        [*command, "fit", *TINY, "--data.synthetic_dir", str(tmp_path / "clips"),
         "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.max_steps", "4"],  # fmt: skip
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*")), "wandb logs offline into the run folder"
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    assert not (tmp_path / "wandb").exists()


def test_train_py_is_the_same_entry_point(tmp_path: Path) -> None:
    def printed(command: list[str]) -> str:
        result = subprocess.run([*command, "fit", "--print_config"], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stdout

    assert printed([sys.executable, "train.py"]) == printed([sys.executable, "-m", "vtok.cli"])
