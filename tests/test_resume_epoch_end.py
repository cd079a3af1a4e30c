"""A run resumed from a checkpoint saved after its epoch ended goes on as a run never stopped: the next epoch
under the next number, with the samplers' next pass (its clips, crops and order). Loaders made anew each epoch
go on with the next pass too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.helpers import tiny_fit_args
from vtok.cli import main


def _fit(tmp_path: Path, run: str, steps: int, *extra: str) -> list[tuple]:
    """Fits (again, into ``run``) and returns each batch's (step, sampler's pass, Lightning's epoch, clips)."""
    record = tmp_path / run / f"record{steps}"
    flags = ["--trainer.logger", "false",
             "--trainer.callbacks+", "tests.helpers.RecordSamples", "--trainer.callbacks.folder", str(record)]  # fmt: skip
    main(tiny_fit_args(tmp_path, steps, *flags, *extra, run=run))
    rows = json.loads((record / "rank0.json").read_text())["rows"]
    return [(row["step"], row["epoch"], row["lightning_epoch"], row["index"]) for row in rows]


def _assert_alike(tmp_path: Path) -> None:
    straight, resumed = (torch.load(tmp_path / run / "checkpoints" / "last.ckpt", weights_only=True)
                         for run in ("straight", "resumed"))  # fmt: skip
    assert straight["loops"]["fit_loop"] == resumed["loops"]["fit_loop"], "the same epochs, batches and validations"
    different = [key for key in straight["state_dict"] if not torch.equal(straight["state_dict"][key], resumed["state_dict"][key])]
    assert not different, f"resumed weights differ: {different[:5]}"


@pytest.mark.parametrize(
    "limit, validate", [("2", "1"), ("2", "5"), ("1.0", "1")],
    ids=["limited_epoch_validated", "limited_epoch_not_validated", "whole_epoch_validated"],
)  # fmt: skip
def test_a_max_steps_stop_on_an_epochs_last_batch_resumes_in_the_next_epoch(tmp_path: Path, limit: str, validate: str) -> None:
    """6 clips in batches of 2, 2 batches an epoch (limit_train_batches) or 3: the first run stops on epoch 0's last
    batch. Lightning restored epoch 0's batch count into epoch 1, which ended at once (an empty epoch counted: the
    epoch one too high from there on) or, with the loader not run out and no validation there, trained epoch 0's
    left-over batch as epoch 1."""
    flags = ["--trainer.limit_train_batches", limit, "--trainer.check_val_every_n_epoch", validate]
    straight = _fit(tmp_path, "straight", 6, *flags)
    stop = 2 if limit == "2" else 3
    _fit(tmp_path, "resumed", stop, *flags)
    resumed = _fit(tmp_path, "resumed", 6, *flags, "--ckpt_path", "last")
    assert resumed == straight[stop:], "each batch as in the unbroken run, under the same epoch"
    _assert_alike(tmp_path)


def test_a_run_by_epochs_resumed_after_its_last_epoch_draws_the_next_pass(tmp_path: Path) -> None:
    """Lightning restores a checkpoint of an epoch that ended without the loaders' places: the sampler started again
    at pass 0, and the resumed epochs trained epoch 0's clips, crops and order again."""
    flags = ["--trainer.check_val_every_n_epoch", "1"]
    straight = _fit(tmp_path, "straight", -1, *flags, "--trainer.max_epochs", "3")
    _fit(tmp_path, "resumed", -1, *flags, "--trainer.max_epochs", "1")
    resumed = _fit(tmp_path, "resumed", -1, *flags, "--trainer.max_epochs", "3", "--ckpt_path", "last")
    assert [row[1] for row in resumed] == [1, 1, 1, 2, 2, 2], "the sampler's passes follow on"
    assert resumed == straight[3:]
    _assert_alike(tmp_path)


def test_a_stream_resumed_after_an_ended_epoch_draws_the_next_pass(tmp_path: Path, shard_dir: Path) -> None:
    """The same for shards: the stream's pass numbers come back with the data module as the sampler's do."""
    flags = ["--data.shards", str(shard_dir / "shards"), "--trainer.limit_val_batches", "0", "--trainer.max_steps", "-1"]
    straight = _fit(tmp_path, "straight", -1, *flags, "--trainer.max_epochs", "3")
    _fit(tmp_path, "resumed", -1, *flags, "--trainer.max_epochs", "1")
    resumed = _fit(tmp_path, "resumed", -1, *flags, "--trainer.max_epochs", "3", "--ckpt_path", "last")
    assert {row[1] for row in resumed} == {1, 2}
    assert resumed == straight[len(straight) - len(resumed):]
    _assert_alike(tmp_path)


def test_loaders_made_anew_each_epoch_draw_the_next_pass(tmp_path: Path) -> None:
    """With trainer.reload_dataloaders_every_n_epochs each new sampler started at pass 0: every epoch drew epoch 0's
    clips, crops and order."""
    rows = _fit(tmp_path, "run", 9, "--trainer.reload_dataloaders_every_n_epochs", "1")
    assert [row[1] for row in rows] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert rows[3][3] != rows[0][3], "another order"
