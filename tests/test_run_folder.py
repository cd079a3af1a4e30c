"""Where a resume goes on and what a refused fit advises, from the run folder's files alone."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from jsonargparse import Namespace

from vtok.run_folder import (
    mark_the_launch_start,
    refuse_a_fresh_run_over_an_old_one,
    refuse_a_second_fit_in_the_job_folder,
    restart_checkpoint,
    resumed_run_folder,
)
from vtok.usage_error import UsageError


def test_a_checkpoint_named_from_inside_its_folder_resumes_in_its_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--ckpt_path last.ckpt` given inside <run>/checkpoints had the parent ".": no run was found, and the resume went
    into the folder its config recorded (the original run, for a copy) or a new runs/<date-time> inside checkpoints/."""
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "run" / "checkpoints")
    assert resumed_run_folder({"ckpt_path": "last.ckpt"}) == str(tmp_path / "run")


def test_a_refused_fit_advises_the_newest_checkpoint_not_an_older_last_ckpt(tmp_path: Path) -> None:
    """After a SIGTERM stop, last-signal-step=N.ckpt is newer than last.ckpt: resuming from last.ckpt, as advised,
    threw away the steps the signal's save was made to keep."""
    checkpoints = tmp_path / "run" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "last.ckpt").write_bytes(b"")
    os.utime(checkpoints / "last.ckpt", (1, 1))
    (checkpoints / "last-signal-step=3.ckpt").write_bytes(b"")
    advice = re.escape(f"--ckpt_path {checkpoints / 'last-signal-step=3.ckpt'}")
    config = Namespace(ckpt_path=None, trainer=Namespace(default_root_dir=str(tmp_path / "run")))
    with pytest.raises(UsageError, match=f"already holds a run's checkpoints .*resume it with {advice}, or"):
        refuse_a_fresh_run_over_an_old_one(config, under_a_launch=False)
    with pytest.raises(UsageError, match=f"or resume that run with {advice}$"):
        refuse_a_second_fit_in_the_job_folder(str(tmp_path / "run"), "fit", "slurm")


def test_last_before_the_first_save_goes_on_in_the_folder_of_the_runs_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run given a relative --trainer.default_root_dir and stopped before its first checkpoint, resumed with
    `--config <run>/config.yaml --ckpt_path last` from another working directory, began afresh in a new folder of
    that name under the other directory: it starts again in its own folder."""
    from vtok.run_folder import follow_the_resumed_run

    (tmp_path / "work" / "run").mkdir(parents=True)
    (tmp_path / "work" / "run" / "config.yaml").write_text("trainer:\n  default_root_dir: run\n")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    config = Namespace(config=[str(tmp_path / "work" / "run" / "config.yaml")], ckpt_path="last",
                       trainer=Namespace(default_root_dir="run"))  # fmt: skip
    assert follow_the_resumed_run(config, folder_given_now=False) == str(tmp_path / "work" / "run")
    assert follow_the_resumed_run(config, folder_given_now=True) is None, "a folder given now wins"
    config.ckpt_path = None
    assert follow_the_resumed_run(config, folder_given_now=False) is None, "a rerun without --ckpt_path is a new run"
    # a config file of the user's own that happens to be named config.yaml: its run is in the folder it records
    (tmp_path / "experiments" / "x").mkdir(parents=True)
    (tmp_path / "experiments" / "x" / "config.yaml").write_text("trainer:\n  default_root_dir: runs/x\n")
    own = Namespace(config=[str(tmp_path / "experiments" / "x" / "config.yaml")], ckpt_path="last",
                    trainer=Namespace(default_root_dir="runs/x"))  # fmt: skip
    assert follow_the_resumed_run(own, folder_given_now=False) is None


def test_a_moved_run_that_recorded_its_folder_under_home_is_followed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """vtok reads `~/old` as the home folder's: the moved run's config.yaml, which says `~/old`, was not taken for the
    run's own record, and the resume went back to the old folder."""
    from vtok.run_folder import follow_the_resumed_run

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "moved" / "checkpoints").mkdir(parents=True)
    (tmp_path / "moved" / "config.yaml").write_text("trainer:\n  default_root_dir: ~/old\n")
    config = Namespace(config=[str(tmp_path / "moved" / "config.yaml")], ckpt_path="last",
                       trainer=Namespace(default_root_dir=str(tmp_path / "home" / "old")))  # fmt: skip  (as vtok reads it)
    assert follow_the_resumed_run(config, folder_given_now=False) == str(tmp_path / "moved")


def test_a_launch_started_from_lightnings_hpc_keyword_restarts_from_the_newest_checkpoint(tmp_path: Path) -> None:
    """`--ckpt_path hpc` was recorded as the file `<cwd>/hpc`, which a restart before the first save then asked for."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "hpc_ckpt_1.ckpt").write_bytes(b"")
    mark_the_launch_start(run, str(tmp_path / "older.ckpt"))  # an earlier job's start
    mark_the_launch_start(run, "hpc")
    assert restart_checkpoint(run, "hpc") == str(run / "hpc_ckpt_1.ckpt")
