"""A run that trains on images beside its clips: resumed from a save on an epoch's last batch, and validated."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from torchvision.io import write_png

from tests.helpers import csv_logger, metric_column, tiny_fit_args
from vtok.cli import main


def test_a_resume_from_a_save_on_an_epochs_last_batch_trains_as_a_run_never_stopped(tmp_path: Path) -> None:
    """Lightning runs the rest of an epoch resumed after its last batch. With clips alone that rest is empty; with
    images its combined loader restarted the loader not yet run out and trained on into a new pass (2 batches
    here), whose rest the next epoch's fresh passes then dropped: other clips and other weights than the unbroken run."""
    images = tmp_path / "images"
    images.mkdir()
    for index in range(10):  # 5 batches of 2 against the clips' 3: an epoch is 5 batches
        write_png(torch.full((3, 32, 32), 20 * index, dtype=torch.uint8), str(images / f"{index}.png"))
    config = tmp_path / "every5.yaml"
    config.write_text(
        "trainer:\n  callbacks:\n    - class_path: lightning.pytorch.callbacks.ModelCheckpoint\n      init_args:\n"
        "        filename: '{step}'\n        every_n_train_steps: 5\n        save_last: true\n        save_top_k: -1\n"
    )
    flags = ["--trainer.limit_val_batches", "0", "--data.image_path", str(images),
             "--data.image_batch_size", "2", "--trainer.callbacks+", "tests.helpers.RecordSamples"]  # fmt: skip

    def fit(run: str, *extra: str) -> dict:
        main(tiny_fit_args(tmp_path, 8, *flags, "--trainer.callbacks.folder", str(tmp_path / run), *csv_logger(tmp_path, run),
                           *extra, run=run, config=config))  # fmt: skip
        return json.loads((tmp_path / run / "rank0.json").read_text())

    straight = fit("straight")
    (tmp_path / "resumed" / "checkpoints").mkdir(parents=True)
    saved = shutil.copy(tmp_path / "straight" / "checkpoints" / "step=5.ckpt", tmp_path / "resumed" / "checkpoints")
    resumed = fit("resumed", "--ckpt_path", str(saved))
    assert [(row["step"], row["lightning_epoch"], row["index"]) for row in resumed["rows"]] == [
        (row["step"], row["lightning_epoch"], row["index"]) for row in straight["rows"][5:]
    ], "the clips and the step count go on as in the unbroken run"
    assert resumed["weights"] == straight["weights"], "and so do the images: the weights end alike"
    saved = [torch.load(tmp_path / run / "checkpoints" / "last.ckpt", weights_only=True) for run in ("straight", "resumed")]
    assert saved[0]["loops"]["fit_loop"] == saved[1]["loops"]["fit_loop"]
    # epoch 0's data counts went with the stopped run: the skipped rest logs no false 0 for them
    logged = [metric_column(tmp_path / run, "data/unusable_files") for run in ("straight", "resumed")]
    assert len(logged[0]) == 2 and logged[1] == logged[0][1:]


def test_validate_does_not_read_the_training_images(tmp_path: Path) -> None:
    """vtok validate listed and probed data.image_path, which validation never reads: a run's config whose images
    had moved could not be validated at all."""
    images = tmp_path / "images"
    images.mkdir()
    for index in range(2):
        write_png(torch.full((3, 32, 32), 50 * index, dtype=torch.uint8), str(images / f"{index}.png"))
    flags = ["--trainer.logger", "false", "--data.image_path", str(images), "--data.image_batch_size", "2"]
    main(tiny_fit_args(tmp_path, 1, *flags))
    shutil.rmtree(images)  # moved, or on a disk not mounted where the run is validated
    checkpoint = tmp_path / "run" / "checkpoints" / "last.ckpt"
    main(["validate", "--config", str(tmp_path / "run" / "config.yaml"), "--ckpt_path", str(checkpoint),
          *csv_logger(tmp_path, "validated")])  # fmt: skip
    assert len(metric_column(tmp_path / "validated", "val/psnr")) == 1
