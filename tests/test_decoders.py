"""Decoders for very high compression: LTX-Video's patchified 8x32x32 VAE with a non-causal denoising
decoder, WeTok's generative decoder and its second training stage; every preset exports and reloads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from tests.helpers import tiny_fit_args
from vtok import VideoAutoencoder
from vtok.cli import main
from vtok.presets import CONFIG_DIR
from vtok.vae.long_video import temporal_reach

PRESETS = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def preset_autoencoder(name: str, **override) -> VideoAutoencoder:
    """The preset's network with tiny widths (every other field as configured)."""
    config = yaml.safe_load((CONFIG_DIR / f"{name}.yaml").read_text())["model"].get("autoencoder", {})
    config.update(block_out_channels=[8, 16], layers_per_block=1, **override)
    torch.manual_seed(0)
    return VideoAutoencoder(**config).eval()


def test_ltx_preset_compresses_1_to_192_from_patchified_input() -> None:
    model = preset_autoencoder("ltx_8x32x32")
    assert str(model.compression) == "8x32x32" and model.config.patch_size == 4
    assert model.latent_values_per_pixel() == pytest.approx(1 / 192)
    assert model.encoder.conv_in.in_channels == 3 * 4 * 4, "the first convolution runs at 1/4 resolution"
    video = torch.rand(1, 3, 17, 64, 96) * 2 - 1
    with torch.no_grad():
        latents = model.encode(video)
        assert latents.shape == (1, 128, 3, 2, 3)
        assert model.decode(latents).shape == video.shape


def test_the_denoising_decoder_depends_on_the_timestep_and_is_trained_on_noisy_latents() -> None:
    model = preset_autoencoder("ltx_8x32x32")
    for block in model.decoder.modules():
        if hasattr(block, "modulation") and block.modulation is not None:
            torch.nn.init.normal_(block.modulation.linear.weight, std=0.1)  # as training leaves them
    latents = torch.randn(1, 128, 2, 2, 2)
    with torch.no_grad():
        clean, noisy = model.decode(latents), model.decode(latents, timestep=0.05)
        assert not torch.allclose(clean, noisy) and torch.equal(clean, model.decode(latents, timestep=0.0))
    with pytest.raises(ValueError, match="decoder_timestep_conditioning"):
        preset_autoencoder("kl_4x8x8").decode(torch.randn(1, 16, 1, 1, 1), timestep=0.1)
    model.train()
    video = torch.rand(2, 3, 9, 32, 32) * 2 - 1
    torch.manual_seed(1)
    first = model(video).reconstruction
    torch.manual_seed(2)
    seen = []
    hook = model.decoder.register_forward_pre_hook(lambda module, args: seen.append(args))
    output = model(video)
    hook.remove()
    assert not torch.equal(first, output.reconstruction), "training draws t and the noise per step"
    # the decoder reads the latents noised at its t, z_t = (1 - t) z + t noise, and that t (found by a mutation review:
    # without either, the draws above still differed)
    ((decoder_input, timestep),) = seen
    assert timestep.shape == (2,) and timestep.dtype == torch.float32
    assert 0 < timestep.min() and timestep.max() <= model.config.denoise_max_timestep
    t = timestep[:, None, None, None, None]
    noise = (decoder_input - (1 - t) * output.latents) / t
    assert abs(noise.mean()) < 0.2 and 0.8 < noise.std() < 1.2, "standard normal noise"
    assert torch.corrcoef(torch.stack([noise.flatten(), output.latents.flatten()]))[0, 1].abs() < 0.3, "not the latents"


def test_the_denoising_noise_is_the_same_whatever_the_network_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    """On CUDA the latents are channels-last (vtok/vae/layout.py); a noise draw that followed the
    memory layout (randn_like) gave every position other noise there than on a CPU for one seed.
    Here the CPU runs CUDA's layout to compare."""
    model = preset_autoencoder("ltx_8x32x32").train()
    video = torch.rand(2, 3, 9, 32, 32) * 2 - 1
    torch.manual_seed(5)
    channels_first = model(video).reconstruction
    monkeypatch.setattr("vtok.vae.layout.network_layout", lambda device: torch.channels_last_3d)
    torch.manual_seed(5)
    channels_last = model(video).reconstruction
    torch.testing.assert_close(channels_last, channels_first, rtol=1e-4, atol=1e-5)


def test_the_generative_decoder_reads_noise_zero_by_default() -> None:
    model = preset_autoencoder("gq_8x32x32_gd")
    video = torch.rand(1, 3, 9, 64, 64) * 2 - 1
    with torch.no_grad():
        tokens = model.tokenize(video)
        default = model.detokenize(tokens)
        assert torch.equal(default, model.detokenize(tokens)), "zero noise: deterministic"
        sampled = model.decode(model.indices_to_latents(tokens), noise_seed=3)
        assert not torch.equal(sampled, default), "the decoder reads the noise"
        assert torch.equal(sampled, model.decode(model.indices_to_latents(tokens), noise_seed=3)), "seeded"
        assert not torch.equal(sampled, model.decode(model.indices_to_latents(tokens), noise_seed=4))
    assert model.decoder.conv_in.in_channels == model.config.latent_channels + 8
    # in training both paths, discrete and continuous (joint training), read drawn noise (found by a mutation review)
    seen = []
    hook = model.decoder.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    model.train()(video, continuous=True)
    hook.remove()
    assert len(seen) == 2
    for decoder_input in seen:
        noise = decoder_input[:, -8:]
        assert abs(noise.mean()) < 0.2 and 0.8 < noise.std() < 1.2, "standard normal noise"


