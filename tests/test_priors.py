"""OneVAE's techniques: tokenizers from continuous priors, joint training, first-frame strengthening."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL, AutoencoderKLLTXVideo, AutoencoderKLWan
from lightning.pytorch import Trainer
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader

from tests.helpers import tiny_fit_args
from vtok import VideoAutoencoder
from vtok.cli import main
from vtok.export import load_autoencoder, write_export
from vtok.losses import AdversarialLoss
from vtok.tokenizers import FSQ
from vtok.training import AutoencoderModule
from vtok.training.priors import fit_quantizer_to_prior, initialise_from_prior
from vtok.vae.prior_projections import fit_projections, latent_moments
from vtok.vae.priors import autoencoder_from_diffusers, load_diffusers_vae, transfer_weights
from vtok.vae.quantized import QuantizedBottleneck
from vtok.vae.tokens import FirstFrameTokens

FSQ_ARGS = ["--model.autoencoder.bottleneck", "fsq", "--model.autoencoder.fsq_levels", "[8, 5, 5]"]
QUIET = ["--trainer.logger", "false", "--trainer.limit_val_batches", "0"]


def tiny_wan(folder: Path) -> Path:
    torch.manual_seed(0)
    AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 2, 2, 2], num_res_blocks=1).save_pretrained(folder)
    return folder


def tiny_ltx(folder: Path) -> Path:
    torch.manual_seed(0)
    AutoencoderKLLTXVideo(
        latent_channels=8, block_out_channels=(8, 16, 16, 16), decoder_block_out_channels=(8, 16, 16, 16),
        layers_per_block=(1, 1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1, 1),
    ).save_pretrained(folder)  # fmt: skip
    return folder


def tiny_ltx_091(folder: Path) -> Path:
    """The LTX-Video 0.9.1 VAE layout (diffusers' own test config of it): a timestep-conditioned
    decoder that injects noise, with non-zero noise scales as in the trained weights."""
    torch.manual_seed(0)
    vae = AutoencoderKLLTXVideo(
        latent_channels=8, block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(16, 32, 64),
        layers_per_block=(1, 1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, True, False), decoder_spatio_temporal_scaling=(True, True, True),
        decoder_inject_noise=(True, True, True, False), upsample_residual=(True, True, True), upsample_factor=(2, 2, 2),
        timestep_conditioning=True, patch_size=1, patch_size_t=1, encoder_causal=True, decoder_causal=False,
    )  # fmt: skip
    with torch.no_grad():
        for name, parameter in vae.named_parameters():
            if "per_channel_scale" in name:
                parameter.fill_(0.1)
    vae.save_pretrained(folder)
    return folder


def _fit_and_export(tmp_path: Path, steps: int, *extra: str) -> Path:
    main(tiny_fit_args(tmp_path, steps, *QUIET, *extra))
    main(["export", "--ckpt", str(tmp_path / "run" / "checkpoints" / "last.ckpt"), "--out", str(tmp_path / "export")])
    return tmp_path / "export"


@pytest.mark.parametrize("prior", ["wan", "ltx"])
def test_fsq_on_a_diffusers_prior_trains_exports_and_reloads(tmp_path: Path, prior: str) -> None:
    if prior == "wan":
        folder, shape = tiny_wan(tmp_path / "prior"), ["--model.autoencoder.latent_channels", "4"]
    else:
        folder = tiny_ltx(tmp_path / "prior")
        shape = ["--model.autoencoder.latent_channels", "8", "--model.autoencoder.temporal_compression", "8",
                 "--model.autoencoder.spatial_compression", "32", "--data.num_frames", "9", "--data.size", "64"]  # fmt: skip
    export = _fit_and_export(tmp_path, 2, "--model.init_from", str(folder), *FSQ_ARGS, *shape,
                             "--model.autoencoder.tokens_per_position", "2", "--model.ema_decay", "null",
                             "--model.channels_last", "true")  # fmt: skip  (the prior's 2D weights stay as they are)
    model = load_autoencoder(export)
    assert model.config.backbone_class == {"wan": "AutoencoderKLWan", "ltx": "AutoencoderKLLTXVideo"}[prior]
    with pytest.raises(ValueError, match="diffusers backbone, which manages long clips"):
        model.temporal_chunk = 1  # each chunk would start as a new clip: wrong latents, 8 frames back for 17
    assert model.temporal_chunk is None
    frames, size = (9, 64) if prior == "ltx" else (5, 32)
    video = torch.rand(1, 3, frames, size, size) * 2 - 1
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    trained = VideoAutoencoder(**checkpoint["vtok"]["autoencoder_config"])
    trained.load_state_dict({k[len("autoencoder."):]: v for k, v in checkpoint["state_dict"].items() if k.startswith("autoencoder.")})
    trained.eval()
    with torch.no_grad():
        tokens = model.tokenize(video)
        assert tokens.shape[1] == 2
        assert torch.equal(tokens, trained.tokenize(video)), "the export reproduces the trained model"
        assert torch.equal(model.detokenize(tokens), trained.detokenize(tokens))
    # the run resumes with its own config, its network built as the checkpoint records it: the prior's folder may be
    # gone or hold another revision (a wider one failed to load into the checkpoint's network, its advice wrong)
    shutil.rmtree(folder)
    if prior == "wan":
        AutoencoderKLWan(base_dim=16, z_dim=4, dim_mult=[1, 2, 2, 2], num_res_blocks=1).save_pretrained(folder)
    run = tmp_path / "run"
    main(["fit", "--config", str(run / "config.yaml"), "--ckpt_path", "last", "--trainer.max_steps", "3"])
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 3
    saved = (run / "config.yaml").read_text()
    assert f"init_from: {folder}" in saved and "backbone_class: null" in saved, "config.yaml keeps them as given"


def test_the_prior_s_weights_are_the_starting_point(tmp_path: Path) -> None:
    prior = AutoencoderKLWan.from_pretrained(tiny_wan(tmp_path / "prior"))
    module = AutoencoderModule(VideoAutoencoder(latent_channels=4, bottleneck="fsq", fsq_levels=[8, 5, 5]), init_from=str(tmp_path / "prior"))
    theirs, ours = prior.state_dict(), module.autoencoder.encoder.vae.state_dict()
    assert theirs.keys() == ours.keys() and all(torch.equal(theirs[k], ours[k]) for k in theirs)


def test_activation_checkpointing_of_a_backbone_without_it_is_refused(tmp_path: Path) -> None:
    """diffusers' Wan VAE takes the flag through vtok's wrapper and never reads it: nothing was recomputed."""
    with pytest.raises(ValueError, match="the backbone AutoencoderKLWan .* has no activation checkpointing"):
        AutoencoderModule(VideoAutoencoder(latent_channels=4, bottleneck="fsq", fsq_levels=[8, 5, 5]),
                          init_from=str(tiny_wan(tmp_path / "prior")), activation_checkpointing=True)  # fmt: skip


def test_fsq_from_a_vtok_kl_export_keeps_its_encoder_and_decoder(tmp_path: Path) -> None:
    kl = _fit_and_export(tmp_path / "kl", 2)
    prior = load_autoencoder(kl)
    module = AutoencoderModule(
        VideoAutoencoder(latent_channels=8, block_out_channels=[16, 32], layers_per_block=1, bottleneck="fsq", fsq_levels=[8, 5, 5]),
        init_from=str(kl),
    )
    ours, theirs = module.autoencoder.state_dict(), prior.state_dict()
    assert torch.equal(ours["decoder.conv_in.weight"], theirs["decoder.conv_in.weight"])
    assert torch.equal(ours["encoder.stages.0.0.conv1.weight"], theirs["encoder.stages.0.0.conv1.weight"])
    assert torch.equal(ours["encoder.conv_out.weight"], theirs["encoder.conv_out.weight"][:8]), "the posterior mean half"
    export = _fit_and_export(tmp_path / "fsq", 2, "--model.init_from", str(kl), *FSQ_ARGS)
    video = torch.rand(1, 3, 5, 32, 32) * 2 - 1
    with torch.no_grad():
        assert load_autoencoder(export).tokenize(video).shape == (1, 1, 2, 4, 4)
    # resuming takes every weight from the checkpoint: the prior may have moved (it was looked up on the Hub)
    kl.rename(tmp_path / "moved")
    run = tmp_path / "fsq" / "run"
    main(["fit", "--config", str(run / "config.yaml"), "--trainer.default_root_dir", str(run), "--ckpt_path", "last",
          "--trainer.max_steps", "3"])  # fmt: skip
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 3
    # so does scoring it (validate and test looked for the moved prior: "model.init_from ...: no such file")
    main(["validate", "--config", str(run / "config.yaml"), "--ckpt_path", "last", "--trainer.limit_val_batches", "1.0"])
    assert f"init_from: {kl}" in (run / "config.yaml").read_text(), "the run's config keeps where it started from"


@pytest.mark.parametrize(
    ("quantizer", "closest", "video_share"),  # sign codes keep less of each component than FSQ's levels
    [({"bottleneck": "fsq", "fsq_levels": [8, 8, 8, 5, 5]}, 0.6, 0.5), ({"bottleneck": "gq", "gq_bits": 6, "gq_groups": 2}, 0.8, 0.6)],
)
def test_the_quantizer_projections_are_fitted_to_the_prior_s_latents_at_the_first_batch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, quantizer: dict, closest: float,
    video_share: float,
) -> None:
    """Random projections around the quantizer gave the prior's decoder a latent unrelated to its own
    (2x the latent's spread off): fitted to the prior's principal components, only their rounding
    and the dropped components separate them, and the decoded video is close to the prior's. GroupLFQ's
    sign codes read back at FSQ's scale were 1.3x the spread off, worse than the latent's mean (1.0)."""
    kl = _fit_and_export(tmp_path / "kl", 2)
    prior = load_autoencoder(kl)
    video = torch.rand(2, 3, 9, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1

    def started(fitted: bool) -> tuple[float, float, AutoencoderModule]:
        torch.manual_seed(0)
        discrete = VideoAutoencoder(latent_channels=8, block_out_channels=[16, 32], layers_per_block=1, **quantizer)
        module = AutoencoderModule(discrete, init_from=str(kl), ema_decay=0.999)
        if fitted:  # what the first training batch does
            module._fit_projections(video)
        model, bottleneck = module.autoencoder.eval(), module.autoencoder.quantizer
        with torch.no_grad():
            latent = prior.encode(video)
            read = bottleneck.project_out(bottleneck.quantizer(bottleneck.project_in(latent)).codes)
            spread = (latent - latent.mean((0, 2, 3, 4), keepdim=True)).norm()
            off = ((read - latent).norm() / spread).item()
            video_off = (model.decode(model.encode(video)) - prior.decode(latent)).square().mean().sqrt().item()
        return off, video_off, module

    random_off, random_video_off, _ = started(False)
    with caplog.at_level("INFO", logger="vtok.training.module"):
        fitted_off, fitted_video_off, module = started(True)
    assert random_off > 1 and fitted_off < closest and fitted_video_off < random_video_off * video_share, (random_off, fitted_off)
    assert "fitted the quantizer's projections to the prior's latents" in caplog.text
    live, averaged = module.autoencoder.quantizer, module.ema.module.quantizer
    assert torch.equal(live.project_in.weight, averaged.project_in.weight), "validation and export start from them too"
    assert torch.equal(live.project_out.bias, averaged.project_out.bias)
    # a fit does it at its first batch, once (found by a mutation review: the hook switched off, every test passed)
    fitted_on, fit = [], AutoencoderModule._fit_projections
    monkeypatch.setattr(AutoencoderModule, "_fit_projections", lambda self, clips: (fitted_on.append(clips), fit(self, clips))[1])
    module = AutoencoderModule(VideoAutoencoder(latent_channels=8, block_out_channels=[16, 32], layers_per_block=1, **quantizer),
                               init_from=str(kl))  # fmt: skip
    trainer = Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, accelerator="cpu")  # fmt: skip
    trainer.fit(module, train_dataloaders=DataLoader([{"video": video}, {"video": -video}], batch_size=None))
    assert len(fitted_on) == 1 and torch.equal(fitted_on[0], video)


def test_fitted_projections_read_back_no_shift_from_an_even_fsq_grid() -> None:
    """An even FSQ level count's grid is not symmetric ({-1, -0.5, 0, 0.5} for 4 levels): its codes average below
    zero, and every fitted component read back 14% of its spread off until the code means were taken out."""
    spreads = torch.linspace(4, 1, 8).view(1, -1, 1, 1, 1)
    latent = torch.randn(4, 8, 2, 16, 16, generator=torch.Generator().manual_seed(0)) * spreads
    bottleneck = QuantizedBottleneck(FSQ([4] * 6), 8)
    with torch.no_grad():
        fit_projections(bottleneck, *latent_moments(latent + 3))
        read = bottleneck.to_decoder(bottleneck(latent + 3, with_losses=False).latents)
    shift = (read - latent - 3).mean((0, 2, 3, 4)) / latent.std((0, 2, 3, 4))
    assert shift.abs().max() < 0.04, shift


def test_collapsed_prior_channels_are_not_blown_up_into_dead_quantizer_inputs(caplog: pytest.LogCaptureFixture) -> None:
    """Scaled to half a unit per standard deviation, a near-constant latent direction got an input weight of
    1e4 and more: the encoder's first updates pushed those FSQ inputs into the hundreds, where tanh's gradient
    is zero for good."""
    tiny = {"block_out_channels": [8, 16], "layers_per_block": 1, "latent_channels": 8}
    torch.manual_seed(0)
    prior = VideoAutoencoder(bottleneck="kl", **tiny)
    with torch.no_grad():  # two channels collapsed to the prior N(0, 1): their posterior mean hardly moves
        prior.encoder.conv_out.weight[6:8].mul_(1e-4)
        prior.encoder.conv_out.bias[6:8] = 0.0
    model = VideoAutoencoder(bottleneck="fsq", fsq_levels=[8, 5, 5], tokens_per_position=2, **tiny)  # 6 channels
    transfer_weights(prior, model)
    with caplog.at_level("WARNING", logger="vtok.training.priors"):
        fit_quantizer_to_prior(model, None, torch.rand(2, 3, 9, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1)
    assert model.quantizer.project_in.weight.norm(dim=1).max() < 100
    assert "varies along only 6 of its 8 directions" not in caplog.text, "6 channels take the 6 largest: none collapsed"
    model = VideoAutoencoder(bottleneck="fsq", fsq_levels=[8, 5, 5, 5, 5], tokens_per_position=2, **tiny)  # 10 channels
    transfer_weights(prior, model)
    with caplog.at_level("WARNING", logger="vtok.training.priors"):
        fit_quantizer_to_prior(model, None, torch.rand(2, 3, 9, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1)
    assert model.quantizer.project_in.weight.norm(dim=1).max() < 100, model.quantizer.project_in.weight.norm(dim=1)
    assert "varies along only 6 of its 8 directions" in caplog.text


def test_an_ltx_091_prior_decodes_at_t0_and_the_same_tokens_give_the_same_video(tmp_path: Path) -> None:
    model = autoencoder_from_diffusers(str(tiny_ltx_091(tmp_path / "prior")), bottleneck="fsq", fsq_levels=[8, 5, 5])
    video = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    with torch.no_grad():
        assert model(video).reconstruction.shape == video.shape  # was a TypeError: the decoder needs a timestep
        tokens = model.tokenize(video)
        assert not torch.equal(model.detokenize(tokens), model.detokenize(tokens)), "training: fresh noise each call"
        model.eval()
        first = model.detokenize(tokens)
        state = torch.get_rng_state()
        assert torch.equal(model.detokenize(tokens), first)
        assert torch.equal(torch.get_rng_state(), state), "the caller's random stream is left as it was"
        assert torch.equal(model.decode(model.encode(video)), first)


def test_a_decoder_with_noise_channels_starts_as_its_kl_prior(tmp_path: Path) -> None:
    tiny = {"block_out_channels": [8, 16], "layers_per_block": 1, "latent_channels": 8}
    torch.manual_seed(0)
    VideoAutoencoder(bottleneck="kl", **tiny).save_pretrained(tmp_path / "kl")
    prior = load_autoencoder(tmp_path / "kl")
    module = AutoencoderModule(
        VideoAutoencoder(bottleneck="gq", gq_bits=8, gq_groups=2, decoder_noise_channels=4, **tiny),
        init_from=str(tmp_path / "kl"),
    )
    model = module.autoencoder.eval()
    weight = model.decoder.conv_in.weight
    assert torch.equal(weight[:, :8], prior.decoder.conv_in.weight), "the latent's channels come first"
    assert not weight[:, 8:].any(), "the noise channels start at zero"
    video = torch.rand(1, 3, 9, 16, 16) * 2 - 1
    with torch.no_grad():
        latents = prior.encode(video)
        assert torch.equal(model.encode(video, discrete=False), latents)
        torch.testing.assert_close(model.decode(latents, discrete=False), prior.decode(latents), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("prior_options", "model_options", "message"),
    [
        ({"decoder_causal": False}, {}, "set decoder_causal=False to match it"),
        ({"decoder_timestep_conditioning": True}, {}, "set decoder_timestep_conditioning=True to match it"),
        ({"decoder_noise_channels": 4}, {"decoder_noise_channels": 2}, "set decoder_noise_channels=4 to match it"),
    ],
)
def test_a_prior_whose_decoder_the_model_cannot_start_from_is_refused(
    prior_options: dict, model_options: dict, message: str
) -> None:
    """The backbone matched, so the decoder was copied in part with one INFO line: weights run with another time
    padding, the trained timestep modulation dropped, or a random first convolution beside the prior's bias."""
    tiny = {"block_out_channels": [8, 16], "layers_per_block": 1, "latent_channels": 8}
    prior = VideoAutoencoder(**tiny, **prior_options)
    with pytest.raises(ValueError, match=message):
        transfer_weights(prior, VideoAutoencoder(bottleneck="fsq", fsq_levels=[8, 5, 5], **tiny, **model_options))
    report = transfer_weights(prior, VideoAutoencoder(bottleneck="fsq", fsq_levels=[8, 5, 5], **tiny, **prior_options))
    assert not report["dropped"] and all(name.startswith("quantizer.") for name in report["new"]), report["new"]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("compression", "set temporal_compression=4 and spatial_compression=8|spatial_compression=8"),
        ("width", "latent_channels=4"),
        ("image_vae", "not a video VAE"),
        ("missing", "vtok never downloads"),
        ("missing_file", "no such file"),
        ("vtok_backbone", "backbone differs"),
        ("vtok_latent", "backbone differs from the configured one; set latent_channels=8"),
        ("decoder_options", "the decoder options (non-causal, timestep, noise) need vtok's own backbone"),
        ("damaged_weights", "1 tensors missing from the weights (first: decoder.conv_out.weight). Refusing to load a model "
                            "with random layers; fetch the prior again"),
    ],
)
def test_bad_priors_are_clear_errors_before_training(tmp_path: Path, setup: str, message: str, capsys) -> None:  # noqa: ANN001
    prior, extra = str(tiny_wan(tmp_path / "prior")), ["--model.autoencoder.latent_channels", "4"]
    if setup == "compression":
        extra += ["--model.autoencoder.spatial_compression", "16"]
    elif setup == "width":
        extra = ["--model.autoencoder.latent_channels", "6"]
    elif setup == "image_vae":
        AutoencoderKL(block_out_channels=(8,), norm_num_groups=4, latent_channels=4).save_pretrained(tmp_path / "image")
        prior = str(tmp_path / "image")
    elif setup == "missing":
        prior = "nobody/no-such-video-vae"
    elif setup == "missing_file":  # was Hugging Face advice to download it
        prior = str(tmp_path / "stage1" / "last.ckpt")
    elif setup == "decoder_options":  # were dropped without a word
        extra += ["--model.autoencoder.decoder_noise_channels", "4"]
    elif setup == "vtok_latent":  # was copied whole: the prior's log-variance channels became latent channels
        prior = str(_fit_and_export(tmp_path / "kl", 1))
        extra = ["--model.autoencoder.latent_channels", "16"]
    elif setup == "vtok_backbone":
        prior = str(_fit_and_export(tmp_path / "kl", 1))
        extra = ["--model.autoencoder.block_out_channels", "[16, 16]"]
    elif setup == "damaged_weights":  # diffusers left the tensor on the meta device: the error blamed the run's config
        weights = tmp_path / "prior" / "diffusion_pytorch_model.safetensors"
        tensors = load_file(weights)
        del tensors["decoder.conv_out.weight"]
        save_file(tensors, weights)
    with pytest.raises(SystemExit) as exit_info:
        main(tiny_fit_args(tmp_path, 1, *QUIET, "--model.init_from", prior, *FSQ_ARGS, *extra))
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert any(option in error for option in message.split("|")), error[-2000:]
    assert "Traceback" not in error


