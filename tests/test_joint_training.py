"""OneVAE's joint discrete-continuous training: the continuous path's loss beside the discrete one's, together
(joint_mode both) or by turns (alternate)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers import csv_logger, metric_column, tiny_fit_args
from vtok import VideoAutoencoder
from vtok.cli import main
from vtok.losses import AdversarialLoss
from vtok.training import AutoencoderModule
from vtok.vae.autoencoder import AutoencoderOutput


def test_alternate_joint_training_leaves_the_discrete_path_alone_on_continuous_batches() -> None:
    """joint_mode alternate: on even batches only the continuous path trains, the adversarial term
    (which judges the discrete reconstruction) included; on odd batches the discrete path trains."""
    torch.manual_seed(0)
    autoencoder = VideoAutoencoder(block_out_channels=[8, 16], latent_channels=8, layers_per_block=1, bottleneck="fsq", fsq_levels=[5, 5, 5, 5])
    adversarial = AdversarialLoss("patch2d", channels=8, layers=1, start_step=0, adaptive=False)
    module = AutoencoderModule(autoencoder, adversarial=adversarial, continuous_weight=1.0, joint_mode="alternate")
    video = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    for step, discrete_trains in ((0, False), (1, True)):
        autoencoder.zero_grad()
        generator, _, logs, _ = module._objective(video, step, step)
        generator.backward()
        grad = autoencoder.quantizer.project_out.weight.grad  # only the discrete path runs through it
        assert (grad is not None and grad.abs().sum() > 0) == discrete_trains, f"step {step}"
        assert logs["adversarial_generator"] != 0, "the discriminator was asked at both steps"
        assert (logs["adversarial_adaptive_weight"] != 0) == discrete_trains, "the weight logged is the weight applied"
    gq = VideoAutoencoder(block_out_channels=[8, 16], latent_channels=8, layers_per_block=1, bottleneck="gq", gq_bits=6, gq_groups=2)
    module = AutoencoderModule(gq, continuous_weight=1.0, joint_mode="alternate")
    for step, discrete_trains in ((0, False), (1, True)):  # GQ's entropy and commitment terms go with the discrete path
        logs = module._objective(video, step, step)[2]
        assert (logs["entropy_weight"] > 0) == (logs["commitment_weight"] > 0) == discrete_trains, f"step {step}"


@pytest.mark.parametrize("joint_mode", ["both", "alternate"])
def test_joint_training_optimises_the_discrete_loss_plus_the_weighted_continuous_one(joint_mode: str) -> None:
    """The objective is the discrete path's loss plus continuous_weight times the continuous path's (both), or one of
    them by turns (alternate); found by a mutation review: the continuous term dropped, every test passed."""
    torch.manual_seed(0)
    autoencoder = VideoAutoencoder(block_out_channels=[8, 16], latent_channels=8, layers_per_block=1, bottleneck="fsq", fsq_levels=[5, 5, 5, 5])
    module = AutoencoderModule(autoencoder, continuous_weight=0.5, joint_mode=joint_mode)
    video = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    for update in (0, 1):
        generator, _, _, output = module._objective(video, update, update)
        discrete = module.loss(video, output, update)["loss"]
        continuous = module.loss(video, AutoencoderOutput(output.continuous_reconstruction, output.latents), update)["loss"]
        weights = (1.0, 0.5) if joint_mode == "both" else [(0.0, 0.5), (1.0, 0.0)][update]
        torch.testing.assert_close(generator, weights[0] * discrete + weights[1] * continuous)
        assert continuous > 0 and not torch.isclose(discrete, continuous)


def test_alternate_joint_training_takes_turns_by_optimiser_step_under_accumulation(tmp_path: Path) -> None:
    """With accumulate_batches 2, alternate took turns by batch: each optimiser step summed one continuous and one
    discrete batch, the two paths' objectives mixed in every update as joint_mode both would."""
    gq = ["--model.autoencoder.bottleneck", "gq", "--model.autoencoder.gq_bits", "6", "--model.autoencoder.gq_groups", "2"]
    joint = ["--model.continuous_weight", "1.0", "--model.joint_mode", "alternate", "--model.accumulate_batches", "2"]
    main(tiny_fit_args(tmp_path, 3, *gq, *joint, *csv_logger(tmp_path), "--trainer.limit_val_batches", "0"))
    discrete_turns = [weight > 0 for weight in metric_column(tmp_path / "run", "train/entropy_weight")]
    # 6 clips, 3 batches an epoch: steps of batches 0-1 and 2 (the epoch's last steps), then of batches 3-4
    assert discrete_turns == [False, False, True, False, False], "a step's batches take the same path"
