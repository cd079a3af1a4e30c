"""save_pretrained / from_pretrained round-trips VideoAutoencoder exactly, as flat JSON + safetensors."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from vtok import VideoAutoencoder
from vtok.vae.timestep import Modulation


def test_round_trip_gives_identical_outputs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = VideoAutoencoder(
        temporal_compression=2, spatial_compression=8, latent_channels=6, block_out_channels=(8, 16), layers_per_block=1
    ).eval()
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["block_out_channels"] == [8, 16] and config["bottleneck"] == "kl"
    assert all(not isinstance(v, dict) for v in config.values()), "the config must stay flat"
    assert list(tmp_path.glob("*.safetensors")), "weights must be safetensors, not pickles"

    umask = os.umask(0o022)
    try:  # others can read the weights as they can the config (diffusers leaves them owner-only)
        model.save_pretrained(tmp_path)
    finally:
        os.umask(umask)
    assert {path.name: path.stat().st_mode & 0o777 for path in tmp_path.iterdir()} == {
        "config.json": 0o644, "diffusion_pytorch_model.safetensors": 0o644
    }
    loaded = VideoAutoencoder.from_pretrained(tmp_path).eval()
    video = torch.rand(2, 3, 5, 16, 16) * 2 - 1
    with torch.no_grad():
        assert torch.equal(model.encode(video), loaded.encode(video))
        latents = model.encode(video)
        assert torch.equal(model.decode(latents), loaded.decode(latents))
        assert torch.equal(model(video).reconstruction, loaded(video).reconstruction)
    assert str(loaded.compression) == "2x8x8"


def test_kl_latents_of_a_batch_save_with_safetensors_alone(tmp_path: Path) -> None:
    """encode returned the mean as a view of [B, 2C, ...] features: safetensors refused it and
    torch.save wrote the log-variance too."""
    torch.manual_seed(0)
    model = VideoAutoencoder(latent_channels=4, block_out_channels=(8, 8), layers_per_block=1).eval()
    with torch.no_grad():
        latents = model.encode(torch.rand(2, 3, 5, 16, 16) * 2 - 1)
    save_file({"latents": latents}, tmp_path / "latents.safetensors")
    assert torch.equal(load_file(tmp_path / "latents.safetensors")["latents"], latents)
    assert latents.untyped_storage().nbytes() == latents.numel() * latents.element_size()


@pytest.mark.parametrize("edit", [{"fsq_levels": [5, 8, 8]}, {"frame_padding": "zeros"}, {"temporal_compression": 2}])
def test_a_saved_folder_whose_config_was_edited_is_refused(tmp_path: Path, edit: dict) -> None:
    """The weights' shapes stay the same under these edits: a plain save_pretrained recorded nothing to
    check them against, and another network loaded the same weights without a word."""
    tiny = {"latent_channels": 6, "block_out_channels": (8, 16), "layers_per_block": 1, "bottleneck": "fsq"}
    VideoAutoencoder(fsq_levels=[8, 8, 5], **tiny).save_pretrained(tmp_path / "saved")
    assert VideoAutoencoder.from_pretrained(tmp_path / "saved") is not None, "unedited, it loads"
    config = {**json.loads((tmp_path / "saved" / "config.json").read_text()), **edit}
    (tmp_path / "saved" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="the config was edited"):
        VideoAutoencoder.from_pretrained(tmp_path / "saved")



def test_a_config_edited_to_other_shapes_is_refused_for_the_edit_before_any_weight_is_read(tmp_path: Path) -> None:
    """The fingerprint was checked once the weights had loaded: an edit changing their shapes failed first, blamed
    on the weights, with diffusers' advice to pass ignore_mismatched_sizes=True (random layers)."""
    from vtok.export import load_autoencoder
    from vtok.vae.export_config import ExportConfigError

    VideoAutoencoder(latent_channels=6, block_out_channels=(8,), layers_per_block=1).save_pretrained(tmp_path)
    config = {**json.loads((tmp_path / "config.json").read_text()), "latent_channels": 12}
    (tmp_path / "config.json").write_text(json.dumps(config))
    loads = [lambda: load_autoencoder(tmp_path), lambda: VideoAutoencoder.load_config(tmp_path)]
    loads += [lambda kw=kw: VideoAutoencoder.from_pretrained(tmp_path, **kw)
              for kw in ({}, {"device_map": "cpu"}, {"low_cpu_mem_usage": False})]  # fmt: skip
    for load in loads:
        with pytest.raises(ExportConfigError, match="the config was edited after export") as error:
            load()
        assert "ignore_mismatched_sizes" not in str(error.value) and "\n" not in str(error.value)