def test_joint_training_serves_both_paths(tmp_path: Path) -> None:
    main(tiny_fit_args(tmp_path, 3, *QUIET, *FSQ_ARGS, "--model.continuous_weight", "1.0"))
    main(["export", "--ckpt", str(tmp_path / "run" / "checkpoints" / "last.ckpt"), "--out", str(tmp_path / "export")])
    model = load_autoencoder(tmp_path / "export")
    video = torch.rand(1, 3, 5, 32, 32) * 2 - 1
    with torch.no_grad():
        continuous = model.encode(video, discrete=False)
        assert continuous.shape == (1, 8, 2, 4, 4)
        assert model.decode(continuous, discrete=False).shape == video.shape
        assert model.detokenize(model.tokenize(video)).shape == video.shape
        assert not torch.equal(model.decode(continuous, discrete=False), model.detokenize(model.tokenize(video)))


def test_first_frame_strengthening_adds_tokens_to_the_first_latent_frame() -> None:
    torch.manual_seed(0)
    model = VideoAutoencoder(
        latent_channels=8, block_out_channels=[8, 16], layers_per_block=1, bottleneck="fsq", fsq_levels=[8, 5, 5],
        tokens_per_position=2, first_frame_tokens=3,
    ).eval()  # fmt: skip
    video = torch.rand(1, 3, 9, 16, 16) * 2 - 1
    with torch.no_grad():
        tokens = model.tokenize(video)
        assert isinstance(tokens, FirstFrameTokens)
        assert tokens.indices.shape == (1, 2, 3, 2, 2) and tokens.first_frame_extra.shape == (1, 3, 1, 2, 2)
        assert torch.equal(model.detokenize(tokens), model.decode(model.encode(video)))
        with pytest.raises(ValueError, match="FirstFrameTokens"):
            model.detokenize(tokens.indices)
    # 2 tokens per position in every latent frame, 2 + 3 in the first
    assert model.tokens_per_clip(9, 16, 16) == 2 * 3 * 4 + 3 * 4
    plain = VideoAutoencoder(latent_channels=8, block_out_channels=[8, 16], layers_per_block=1, bottleneck="fsq",
                             fsq_levels=[8, 5, 5], tokens_per_position=2)  # fmt: skip
    assert model.bits_per_pixel(9, 16, 16) == pytest.approx(plain.bits_per_pixel(9, 16, 16) * 36 / 24)
    # the extra path starts as a no-op: with the plain model's weights, the same reconstruction
    missing, unexpected = model.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all("first" in name for name in missing)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(video).reconstruction, plain.eval()(video).reconstruction)
        # the extra codes sit in the first latent frame only, and reach the decoder there (found by a mutation
        # review: padded onto the last frame, every test above still passed)
        bottleneck, tokens = model.quantizer, model.tokenize(video)
        codes = model.encode(video)
        extra = codes[:, bottleneck.regular_channels :]
        assert torch.equal(extra[:, :, :1], bottleneck.first_frame.indices_to_codes(tokens.first_frame_extra))
        assert not extra[:, :, 1:].any()
        torch.nn.init.normal_(bottleneck.project_out_first.weight)
        changed = FirstFrameTokens(tokens.indices, (tokens.first_frame_extra + 1) % bottleneck.first_frame.codebook_size)
        to_decoder = [bottleneck.to_decoder(bottleneck.indices_to_codes(each)) for each in (tokens, changed)]
        moved = (to_decoder[1] - to_decoder[0]).abs().amax(dim=(0, 1, 3, 4))  # per latent frame
        assert moved[0] > 0 and not moved[1:].any()
        assert not torch.equal(model.detokenize(changed), model.detokenize(tokens))
    with pytest.raises(ValueError, match="need bottleneck fsq"):
        VideoAutoencoder(bottleneck="gq", first_frame_tokens=1)


