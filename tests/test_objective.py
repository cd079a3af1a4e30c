"""The objective's parts: LPIPS from local weights (or a clear error), discriminators, GAN terms."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vtok.losses import AdversarialLoss, AutoencoderLoss, PerceptualLoss
from vtok.losses.perceptual import VGG16_FILE
from vtok.training.ema import ema_copy


def test_missing_lpips_weights_is_a_setup_error_naming_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError) as error:
        AutoencoderLoss(perceptual_weight=0.1)
    message = str(error.value)
    assert str(tmp_path / "empty" / "hub" / "checkpoints" / VGG16_FILE) in message
    assert "download.pytorch.org" in message and "--model.loss.perceptual_weight 0" in message


def test_lpips_uses_the_local_backbone_and_stays_out_of_the_state(vgg_weights: Path) -> None:
    loss = PerceptualLoss(frames=2)
    saved = torch.load(vgg_weights, weights_only=True)
    network = loss._network[0]
    assert torch.equal(network.net.slice1._modules["0"].weight, saved["features.0.weight"])  # not random features
    assert torch.equal(network.net.slice5._modules["28"].weight, saved["features.28.weight"])
    assert list(loss.parameters()) == [] and loss.state_dict() == {}
    video = torch.rand(2, 3, 5, 32, 32) * 2 - 1
    assert loss(video, video).item() == pytest.approx(0.0, abs=1e-6)
    assert loss(video.flip(-1), video).item() > 0
    loss.to(torch.float64)
    assert network.net.slice1._modules["0"].weight.dtype == torch.float64, "the hidden network follows .to()"


def test_discriminator_terms_route_gradients_to_the_right_side() -> None:
    torch.manual_seed(0)
    adversarial = AdversarialLoss("patch3d", channels=8, layers=2, start_step=3, lecam_weight=0.1)
    decoder_last = torch.nn.Conv3d(4, 3, 1)
    features = torch.randn(2, 4, 5, 32, 32)
    reconstruction = decoder_last(features)
    real = torch.rand(2, 3, 5, 32, 32) * 2 - 1
    reconstruction_loss = (reconstruction - real).abs().mean()

    before = adversarial.generator_terms(reconstruction, reconstruction_loss, decoder_last.weight, step=2)
    assert before["loss"].item() == 0.0
    disc_before = adversarial.discriminator_terms(real, reconstruction, step=2)
    disc_before["loss"].backward()
    grads = [p.grad for p in adversarial.discriminator.parameters()]
    assert all(g is not None and not g.any() for g in grads), "before the start: zero gradients, but gradients"

    adversarial.zero_grad()
    after = adversarial.generator_terms(reconstruction, reconstruction_loss, decoder_last.weight, step=3)
    assert after["adaptive_weight"].item() > 0
    after["loss"].backward(retain_graph=True)
    assert all(p.grad is None for p in adversarial.discriminator.parameters()), "no gradient to D from G's loss"
    assert decoder_last.weight.grad is not None and decoder_last.weight.grad.abs().sum() > 0
    assert all(p.requires_grad for p in adversarial.discriminator.parameters()), "frozen only inside the call"
    disc = adversarial.discriminator_terms(real, reconstruction, step=3)
    assert disc["loss"].item() > 0 and disc["lecam"].item() >= 0
    disc["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in adversarial.discriminator.parameters())


@pytest.mark.parametrize("kind", ["patch3d", "patch2d"])
@pytest.mark.parametrize("norm", ["spectral", "group"])
def test_discriminators_take_clips_and_images(kind: str, norm: str) -> None:
    adversarial = AdversarialLoss(kind, channels=8, layers=2, norm=norm)
    for frames in (1, 9):
        logits = adversarial.discriminator(torch.randn(2, 3, frames, 32, 32))
        assert logits.shape[0] == (2 if kind == "patch3d" else 2 * frames) and logits.numel() > 2


def test_bottleneck_weights_anneal_linearly() -> None:
    loss = AutoencoderLoss(bottleneck_weights={"entropy": 0.1}, bottleneck_weights_start={"entropy": 1.0}, anneal_steps=100)
    assert loss.bottleneck_weight("entropy", 0) == pytest.approx(1.0)
    assert loss.bottleneck_weight("entropy", 50) == pytest.approx(0.55)
    assert loss.bottleneck_weight("entropy", 500) == pytest.approx(0.1)
    assert loss.bottleneck_weight("kl", 0) == pytest.approx(1e-6)
    with pytest.raises(ValueError, match="bottleneck_weights.novel"):
        loss.bottleneck_weight("novel", 0)


def test_ema_follows_early_then_settles() -> None:
    model = torch.nn.Linear(2, 2)
    ema = ema_copy(model, decay=0.999)
    assert not any(p.requires_grad for p in ema.parameters())
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update_parameters(model)  # first update copies
    with torch.no_grad():
        model.weight.fill_(2.0)
    ema.update_parameters(model)  # n = 1: effective decay 2/11
    assert ema.module.weight[0, 0].item() == pytest.approx(1.0 + 9 / 11, rel=1e-5)