def test_an_export_of_a_newer_vtok_with_a_field_this_one_lacks_asks_for_an_upgrade_not_a_restore(tmp_path: Path) -> None:
    """A later vtok that adds a constructor field writes it and hashes it; this one dropped it, the fingerprint
    could not match, and the error blamed an edit and advised restoring the file or re-exporting."""
    from vtok.vae.export_config import FINGERPRINT_FIELDS_KEY, FINGERPRINT_KEY, ExportConfigError, config_fingerprint

    VideoAutoencoder(latent_channels=6, block_out_channels=(8,), layers_per_block=1).save_pretrained(tmp_path)
    config = {**json.loads((tmp_path / "config.json").read_text()), "decoder_attention": False}
    config[FINGERPRINT_FIELDS_KEY] = [*config[FINGERPRINT_FIELDS_KEY], "decoder_attention"]
    config[FINGERPRINT_KEY] = config_fingerprint(config, config[FINGERPRINT_FIELDS_KEY])  # as the newer vtok wrote it
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ExportConfigError, match="written by a newer vtok: its fields decoder_attention are unknown"):
        VideoAutoencoder.from_pretrained(tmp_path)


def test_a_denoising_decoder_runs_in_bfloat16_close_to_float32(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = VideoAutoencoder(
        temporal_compression=2, spatial_compression=8, latent_channels=6, block_out_channels=(8, 16),
        layers_per_block=1, decoder_causal=False, decoder_timestep_conditioning=True,
    )  # fmt: skip
    for module in model.decoder.modules():  # the scale and shift start at zero: make the timestep matter
        if isinstance(module, Modulation):
            torch.nn.init.normal_(module.linear.weight, std=0.1)
    model.save_pretrained(tmp_path)
    full = VideoAutoencoder.from_pretrained(tmp_path).eval()
    half = VideoAutoencoder.from_pretrained(tmp_path).eval().to(torch.bfloat16)
    video = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    with torch.no_grad():
        latents = full.encode(video)
        assert (full.decode(latents, timestep=0.1) - full.decode(latents)).abs().mean() > 0.02  # the timestep counts
        for timestep in (None, 0.1):
            reference = full.decode(latents, timestep=timestep)
            decoded = half.decode(half.encode(video.bfloat16()), timestep=timestep)  # raised a dtype mismatch
            assert decoded.dtype == torch.bfloat16
            assert (decoded.float() - reference).abs().mean() < 0.05 * reference.abs().mean()
        out = half(video.bfloat16(), sample_posterior=False)
    assert out.reconstruction.dtype == torch.bfloat16


@pytest.fixture()
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection attempt fails the test (vtok never downloads unasked)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access: {args[1:]}")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_a_missing_folder_is_file_not_found_without_asking_the_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: None
) -> None:
    monkeypatch.chdir(tmp_path)
    start = time.monotonic()
    for missing in (tmp_path / "missing", "./missing", "some/missing_folder", "missing"):
        with pytest.raises(FileNotFoundError, match="missing"):
            VideoAutoencoder.from_pretrained(missing)
    assert time.monotonic() - start < 5
    (tmp_path / "model.ckpt").write_text("a file")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        VideoAutoencoder.from_pretrained(tmp_path / "model.ckpt")


def test_a_folder_under_the_home_directory_loads_from_a_tilde_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: None
) -> None:
    """``~/exports/x`` from Python: found as a folder, then handed unexpanded to diffusers, which took it for a Hub id."""
    from vtok.export import load_autoencoder

    monkeypatch.setenv("HOME", str(tmp_path))
    model = VideoAutoencoder(block_out_channels=(8, 16), latent_channels=4, layers_per_block=1)
    model.save_pretrained(tmp_path / "exports" / "tiny")
    for loaded in (VideoAutoencoder.from_pretrained("~/exports/tiny"), load_autoencoder("~/exports/tiny")):
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