def test_frozen_parts_stay_fixed_for_their_steps(tmp_path: Path) -> None:
    main(tiny_fit_args(tmp_path, 4, *QUIET, "--model.freeze", "[encoder]", "--model.freeze_steps", "2",
                       "--trainer.callbacks+", "ModelCheckpoint", "--trainer.callbacks.every_n_train_steps", "1",
                       "--trainer.callbacks.save_top_k", "-1", "--trainer.callbacks.filename", "{step}"))  # fmt: skip
    state = {s: torch.load(tmp_path / "run" / "checkpoints" / f"step={s}.ckpt", weights_only=True)["state_dict"] for s in (1, 2, 3)}
    key = "autoencoder.encoder.conv_in.weight"
    assert torch.equal(state[1][key], state[2][key]), "frozen for the first two steps"
    assert not torch.equal(state[2][key], state[3][key]), "trained after them"
    assert not torch.equal(state[1]["autoencoder.decoder.conv_in.weight"], state[2]["autoencoder.decoder.conv_in.weight"])


def test_a_decoder_frozen_for_the_whole_run_and_an_adaptive_adversarial_weight_are_refused_at_once() -> None:
    """The adaptive weight reads gradients at the decoder's last layer: frozen for good, it has none,
    and the run would fail only at adversarial.start_step, hours in."""
    def module(**settings) -> AutoencoderModule:  # noqa: ANN003
        autoencoder = VideoAutoencoder(block_out_channels=[8, 16], latent_channels=4, layers_per_block=1)
        return AutoencoderModule(autoencoder, freeze=["decoder"], **settings)

    with pytest.raises(ValueError, match="adaptive false"):
        module(adversarial=AdversarialLoss("patch2d", channels=8, layers=1))
    module(adversarial=AdversarialLoss("patch2d", channels=8, layers=1, adaptive=False))
    module(adversarial=AdversarialLoss("patch2d", channels=8, layers=1), freeze_steps=10)  # frozen for a while only