def test_decode_refuses_latents_of_another_dtype_naming_the_fix_as_encode_does() -> None:
    """A bf16 latent into a float32 model gave torch's "Input type (c10::BFloat16) and bias type (float)"."""
    model = preset_autoencoder("kl_4x8x8")
    latents = torch.randn(1, 16, 2, 2, 2)
    for dtype in (torch.bfloat16, torch.float64, torch.int64):
        fix = rf"the latents are {dtype} and the model torch.float32: use latents.to\(model.dtype\)"
        with pytest.raises(ValueError, match=fix):
            model.decode(latents.to(dtype))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # autocast casts as it goes: allowed
        assert model.decode(latents.bfloat16()).shape == (1, 3, 5, 16, 16)
        for dtype in (torch.float64, torch.float16):  # not what it casts: it failed deep inside a convolution
            with pytest.raises(ValueError, match=rf"the video is {dtype} and the model torch.float32"):
                model.encode(torch.rand(1, 3, 5, 16, 16, dtype=dtype))
            with pytest.raises(ValueError, match=rf"the latents are {dtype} and the model torch.float32"):
                model.decode(latents.to(dtype))
    with pytest.raises(ValueError, match="with none empty"):  # no latent frame: was a convolution's kernel-size error
        model.decode(latents[:, :, :0])


@pytest.mark.parametrize("bottleneck", ["kl", "fsq", "gq"])
def test_a_model_on_the_meta_device_gives_the_shapes_of_its_outputs(bottleneck: str) -> None:
    """Built without memory, a model's encode/decode/tokenize failed in the dtype check's autocast query."""
    with torch.device("meta"):
        model = VideoAutoencoder(block_out_channels=[8, 16], latent_channels=6, layers_per_block=1, bottleneck=bottleneck,
                                 fsq_levels=[8, 5, 5, 5, 5, 5], gq_bits=6, gq_groups=2)  # fmt: skip
    video = torch.empty(2, 3, 9, 16, 16, device="meta")
    latents = model.encode(video)
    assert latents.is_meta and latents.shape == (2, 6, 3, 2, 2)
    assert model.decode(latents).shape == video.shape
    if bottleneck != "kl":
        assert model.tokenize(video).shape[:1] == (2,) and model.tokenize(video).is_meta


def test_decode_refuses_a_noise_seed_or_noise_level_its_decoder_cannot_use() -> None:
    """A noise seed to a decoder without noise channels was ignored in silence (a timestep to an
    unconditioned one raised); a level of 5, -1 or NaN was decoded as given."""
    plain = preset_autoencoder("kl_4x8x8")
    latents = torch.randn(2, 16, 2, 2, 2)
    with pytest.raises(ValueError, match=r"decode\(noise_seed=...\) needs decoder_noise_channels > 0"):
        plain.decode(latents, noise_seed=3)
    denoising = preset_autoencoder("ltx_8x32x32", latent_channels=16)
    for level in (5.0, -1.0, float("nan"), torch.tensor([0.1, 1.5])):
        with pytest.raises(ValueError, match=r"timestep must lie in \[0, 1\]"):
            denoising.decode(latents, timestep=level)
        with pytest.raises(ValueError, match=r"timestep must lie in \[0, 1\]"):
            plain.decode_noised(latents, level, torch.randn_like(latents))
    with pytest.raises(ValueError, match=r"one per clip, \[2\], got shape \(3,\)"):
        denoising.decode(latents, timestep=torch.tensor([0.1, 0.2, 0.3]))
    with torch.no_grad():
        assert denoising.decode(latents, timestep=torch.tensor([0.0, 1.0])).shape == (2, 3, 9, 64, 64)


def test_joint_training_decodes_continuous_latents_through_the_generative_decoder() -> None:
    """forward(continuous=True), what joint discrete-continuous training runs, gives the decoder its
    noise channels on the continuous path too: the same video as decode(encode(..., discrete=False))."""
    model = preset_autoencoder("gq_8x32x32_gd").eval()
    video = torch.rand(1, 3, 9, 64, 64) * 2 - 1
    with torch.no_grad():
        output = model(video, continuous=True)
        expected = model.decode(model.encode(video, discrete=False), discrete=False)
    torch.testing.assert_close(output.continuous_reconstruction, expected)


