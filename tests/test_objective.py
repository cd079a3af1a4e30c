"""The objective's parts: LPIPS from local weights (or a clear error), discriminators, GAN terms."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from vtok.export import CHECKPOINT_KEY
from vtok.losses import AdversarialLoss, AutoencoderLoss, PerceptualLoss
from vtok.losses.perceptual import VGG16_FILE
from vtok.training import AutoencoderModule
from vtok.training.ema import ema_copy
from vtok.vae import AutoencoderOutput, VideoAutoencoder
from vtok.vae.gaussian import GaussianBottleneck


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


def test_hinge_and_lecam_terms_match_their_formulas() -> None:
    torch.manual_seed(0)
    # group norm: spectral norm's power iteration moves on every forward, so re-running D would differ
    adversarial = AdversarialLoss("patch3d", channels=8, layers=2, norm="group", lecam_weight=0.3, lecam_decay=0.9)
    real = torch.rand(2, 3, 5, 32, 32) * 2 - 1
    fake = torch.rand(2, 3, 5, 32, 32) * 2 - 1
    with torch.no_grad():
        real_logits, fake_logits = adversarial.discriminator(real), adversarial.discriminator(fake)
    # anchors inside the logits' range, so both LeCAM hinges are active on some patches only
    ema_real, ema_fake = fake_logits.median().item(), real_logits.median().item()
    adversarial.ema_real.fill_(ema_real)
    adversarial.ema_fake.fill_(ema_fake)

    terms = adversarial.discriminator_terms(real, fake, step=0)
    hinge = torch.clamp(1 - real_logits, min=0).mean() + torch.clamp(1 + fake_logits, min=0).mean()
    lecam = (torch.clamp(real_logits - ema_fake, min=0) ** 2).mean() + (torch.clamp(ema_real - fake_logits, min=0) ** 2).mean()
    assert terms["hinge"].item() == pytest.approx(hinge.item(), rel=1e-5)
    assert terms["lecam"].item() == pytest.approx(lecam.item(), rel=1e-5)
    assert terms["loss"].item() == pytest.approx(hinge.item() + 0.3 * lecam.item(), rel=1e-5)
    # the anchors move towards this step's mean logits by 1 - decay
    assert adversarial.ema_real.item() == pytest.approx(ema_real + 0.1 * (real_logits.mean().item() - ema_real), rel=1e-5)
    assert adversarial.ema_fake.item() == pytest.approx(ema_fake + 0.1 * (fake_logits.mean().item() - ema_fake), rel=1e-5)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_batch_leaves_the_lecam_anchors_where_they_were(bad: float) -> None:
    """The module skips such a step; an anchor that took it in would stay non-finite for good."""
    torch.manual_seed(0)
    adversarial = AdversarialLoss("patch2d", channels=8, layers=1, norm="group", start_step=100, lecam_decay=0.9)
    adversarial.ema_real.fill_(0.25)
    adversarial.ema_fake.fill_(-0.5)
    real, fake = torch.rand(2, 3, 1, 16, 16) * 2 - 1, torch.rand(2, 3, 1, 16, 16) * 2 - 1
    real[0, 0, 0, 0, 0] = bad
    with torch.no_grad():
        fake_mean = adversarial.discriminator(fake).mean().item()
    terms = adversarial.discriminator_terms(real, fake, step=0)  # before the start: weighted 0, anchors still move
    assert not torch.isfinite(terms["loss"]), "the step itself is not finite (the module skips it)"
    assert adversarial.ema_real.item() == 0.25, "the non-finite mean did not move its anchor"
    assert adversarial.ema_fake.item() == pytest.approx(-0.5 + 0.1 * (fake_mean + 0.5), rel=1e-5), "the finite one did"
    clean = adversarial.discriminator_terms(torch.rand(2, 3, 1, 16, 16) * 2 - 1, fake, step=0)
    assert torch.isfinite(clean["loss"]) and torch.isfinite(adversarial.ema_real), "the next batch is finite again"


def test_lecam_anchors_move_in_float32_in_a_bfloat16_discriminator() -> None:
    """trainer.precision bf16-true casts every buffer: the anchors, moved 1 % a batch, stopped short of the
    logits' mean (an anchor at 1.0 stayed at 1.0 with the mean at 1.3)."""
    torch.manual_seed(0)
    full = AdversarialLoss("patch2d", channels=8, layers=1, norm="group", lecam_decay=0.99)
    with torch.no_grad():
        full.discriminator.net[-1].bias += 1.3  # logits about 1.3, 0.3 above anchors at 1.0
    full.ema_real.fill_(1.0)
    full.ema_fake.fill_(1.0)
    half = AdversarialLoss("patch2d", channels=8, layers=1, norm="group", lecam_decay=0.99)
    half.load_state_dict(full.state_dict())
    half.to(torch.bfloat16)  # what Lightning's bf16-true does to the module
    assert next(half.discriminator.parameters()).dtype == torch.bfloat16
    assert half.ema_real.dtype == half.ema_fake.dtype == torch.float32
    real, fake = torch.rand(2, 3, 1, 16, 16) * 2 - 1, torch.rand(2, 3, 1, 16, 16) * 2 - 1
    for _ in range(300):
        with torch.no_grad():
            full.discriminator_terms(real, fake, step=0)
            half.discriminator_terms(real.bfloat16(), fake.bfloat16(), step=0)
    for name in ("ema_real", "ema_fake"):  # apart by the logits' bfloat16 error alone, not by rounded-away steps
        assert getattr(half, name).item() == pytest.approx(getattr(full, name).item(), abs=0.02), name


