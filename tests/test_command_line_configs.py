"""Config files and flags on the command line: a callbacks list replaces the one before it whole, from a file or a
flag, and config files (``--config``, ``-c``, ``--conf``) come before the flags, which win."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint

from tests.helpers import tiny_fit_args
from vtok.cli import VtokCLI, main
from vtok.training import ReconstructionPictures


def test_a_config_files_callbacks_list_replaces_the_default_list_item_for_item(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """jsonargparse merged a list as long as default.yaml's item by item: a ModelCheckpoint with a time interval
    took every_n_train_steps 50 too (refused, as Lightning allows one of them), and ReconstructionPictures took
    default.yaml's every_n_steps for its class default."""
    config = tmp_path / "timed.yaml"
    config.write_text(yaml.safe_dump({"trainer": {"callbacks": [
        {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": {"train_time_interval": "0:10:00"}},
        {"class_path": "vtok.training.ReconstructionPictures", "init_args": {"max_videos": 1}},
    ]}}))  # fmt: skip
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(config), "--print_config"])
    checkpoints, pictures = yaml.safe_load(capsys.readouterr().out)["trainer"]["callbacks"]
    assert checkpoints["init_args"]["every_n_train_steps"] is None and checkpoints["init_args"]["train_time_interval"]
    assert pictures["init_args"] == {**pictures["init_args"], "every_n_steps": 100, "max_videos": 1}
    with pytest.raises(SystemExit):  # a flag still adds to the config's list
        main(["fit", "--config", str(config), "--trainer.callbacks+=lightning.pytorch.callbacks.LearningRateMonitor",
              "--print_config"])  # fmt: skip
    assert len(yaml.safe_load(capsys.readouterr().out)["trainer"]["callbacks"]) == 3


def test_a_callbacks_list_flag_replaces_the_list_whole_and_an_abbreviated_config_comes_before_the_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The same list given as --trainer.callbacks was still merged item by item (every_n_train_steps 50 beside a
    time interval: refused); `--conf FILE` (argparse's abbreviation) passed the rewrite by, undoing the flags before it.
    A callback's own error was jsonargparse's 13-line union report: now its one line."""
    callbacks = json.dumps([
        {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": {"train_time_interval": "0:10:00"}},
        {"class_path": "vtok.training.ReconstructionPictures", "init_args": {"max_videos": 1}},
    ])  # fmt: skip
    for arguments in (["--trainer.callbacks", callbacks], [f"--trainer.callbacks={callbacks}"]):
        with pytest.raises(SystemExit):
            main(["fit", *arguments, "--print_config"])
        checkpoints, pictures = yaml.safe_load(capsys.readouterr().out)["trainer"]["callbacks"]
        assert checkpoints["init_args"]["every_n_train_steps"] is None and pictures["init_args"]["every_n_steps"] == 100
    config = tmp_path / "size.yaml"
    config.write_text("data:\n  size: 48\n")
    with pytest.raises(SystemExit):
        main(["fit", "--data.size", "32", "--conf", str(config), "--print_config"])
    assert yaml.safe_load(capsys.readouterr().out)["data"]["size"] == 32
    with pytest.raises(SystemExit):
        main(tiny_fit_args(tmp_path, 1, "--trainer.callbacks+=vtok.training.ReconstructionPictures",
                           "--trainer.callbacks.every_n_steps", "-5"))  # fmt: skip
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "vtok: error: ReconstructionPictures every_n_steps must be at least 1, got -5 (drop the callback for none)"
    )


def test_a_program_building_the_cli_itself_gets_the_config_files_callbacks_whole(tmp_path: Path) -> None:
    """The rewrite lived in ``vtok.cli.main``: ``VtokCLI(args=..., run=False)``, as a script builds it, merged a
    preset's callbacks item by item into default.yaml's."""
    config = tmp_path / "timed.yaml"
    config.write_text(yaml.safe_dump({"trainer": {"callbacks": [
        {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": {"train_time_interval": "0:10:00"}},
        {"class_path": "vtok.training.ReconstructionPictures", "init_args": {"max_videos": 1}},
    ]}}))  # fmt: skip
    folder = str(tmp_path / "run")
    cli = VtokCLI(args=["--config", str(config), "--trainer.logger", "false", "--trainer.default_root_dir", folder], run=False)
    checkpoints = next(c for c in cli.trainer.callbacks if isinstance(c, ModelCheckpoint))
    pictures = next(c for c in cli.trainer.callbacks if isinstance(c, ReconstructionPictures))
    assert checkpoints._every_n_train_steps == 0 and checkpoints._train_time_interval is not None
    assert (pictures.every_n_steps, pictures.max_videos) == (100, 1)