def test_settings_of_a_technique_that_is_off_are_said_to_be_ignored(caplog: pytest.LogCaptureFixture) -> None:
    def module(**settings) -> AutoencoderModule:  # noqa: ANN003
        return AutoencoderModule(VideoAutoencoder(block_out_channels=[8, 16], latent_channels=4, layers_per_block=1), **settings)

    with caplog.at_level("WARNING", logger="vtok.training.module"):
        module(freeze_steps=100)
        module(joint_mode="alternate")
    assert "model.freeze_steps has no effect without model.freeze" in caplog.text
    assert "model.joint_mode has no effect without model.continuous_weight" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="vtok.training.module"):
        module(freeze=["encoder"], freeze_steps=100)
    assert "no effect" not in caplog.text


@pytest.mark.parametrize("configured_bits", [4, 8], ids=["other projections", "no projections"])
def test_stage_2_refuses_a_tokenizer_frozen_for_good_that_is_not_the_priors(tmp_path: Path, configured_bits: int) -> None:
    """A stage-1 flag (gq_bits 6) not repeated in stage 2: the quantizer's projections were random (4 bits) or
    stage 1's were left out (8 bits: as wide as the latent, no projections), and frozen so for the whole run."""
    torch.manual_seed(0)
    base = {"block_out_channels": [8, 16], "latent_channels": 8, "layers_per_block": 1, "bottleneck": "gq", "gq_groups": 2}
    prior = write_export(VideoAutoencoder(**base, gq_bits=6), tmp_path / "stage1", {})
    with pytest.raises(ValueError, match=r"keeps the quantizer fixed .* configure the prior's quantizer \(gq_bits=6\)"):
        initialise_from_prior(str(prior), VideoAutoencoder(**base, gq_bits=configured_bits), ["encoder", "quantizer"])
    model, _ = initialise_from_prior(str(prior), VideoAutoencoder(**base, gq_bits=6), ["encoder", "quantizer"])
    assert torch.equal(model.quantizer.project_in.weight, load_autoencoder(prior).quantizer.project_in.weight)
    initialise_from_prior(str(prior), VideoAutoencoder(**base, gq_bits=configured_bits), [])  # trained: starts fresh