def test_adaptive_weight_is_the_ratio_of_gradient_norms_at_the_last_layer() -> None:
    torch.manual_seed(0)
    adversarial = AdversarialLoss("patch3d", channels=8, layers=2, norm="group", weight=0.5)
    decoder_last = torch.nn.Conv3d(4, 3, 1)
    reconstruction = decoder_last(torch.randn(2, 4, 5, 32, 32))
    real = torch.rand(2, 3, 5, 32, 32) * 2 - 1
    reconstruction_loss = (reconstruction - real).abs().mean()

    terms = adversarial.generator_terms(reconstruction, reconstruction_loss, decoder_last.weight, step=0)
    generator = -adversarial.discriminator(reconstruction).mean()
    rec_grad = torch.autograd.grad(reconstruction_loss, decoder_last.weight, retain_graph=True)[0]
    gen_grad = torch.autograd.grad(generator, decoder_last.weight, retain_graph=True)[0]
    ratio = (rec_grad.norm() / gen_grad.norm()).item()
    assert abs(ratio - 1) > 0.1, "a ratio near 1 would not tell it from its inverse"
    assert gen_grad.norm().item() > 0.02, "so the code's 1e-4 guard against 0 stays under the 1% tolerance"
    assert terms["generator"].item() == pytest.approx(generator.item(), rel=1e-5)
    assert terms["adaptive_weight"].item() == pytest.approx(0.5 * ratio, rel=1e-2)
    assert terms["loss"].item() == pytest.approx(0.5 * ratio * generator.item(), rel=1e-2)
    fixed = AdversarialLoss("patch3d", channels=8, layers=2, norm="group", weight=0.5, adaptive=False)
    assert fixed.generator_terms(reconstruction, reconstruction_loss, decoder_last.weight, step=0)["adaptive_weight"].item() == 0.5


