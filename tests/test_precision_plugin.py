"""A precision set through ``trainer.plugins`` (a Lightning precision plugin) instead of ``trainer.precision``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.helpers import tiny_fit_args
from vtok.cli import main


def _plugin(class_name: str, **init_args: str) -> str:
    return json.dumps({"class_path": f"lightning.pytorch.plugins.precision.{class_name}", "init_args": init_args})


def test_a_precision_plugin_is_used_and_checked_like_trainer_precision(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """vtok filled in trainer.precision 32-true beside the plugin, and Lightning refused the pair ("Received both
    precision=32-true and plugins=..."), a precision the user never set; the plugin's own went unchecked."""
    quiet = ["--trainer.logger", "false", "--trainer.limit_val_batches", "0"]
    main(tiny_fit_args(tmp_path, 1, *quiet, "--trainer.plugins", _plugin("Precision")))
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["trainer"]["precision"] is None
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:  # bf16-true with an EMA copy, refused as trainer.precision is
        main(tiny_fit_args(tmp_path, 1, *quiet, "--trainer.plugins", _plugin("HalfPrecision", precision="bf16-true"), run="b"))
    assert exit_info.value.code == 2
    assert "trainer.precision=bf16-true keeps the EMA copy in bfloat16" in capsys.readouterr().err
