"""A CogVideoX prior reconstructs an odd number of latent frames only (``T = 1 + 8k`` at its temporal factor 4):
diffusers' decoder takes latent frames in pairs after the first, and doubled every frame of an even count."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKLCogVideoX

from vtok.cli import main
from vtok.commands.protocol import add_protocol_arguments, resolve_protocol
from vtok.export import export_metadata
from vtok.vae.priors import autoencoder_from_diffusers


def _tiny_cogvideox(folder: Path) -> Path:
    torch.manual_seed(0)
    AutoencoderKLCogVideoX(
        down_block_types=("CogVideoXDownBlock3D",) * 4, up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8), latent_channels=4, layers_per_block=1, norm_num_groups=2,
    ).save_pretrained(folder)  # fmt: skip
    return folder


def test_a_cogvideox_prior_takes_1_plus_8k_frames_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """It took every 1 + 4k: 5 frames encoded to 2 latent frames, decoded to 8 (the fit failed in its loss)."""
    prior = _tiny_cogvideox(tmp_path / "prior")
    model = autoencoder_from_diffusers(str(prior), bottleneck="fsq", fsq_levels=[8, 5, 5]).eval()
    assert (str(model.compression), model.frame_multiple) == ("4x8x8", 8)
    with torch.inference_mode():
        for frames in (9, 17):
            assert model.decode(model.encode(torch.rand(1, 3, frames, 16, 16) * 2 - 1)).shape[2] == frames
        for frames in (5, 6):  # 6 was told to use 5 (the compression's 1 + 4k), which the model then refused
            refused = rf"frames={frames}: this model reconstructs T = 1 \+ k\*8 frames \(its AutoencoderKLCogVideoX .*use 1 or 9"
            with pytest.raises(ValueError, match=refused):
                model.encode(torch.rand(1, 3, frames, 16, 16) * 2 - 1)
            flags = argparse.ArgumentParser()
            add_protocol_arguments(flags)  # vtok tokenize's and export --latent-stats' clip
            with pytest.raises(ValueError, match=refused):
                resolve_protocol(flags.parse_args(["--frames", str(frames), "--size", "16"]), model, None)
        with pytest.raises(ValueError, match="decodes an odd number of latent frames, got 2"):
            model.decode(model.encode(torch.rand(1, 3, 9, 16, 16) * 2 - 1)[:, :, :2])
    assert export_metadata(model, {}, use_ema=False)["_vtok_frame_rule"].startswith("T = 1 + k*8 frames -> 1 + 2k latent")
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--model.init_from", str(prior), "--model.autoencoder.bottleneck", "fsq",
              "--model.autoencoder.fsq_levels", "[8, 5, 5]", "--model.autoencoder.latent_channels", "4",
              "--data.num_frames", "6", "--data.size", "16", "--data.synthetic_videos", "2", "--data.num_workers", "0",
              "--data.synthetic_dir", str(tmp_path / "clips"), "--trainer.default_root_dir", str(tmp_path / "run"),
              "--trainer.logger", "false"])  # fmt: skip
    assert exit_info.value.code == 2
    assert "backbone: an odd number of latent frames); use 1 or 9 (set data.num_frames)" in (
        capsys.readouterr().err
    )
