"""A vtok model built on a diffusers VAE is a prior too (stage 2 of such a run, or a new run from its weights):
only it records its backbone (class and config), so the next model is built on that backbone."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from tests.helpers import tiny_fit_args
from tests.test_priors import FSQ_ARGS, QUIET, tiny_wan
from vtok import VideoAutoencoder
from vtok.cli import main
from vtok.export import load_autoencoder, write_export
from vtok.training import AutoencoderModule
from vtok.vae.priors import autoencoder_from_diffusers


def test_a_model_on_a_diffusers_prior_starts_the_next_stage_on_its_backbone(tmp_path: Path) -> None:
    """It was refused with advice to set vtok's own widths and backbone_class, which then built a full-size Wan VAE
    (no backbone_config) and was refused again with advice about its latent width."""
    tiny_wan(tmp_path / "wan")
    write_export(autoencoder_from_diffusers(str(tmp_path / "wan"), bottleneck="kl"), tmp_path / "kl", {})
    prior = load_autoencoder(tmp_path / "kl")
    module = AutoencoderModule(VideoAutoencoder(latent_channels=4, bottleneck="fsq", fsq_levels=[8, 5, 5]),
                               init_from=str(tmp_path / "kl"))  # fmt: skip
    model = module.autoencoder
    assert (model.config.backbone_class, model.config.bottleneck) == ("AutoencoderKLWan", "fsq")
    assert model.config.backbone_config == prior.config.backbone_config
    ours, theirs = model.encoder.vae.state_dict(), prior.encoder.vae.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)

    other = VideoAutoencoder(latent_channels=4, backbone_class="AutoencoderKLWan",
                             backbone_config={"base_dim": 16, "z_dim": 4, "dim_mult": [1, 2, 2, 2], "num_res_blocks": 1})
    with pytest.raises(ValueError, match="built on another backbone .* build it with the prior's backbone_class and"):
        AutoencoderModule(other, init_from=str(tmp_path / "kl"))

    main(tiny_fit_args(tmp_path, 2, *QUIET, "--model.init_from", str(tmp_path / "kl"), *FSQ_ARGS,
                       "--model.autoencoder.latent_channels", "4", "--model.ema_decay", "null"))  # fmt: skip
    shutil.rmtree(tmp_path / "kl")  # a resume takes the backbone, as every weight, from its checkpoint
    run = tmp_path / "run"
    main(["fit", "--config", str(run / "config.yaml"), "--ckpt_path", "last", "--trainer.max_steps", "3"])
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert (checkpoint["global_step"], checkpoint["vtok"]["autoencoder_config"]["backbone_class"]) == (3, "AutoencoderKLWan")