@pytest.mark.parametrize("preset", ["kl_4x8x8", "ltx_8x32x32"])
def test_non_causal_chunks_blend_into_the_one_pass_result(preset: str) -> None:
    """By default (overlap None) each chunk sees its decoder's whole reach beyond the cross-fade: one
    pass's result (an overlap of 1, the old default, was 33 % off at the LTX preset's depth)."""
    model = preset_autoencoder(preset, latent_channels=4, decoder_causal=False)
    assert temporal_reach(model.decoder) == 9  # about 8 latent frames either way, and the upsampling's repeat
    latents = torch.randn(1, 4, 81, 2, 2)  # past one chunk's window (1 + 36 + 2 x 18): three chunks
    with torch.no_grad():
        model.temporal_chunk = None
        full = model.decode(latents)
        model.temporal_chunk = 4
        assert model.temporal_overlap is None
        torch.testing.assert_close(model.decode(latents), full, atol=1e-5, rtol=0)
        errors = []
        for overlap in (0, 4):
            model.temporal_overlap = overlap
            errors.append((model.decode(latents) - full).abs().mean())
    assert errors[1] < errors[0], "more context, closer to one pass"


def test_stage_two_without_stage_one_s_weights_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """It trained a decoder on a random encoder and quantizer, fixed for the whole run, without a word; so did a job
    script that always passes `--ckpt_path last`, at its first start (no checkpoint yet: a fresh run)."""
    for resume in ([], ["--ckpt_path", "last"]):
        with pytest.raises(SystemExit) as exit_info:
            stage_two = CONFIG_DIR / "gq_8x32x32_gd_stage2.yaml"
            main(tiny_fit_args(tmp_path, 1, "--model.loss.perceptual_weight", "0", *resume, config=stage_two))
        error = capsys.readouterr().err
        assert exit_info.value.code == 2 and "keeps the encoder and quantizer fixed for the whole run" in error, error[-2000:]
        assert "--model.init_from" in error and not (tmp_path / "run").exists()


def test_the_readme_gives_the_ltx_presets_long_decode_window_from_its_reach() -> None:
    """The README said 18 / 36 / 72 latent frames, the reach of a one-layer test model, where the
    preset's own depth reaches 11 latent frames: overlap 22, chunks of 44, a window of about 88."""
    config = yaml.safe_load((CONFIG_DIR / "ltx_8x32x32.yaml").read_text())["model"]["autoencoder"]
    with torch.device("meta"):  # the preset's real widths and depth, without their memory
        overlap = 2 * temporal_reach(VideoAutoencoder(**config).decoder)
    readme = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text().split())
    assert f"{overlap} latent frames for the `ltx_8x32x32` preset, whose reach is {overlap // 2}" in readme
    assert f"({2 * overlap} latent frames for the `ltx_8x32x32` preset)" in readme
    assert f"(about `4·overlap` latent frames, {4 * overlap} for the `ltx_8x32x32` preset" in readme


def test_stage_two_trains_only_the_decoder(tmp_path: Path) -> None:
    tiny = ["--model.autoencoder.block_out_channels", "[8, 16]", "--model.autoencoder.layers_per_block", "1",
            "--model.loss.perceptual_weight", "0", "--model.adversarial.channels", "8",
            "--data.num_frames", "9", "--data.size", "64", "--trainer.limit_val_batches", "0", "--trainer.logger", "false"]  # fmt: skip
    stage1 = tmp_path / "stage1"
    main(tiny_fit_args(stage1, 2, *tiny, config=CONFIG_DIR / "gq_8x32x32_gd.yaml"))
    first = stage1 / "run" / "checkpoints" / "last.ckpt"
    main(tiny_fit_args(tmp_path, 3, *tiny, "--model.init_from", str(first), "--model.ema_decay", "null",
                       config=CONFIG_DIR / "gq_8x32x32_gd_stage2.yaml"))  # fmt: skip
    stage1_state = torch.load(first, weights_only=True)["state_dict"]
    # init_from reads a checkpoint's EMA weights when the run kept them (what it would export)
    before = {"autoencoder." + k[len("ema.module."):]: v for k, v in stage1_state.items() if k.startswith("ema.module.")}
    after = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    live = {k: v for k, v in after.items() if k.startswith("autoencoder.")}
    for name, value in live.items():
        if name.startswith(("autoencoder.encoder.", "autoencoder.quantizer.")):
            assert torch.equal(value, before[name]), f"{name} changed in stage 2"
    changed = [n for n in live if n.startswith("autoencoder.decoder.") and not torch.equal(live[n], before[n])]
    assert changed, "stage 2 trains the decoder"


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_exports_and_reloads_with_identical_outputs(preset: str, tmp_path: Path) -> None:
    model = preset_autoencoder(preset)
    model.save_pretrained(tmp_path)
    loaded = VideoAutoencoder.from_pretrained(tmp_path).eval()
    t, s = model.compression.temporal, model.compression.spatial
    video = torch.rand(1, 3, 1 + 2 * t, 2 * s, 2 * s) * 2 - 1
    with torch.no_grad():
        assert torch.equal(model(video).reconstruction, loaded(video).reconstruction)
        if model.is_discrete:
            tokens = model.tokenize(video)
            assert torch.equal(model.detokenize(tokens), loaded.detokenize(tokens))
