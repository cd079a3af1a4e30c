"""Every YAML under configs/ parses and instantiates; invalid settings fail before training, naming the fix."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

import pytest

from vtok import VideoAutoencoder
from vtok.cli import CONFIG_DIR, DEFAULT_CONFIG, VtokCLI, main
from vtok.data.datamodule import VideoDataModule
from vtok.training import AutoencoderModule

ROOT = Path(__file__).resolve().parents[1]
PRESETS = sorted(p for p in CONFIG_DIR.glob("*.yaml"))


def test_the_packaged_default_is_the_readable_one() -> None:
    assert DEFAULT_CONFIG.is_file()
    assert filecmp.cmp(ROOT / "configs" / "default.yaml", DEFAULT_CONFIG, shallow=False)
    assert {p.name for p in PRESETS} >= {"default.yaml", "kl_4x8x8.yaml", "kl_8x16x16.yaml"}


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_every_preset_parses_and_instantiates(preset: Path, tmp_path: Path, vgg_weights: Path) -> None:
    cli = VtokCLI(
        args=["--config", str(preset), "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path)],
        run=False,
    )
    assert isinstance(cli.model, AutoencoderModule) and isinstance(cli.datamodule, VideoDataModule)
    autoencoder = cli.model.autoencoder
    assert isinstance(autoencoder, VideoAutoencoder)
    if preset.stem != "default":
        assert f"_{autoencoder.compression}" in preset.stem, "a preset's name states its compression"
        family = {"ltx": "kl"}.get(preset.stem.split("_")[0], preset.stem.split("_")[0])  # ltx_: LTX-Video's continuous VAE
        assert family == autoencoder.config.bottleneck, "and its bottleneck"
        assert cli.datamodule.num_frames == 17 and cli.datamodule.size == (256, 256)
    autoencoder.compression.check_clip(cli.datamodule.num_frames, *cli.datamodule.size)


def _fit_error(capsys: pytest.CaptureFixture, *overrides: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--trainer.logger", "false", *overrides])
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_invalid_settings_fail_at_parse_time_naming_the_fix(capsys: pytest.CaptureFixture) -> None:
    assert "frames=10 is not 1 + k*4; use 9 or 13" in _fit_error(capsys, "--data.num_frames", "10")
    assert "height=60 is not a multiple of 8; use 56 or 64" in _fit_error(capsys, "--data.size", "60")
    assert "spatial_compression" in _fit_error(capsys, "--model.autoencoder.spatial_compression", "12")
    assert "bf16-mixed" in _fit_error(capsys, "--trainer.precision", "16-mixed")
    message = _fit_error(capsys, "--model.autoencoder.block_out_channels", "[12, 20]")
    assert "set resample_shortcut=false" in message and "Traceback" not in message


def test_missing_lpips_weights_stop_fit_at_setup(capsys: pytest.CaptureFixture, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    message = _fit_error(capsys, "--model.loss.perceptual_weight", "0.1", "--trainer.default_root_dir", str(tmp_path))
    assert "vgg16-397923af.pth" in message and "perceptual_weight 0" in message and "Traceback" not in message


def test_missing_data_is_a_one_line_error(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    message = _fit_error(capsys, "--data.path", str(tmp_path / "nowhere"), "--trainer.default_root_dir", str(tmp_path))
    assert message.startswith("vtok: error:") and "nowhere" in message and "Traceback" not in message


def test_importing_from_the_repository_root_shadows_nothing() -> None:
    code = "import vtok, lightning, diffusers; from diffusers import AutoencoderKL; print(vtok.__file__)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).is_relative_to(ROOT / "vtok")
    for shadowing in ("tokenizers", "data", "vae"):
        assert not (ROOT / shadowing / "__init__.py").exists()