def _adaptive_weight_rank(rank: int, init_file: str, features: torch.Tensor, real: torch.Tensor, results: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        torch.save(_adaptive_weight_of(features.chunk(2)[rank], real.chunk(2)[rank]), f"{results}.{rank}")
    finally:
        dist.destroy_process_group()


def _adaptive_weight_of(features: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    torch.manual_seed(0)  # the same layer and discriminator in every process
    adversarial, decoder_last = AdversarialLoss("patch3d", channels=8, layers=2, norm="group"), torch.nn.Conv3d(4, 3, 1)
    reconstruction = decoder_last(features)
    loss = (reconstruction - real).abs().mean()
    return adversarial.generator_terms(reconstruction, loss, decoder_last.weight, step=0)["adaptive_weight"]


def test_the_adaptive_weight_of_two_ranks_is_that_of_their_batches_together(tmp_path: Path) -> None:
    """Each rank weighed the adversarial term by its own batch's gradients: 2 ranks x batch 1 trained unlike
    1 x batch 2 (4% apart in the step's gradient)."""
    torch.manual_seed(1)
    features, real = torch.randn(2, 4, 5, 32, 32), torch.rand(2, 3, 5, 32, 32) * 2 - 1
    features[1] *= 3  # two clips whose own weights differ
    results = str(tmp_path / "rank")
    # spawn, not fork: autograd's worker threads, started by any earlier backward in this process, do not survive a fork
    mp.start_processes(_adaptive_weight_rank, args=(str(tmp_path / "init"), features, real, results), nprocs=2,
                       start_method="spawn")  # fmt: skip
    together = _adaptive_weight_of(features, real)
    alone = [_adaptive_weight_of(features[i : i + 1], real[i : i + 1]) for i in range(2)]
    assert abs(alone[0] / together - 1) > 0.05, "the clips alone weigh otherwise: the test tells the cases apart"
    for rank in range(2):
        torch.testing.assert_close(torch.load(f"{results}.{rank}"), together, rtol=1e-5, atol=0)


def _gaussian_output(video: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> AutoencoderOutput:
    """What the autoencoder gives for a KL model whose encoder produced ``mean`` and ``logvar``."""
    bottleneck = GaussianBottleneck(latent_channels=mean.shape[1])
    posterior = bottleneck(torch.cat([mean, logvar], dim=1), sample=False, pixel_values=video[0].numel())
    return AutoencoderOutput(reconstruction=video.flip(-1), latents=posterior.latents, losses=posterior.losses)


def test_loss_terms_match_l1_and_the_textbook_gaussian_kl() -> None:
    torch.manual_seed(0)
    video = torch.rand(2, 3, 5, 8, 8) * 2 - 1
    mean, logvar = torch.randn(2, 4, 2, 2, 2), torch.randn(2, 4, 2, 2, 2)
    output = _gaussian_output(video, mean, logvar)
    loss = AutoencoderLoss(l1_weight=2.5, bottleneck_weights={"kl": 0.5}, bottleneck_weights_start={"kl": 1.5}, anneal_steps=10)
    terms = loss(video, output, step=4)

    l1 = (video.flip(-1) - video).abs().sum().item() / video.numel()
    posterior = torch.distributions.Normal(mean.double(), torch.exp(0.5 * logvar.double()))
    per_element = torch.distributions.kl_divergence(posterior, torch.distributions.Normal(0.0, 1.0))
    kl = per_element.flatten(1).sum(1).mean().item() / video[0].numel()  # per pixel value of a clip, as L1 is
    weight = 1.5 + (0.5 - 1.5) * 4 / 10  # 40% of the way from the start weight to the final one
    assert terms["l1"].item() == pytest.approx(l1, rel=1e-5)
    assert terms["kl"].item() == pytest.approx(kl, rel=1e-5)
    assert terms["reconstruction"].item() == pytest.approx(2.5 * l1, rel=1e-5)
    assert terms["loss"].item() == pytest.approx(2.5 * l1 + weight * kl, rel=1e-5)
    assert torch.equal(output.latents, mean), "no sampling when asked for the mean"


@pytest.mark.parametrize(("logvar", "bounded"), [(25.0, 20.0), (-40.0, -30.0)])
def test_kl_clamps_the_log_variance(logvar: float, bounded: float) -> None:
    video = torch.zeros(1, 3, 1, 4, 4)
    output = _gaussian_output(video, torch.zeros(1, 1, 1, 1, 1), torch.full((1, 1, 1, 1, 1), logvar))
    # KL(N(0, e^v) || N(0, 1)) = (e^v - 1 - v) / 2, with v the clamped log-variance, over the clip's 48 pixel values
    assert output.losses["kl"].item() == pytest.approx(0.5 * (math.exp(bounded) - 1 - bounded) / 48, rel=1e-5)


def test_the_autoencoder_reports_the_kl_per_pixel_value_of_its_input() -> None:
    """The published 1e-6 weighs a summed KL against a summed L1; vtok's L1 is a per-pixel mean, so the
    KL it weighs is per pixel value too (at 17x256x256 a summed KL would be ~3 million times stronger)."""
    torch.manual_seed(0)
    model = VideoAutoencoder(block_out_channels=[8, 16], latent_channels=4, layers_per_block=1).eval()
    video = torch.rand(2, 3, 5, 16, 16) * 2 - 1
    mean, logvar = model.encoder(video).float().chunk(2, dim=1)
    summed = (0.5 * (mean.square() + logvar.exp() - 1 - logvar)).flatten(1).sum(1).mean()
    assert model(video).losses["kl"].item() == pytest.approx(summed.item() / (3 * 5 * 16 * 16), rel=1e-4)


def test_perceptual_weight_scales_lpips_in_the_reconstruction_term(vgg_weights: Path) -> None:
    torch.manual_seed(0)
    video = torch.rand(1, 3, 2, 32, 32) * 2 - 1
    output = AutoencoderOutput(reconstruction=video.flip(-1), latents=torch.zeros(1, 4, 1, 4, 4))
    loss = AutoencoderLoss(l1_weight=1.0, perceptual_weight=0.1)  # one LPIPS network: loading it is slow
    low = loss(video, output)
    loss.perceptual_weight = 0.2
    high = loss(video, output)
    # relative to the module's own LPIPS value: the random stand-in backbone gives no meaningful absolute one
    assert low["perceptual"].item() > 0 and high["perceptual"].item() == pytest.approx(low["perceptual"].item(), rel=1e-6)
    assert low["reconstruction"].item() == pytest.approx(low["l1"].item() + 0.1 * low["perceptual"].item(), rel=1e-5)
    assert high["reconstruction"].item() - low["reconstruction"].item() == pytest.approx(0.1 * low["perceptual"].item(), rel=1e-4)
    assert low["loss"].item() == pytest.approx(low["reconstruction"].item(), rel=1e-6)  # no bottleneck terms


def test_held_out_lpips_on_some_frames_takes_the_same_frames_whatever_the_seed(vgg_weights: Path) -> None:
    """perceptual_frames drew the frames from the global RNG in validation too, so val/perceptual and
    val/loss of one checkpoint moved with the seed and the number of ranks."""
    video = torch.rand(1, 3, 9, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    reconstruction = video.roll(1, dims=2)  # each frame off by one: every frame scores differently
    perceptual = PerceptualLoss(str(vgg_weights), frames=3).eval()
    scores = set()
    for seed in range(4):
        torch.manual_seed(seed)
        scores.add(perceptual(reconstruction, video).item())
    assert len(scores) == 1, "evenly spaced frames in eval mode"
    on_frames = PerceptualLoss(str(vgg_weights)).eval()(reconstruction[:, :, [0, 4, 8]], video[:, :, [0, 4, 8]]).item()
    assert scores.pop() == pytest.approx(on_frames)
    perceptual.train()
    assert len({perceptual(reconstruction, video).item() for _ in range(4)}) > 1, "random frames in training"


@pytest.mark.parametrize("kind", ["patch3d", "patch2d"])
@pytest.mark.parametrize("norm", ["spectral", "group"])
def test_discriminators_take_clips_and_images(kind: str, norm: str) -> None:
    adversarial = AdversarialLoss(kind, channels=8, layers=2, norm=norm)
    for frames in (1, 9):
        logits = adversarial.discriminator(torch.randn(2, 3, frames, 32, 32))
        assert logits.shape[0] == (2 if kind == "patch3d" else 2 * frames) and logits.numel() > 2


@pytest.mark.parametrize("channels", [8, 20, 24, 48])
def test_group_norm_discriminators_take_any_width(channels: int) -> None:
    """Widths 2x, 4x, 8x the first: 48 is above 32 groups and not a multiple of them (20, 24 gave a torch error)."""
    adversarial = AdversarialLoss("patch3d", channels=channels, layers=3, norm="group")
    groups = [m.num_groups for m in adversarial.discriminator.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert groups == [math.gcd(32, channels * 2**i) for i in (1, 2, 3)]
    assert adversarial.discriminator(torch.randn(1, 3, 9, 32, 32)).isfinite().all()


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


def test_misspelt_or_unused_bottleneck_weights_are_refused() -> None:
    with pytest.raises(ValueError, match=r"loss.bottleneck_weights names \['commitmnet'\], which no bottleneck reports"):
        AutoencoderLoss(bottleneck_weights={"commitmnet": 1.0})
    with pytest.raises(ValueError, match="bottleneck_weights_start names"):
        AutoencoderLoss(bottleneck_weights_start={"klx": 1.0}, anneal_steps=10)
    with pytest.raises(ValueError, match="needs loss.anneal_steps > 0"):
        AutoencoderLoss(bottleneck_weights_start={"entropy": 0.5})


def test_resuming_a_checkpoint_from_before_the_kl_scale_says_how_much_weaker_the_kl_now_pulls(
    caplog: pytest.LogCaptureFixture,
) -> None:
    module = AutoencoderModule(VideoAutoencoder(block_out_channels=[8, 16], latent_channels=4, layers_per_block=1))
    old = {CHECKPOINT_KEY: {"batch_step": 3, "clip": {"num_frames": 5, "size": [32, 32]}}}
    with caplog.at_level("WARNING", logger="vtok.training.module"):
        module.on_load_checkpoint(old)
    assert "multiply that weight by 15,360" in caplog.text  # 3 x 5 x 32 x 32 pixel values
    caplog.clear()
    with caplog.at_level("WARNING", logger="vtok.training.module"):
        module.on_load_checkpoint({CHECKPOINT_KEY: {**old[CHECKPOINT_KEY], "kl_scale": "per_pixel_value"}})
    assert "KL" not in caplog.text


def test_the_discriminator_terms_run_with_every_weight_in_bfloat16() -> None:
    """trainer.precision bf16-true casts the module (LeCAM's anchors are kept float32, as the logits are made):
    the anchors' update, in bfloat16 then, stopped the first batch of every run with a discriminator."""
    adversarial = AdversarialLoss("patch2d", channels=8, layers=1, norm="group", start_step=100).to(torch.bfloat16)
    real, fake = (torch.rand(2, 3, 1, 16, 16, dtype=torch.bfloat16) * 2 - 1 for _ in range(2))
    terms = adversarial.discriminator_terms(real, fake, step=0)
    assert torch.isfinite(terms["hinge"]) and adversarial.ema_real.dtype == torch.float32 and adversarial.ema_real != 0


@pytest.mark.parametrize(
    "build, named",
    [
        (lambda: AdversarialLoss(lecam_decay=1.5), "lecam_decay must be in [0, 1) (got 1.5)"),  # anchors grew 1.5x a step
        (lambda: AdversarialLoss(channels=0), "channels at least 1 (got 0)"),  # said "lower the layers"
        (lambda: AdversarialLoss(layers=-1), "model.adversarial.layers=-1"),  # "list index out of range"
        (lambda: AdversarialLoss(weight=-1.0, lecam_weight=-0.1), "model.adversarial.weight=-1.0, model.adversarial.lecam_weight=-0.1"),
        (lambda: AutoencoderLoss(l1_weight=-1.0), "model.loss.l1_weight=-1.0"),
        (lambda: AutoencoderLoss(perceptual_weight=-0.1), "model.loss.perceptual_weight=-0.1"),  # was taken for "off"
        (lambda: AutoencoderLoss(bottleneck_weights={"kl": -1.0}), "model.loss.bottleneck_weights.kl=-1.0"),
    ],
)
def test_loss_settings_that_cannot_train_are_refused_by_name(build, named: str) -> None:  # noqa: ANN001
    with pytest.raises(ValueError) as error:
        build()
    assert named in str(error.value)