def test_a_hub_model_in_the_standard_cache_loads_offline(tmp_path: Path, no_network: None) -> None:
    torch.manual_seed(0)
    model = VideoAutoencoder(spatial_compression=8, latent_channels=4, block_out_channels=(8,), layers_per_block=1)
    commit = "0" * 40
    repo = tmp_path / "cache" / "models--someone--tiny-vae"
    model.save_pretrained(repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    loaded = VideoAutoencoder.from_pretrained("someone/tiny-vae", cache_dir=tmp_path / "cache")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    with pytest.raises(FileNotFoundError, match="local_files_only=False"):
        VideoAutoencoder.from_pretrained("someone/other-vae", cache_dir=tmp_path / "cache")


def test_a_dtype_by_name_loads_in_it_and_a_device_map_splitting_the_model_is_refused(tmp_path: Path) -> None:
    """diffusers took torch_dtype="bfloat16" for no dtype and loaded float32 with a logged warning; device_map="auto"
    failed with a message about _no_split_modules meant for the model's developers."""
    VideoAutoencoder(latent_channels=4, block_out_channels=(8,), layers_per_block=1).save_pretrained(tmp_path)
    for name, dtype in (("bfloat16", torch.bfloat16), ("torch.float16", torch.float16)):
        assert VideoAutoencoder.from_pretrained(tmp_path, torch_dtype=name).dtype == dtype
    assert VideoAutoencoder.from_pretrained(tmp_path, dtype="bfloat16").dtype == torch.bfloat16
    with pytest.raises(ValueError, match=r"torch_dtype='bf16'\): not a torch dtype; give one \(torch.bfloat16\)"):
        VideoAutoencoder.from_pretrained(tmp_path, torch_dtype="bf16")
    with pytest.raises(ValueError, match="not a torch dtype"):
        VideoAutoencoder.from_pretrained(tmp_path, torch_dtype="Tensor")  # an attribute of torch, not a dtype
    for one_device in ("cpu", torch.device("cpu"), {"": "cpu"}):
        assert VideoAutoencoder.from_pretrained(tmp_path, device_map=one_device).device.type == "cpu"
    for split in ("auto", "balanced", "sequential", {"encoder": "cpu", "decoder": "cpu"}, "gpu", -1):
        with pytest.raises(ValueError, match=r"loads whole onto one device .* give device_map='cuda'"):
            VideoAutoencoder.from_pretrained(tmp_path, device_map=split)


@pytest.mark.parametrize("bottleneck", ["kl", "fsq", "gq"])
def test_latents_and_videos_come_out_contiguous_from_a_channels_last_network(
    bottleneck: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On CUDA the network runs channels-last and cuDNN answers in that layout: FSQ's and GQ's latents came out
    channels-last, and safetensors refused to save them (KL's were made contiguous). The CPU plays cuDNN here."""
    monkeypatch.setattr("vtok.vae.layout.network_layout", lambda device: torch.channels_last_3d)
    plain = torch.nn.Conv3d._conv_forward

    def as_cudnn(self: torch.nn.Conv3d, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        y = plain(self, x, weight, bias)
        channels_last = x.is_contiguous(memory_format=torch.channels_last_3d) and not x.is_contiguous()
        return y.contiguous(memory_format=torch.channels_last_3d) if channels_last else y

    monkeypatch.setattr(torch.nn.Conv3d, "_conv_forward", as_cudnn)
    settings = {"kl": {}, "fsq": {"fsq_levels": [5, 5, 5]}, "gq": {"gq_bits": 6, "gq_groups": 2}}[bottleneck]
    model = VideoAutoencoder(block_out_channels=[8, 16], latent_channels=4, layers_per_block=1, bottleneck=bottleneck, **settings)
    with torch.no_grad():
        latents = model.eval().encode(torch.rand(1, 3, 9, 32, 32) * 2 - 1)
        outputs = {"latents": latents, "video": model.decode(latents)}
        if model.is_discrete:
            outputs["continuous"] = model.encode(torch.rand(1, 3, 9, 32, 32) * 2 - 1, discrete=False)
    save_file(outputs, tmp_path / "outputs.safetensors")  # refuses a tensor that is not contiguous
