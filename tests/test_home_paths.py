"""Paths written ``~/...`` where no shell expands them (a config file, ``--flag=~/x``) mean the home folder,
in every command: a literal ``~`` folder under the working directory is never made."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from tests.helpers import tiny_fit_args
from vtok.cli import main
from vtok.losses.perceptual import load_lpips_vgg


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home folder of its own, and a working directory elsewhere that must stay empty."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    return tmp_path / "home"


def test_a_fresh_run_into_a_home_folder_holding_checkpoints_is_refused(home: Path, capsys: pytest.CaptureFixture) -> None:
    """Lightning reads `~/run` as the home folder, vtok's checks read it as given: the refusal to start afresh over
    a run's checkpoints was passed by, and a literal `~/run` folder appeared in the working directory."""
    (home / "run" / "checkpoints").mkdir(parents=True)
    (home / "run" / "checkpoints" / "last.ckpt").write_bytes(b"")
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--trainer.logger", "false", "--trainer.default_root_dir=~/run"])
    assert exit_info.value.code == 2 and "already holds a run's checkpoints" in capsys.readouterr().err
    assert not list(Path.cwd().iterdir())


def test_a_run_into_a_home_folder_records_it_as_given_and_resumes_there(home: Path, tmp_path: Path) -> None:
    """config.yaml recorded the expanded folder (`/home/me/run`): not as given, and not this run's on another machine."""
    main(tiny_fit_args(tmp_path, 1, "--trainer.logger", "false", "--trainer.default_root_dir=~/run"))
    config = home / "run" / "config.yaml"
    assert yaml.safe_load(config.read_text())["trainer"]["default_root_dir"] == "~/run"
    main(["fit", "--config", str(config), "--ckpt_path", "last", "--trainer.max_steps", "2"])
    assert torch.load(home / "run" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2
    assert yaml.safe_load(config.read_text())["trainer"]["default_root_dir"] == "~/run"
    assert not list(Path.cwd().iterdir())


def test_the_lpips_backbone_under_home_is_found(home: Path, vgg_weights: Path) -> None:
    """`model.loss.perceptual_backbone: ~/models/vgg16.pth` was reported missing, with advice to put it there."""
    os.link(vgg_weights, home / "vgg16.pth")
    assert load_lpips_vgg("~/vgg16.pth") is not None


def test_the_subcommands_read_home_in_their_paths(
    home: Path, fsq_run: dict[str, Path], video_folder: Path, vgg_weights: Path
) -> None:
    (home / "videos").symlink_to(video_folder)
    os.link(vgg_weights, home / "vgg16.pth")
    shutil.copy(fsq_run["checkpoint"], home / "last.ckpt")
    main(["export", "--ckpt=~/last.ckpt", "--out=~/export"])
    main(["prepare", "--data=~/videos", "--out=~/prepared", "--workers", "0", "--no-progress"])
    main(["tokenize", "--model=~/export", "--data=~/prepared/manifest.jsonl", "--out=~/tokens", "--frames", "5",
          "--size", "32"])  # fmt: skip
    token_file = json.loads((home / "tokens" / "index.jsonl").read_text().splitlines()[0])["tokens"]
    main(["detokenize", "--model=~/export", f"--tokens=~/tokens/{token_file}", "--out=~/clip.mp4"])
    main(["evaluate", "--model=~/export", "--data=~/videos", "--out=~/eval", "--max-videos", "1", "--pictures", "0",
          "--lpips-weights=~/vgg16.pth"])  # fmt: skip
    assert (home / "export" / "config.json").is_file() and (home / "clip.mp4").is_file()
    assert json.loads((home / "eval" / "metrics.json").read_text())["lpips"] is not None
    assert not list(Path.cwd().iterdir()), "no literal ~ folder in the working directory"