def test_first_frame_tokens_frozen_at_zero_for_the_whole_run_are_refused(tmp_path: Path) -> None:
    """From a continuous prior, only the regular projections are fitted: the first-frame tokens' read-back
    starts at zero, and a quantizer frozen for good kept it there (tokens counted, changing nothing)."""
    tiny = {"block_out_channels": [8, 16], "latent_channels": 8, "layers_per_block": 1}
    prior = write_export(VideoAutoencoder(bottleneck="kl", **tiny), tmp_path / "kl", {})
    tokenizer = {"bottleneck": "fsq", "fsq_levels": [8, 5, 5], **tiny}
    with pytest.raises(ValueError, match="first-frame tokens' projections start at zero"):
        initialise_from_prior(str(prior), VideoAutoencoder(first_frame_tokens=1, **tokenizer), ["quantizer"])
    initialise_from_prior(str(prior), VideoAutoencoder(first_frame_tokens=1, **tokenizer), ["encoder"])
    initialise_from_prior(str(prior), VideoAutoencoder(**tokenizer), ["quantizer"])  # no first-frame tokens: fitted


def test_a_diffusers_prior_without_readable_weights_is_one_error_naming_the_remedy(tmp_path: Path) -> None:
    """A config.json alone (a download cut short) or a weights file cut short: diffusers' traceback, naming a .bin
    file the folder never had."""
    for case in ("config_only", "cut_short"):
        prior = tiny_wan(tmp_path / case)
        weights = prior / "diffusion_pytorch_model.safetensors"
        if case == "config_only":
            weights.unlink()
        else:
            weights.write_bytes(weights.read_bytes()[:100])
        with pytest.raises((FileNotFoundError, ValueError), match="fetch the prior again") as raised:
            load_diffusers_vae(str(prior))
        assert ("has no weights file" if case == "config_only" else "its weights cannot be read") in str(raised.value)
