"""vtok export: the folder reloads with torch + diffusers + vtok alone and reproduces the module."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.helpers import tiny_fit_args
from vtok import VideoAutoencoder
from vtok.cli import main
from vtok.export import EXPORT_FORMAT, load_autoencoder
from vtok.training import AutoencoderModule
from vtok.vae.strict_loading import IncompleteWeightsError
from vtok.vae.export_config import config_fingerprint, constructor_fields

FIXTURE = Path(__file__).parent / "fixtures" / "export_v1"
BOTTLENECKS = {
    "kl": [],
    "fsq": ["--model.autoencoder.bottleneck", "fsq", "--model.autoencoder.fsq_levels", "[8, 5, 5, 5]",
            "--model.autoencoder.decoder_causal", "false"],  # a field off its default, whose weights have the same shapes
    "gq": ["--model.autoencoder.bottleneck", "gq", "--model.autoencoder.gq_bits", "12", "--model.autoencoder.gq_groups", "2"],
}


def _train(tmp_path: Path, bottleneck: str) -> Path:
    main(tiny_fit_args(tmp_path, 3, "--trainer.logger", "false", "--trainer.limit_val_batches", "0",
                       "--model.ema_decay", "0.9", *BOTTLENECKS[bottleneck]))  # fmt: skip
    return tmp_path / "run" / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize("bottleneck", BOTTLENECKS)
def test_export_reproduces_the_training_module_exactly(tmp_path: Path, bottleneck: str) -> None:
    checkpoint_path = _train(tmp_path, bottleneck)
    main(["export", "--ckpt", str(checkpoint_path), "--out", str(tmp_path / "export")])
    exported = VideoAutoencoder.from_pretrained(tmp_path / "export").eval()

    checkpoint = torch.load(checkpoint_path, weights_only=True)
    module = AutoencoderModule(VideoAutoencoder(**checkpoint["vtok"]["autoencoder_config"]), ema_decay=0.9)
    module.load_state_dict(checkpoint["state_dict"])
    trained = module.inference_autoencoder.eval()  # the EMA weights, as validation uses them
    assert not torch.equal(trained.encoder.conv_in.weight, module.autoencoder.encoder.conv_in.weight)
    # the checkpoint records every field (found by a mutation review: decoder_causal dropped, the export was causal)
    assert checkpoint["vtok"]["autoencoder_config"]["decoder_causal"] is exported.config.decoder_causal is (bottleneck != "fsq")

    video = torch.rand(2, 3, 5, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(exported(video).reconstruction, trained(video).reconstruction)
        if bottleneck != "kl":
            assert torch.equal(exported.tokenize(video), trained.tokenize(video))
    config = json.loads((tmp_path / "export" / "config.json").read_text())
    assert config["_vtok_format"] == EXPORT_FORMAT and config["_vtok_compression"] == "4x8x8"
    assert config["_vtok_weights"] == "ema" and config["_vtok_training_step"] == 3
    assert config["_vtok_clip"] == {"num_frames": 5, "size": [32, 32], "frame_stride": 1, "fps": None}
    assert config["_vtok_joint_training"] is False, "trained without model.continuous_weight"
    assert config["_vtok_input_range"] == [-1.0, 1.0]
    assert (config["_vtok_codebook_size"] is None) == (bottleneck == "kl")
    names = sorted(p.name for p in (tmp_path / "export").iterdir())
    assert names == ["config.json", "diffusion_pytorch_model.safetensors"], "no pickles, no extras"
    weights = load_file(tmp_path / "export" / "diffusion_pytorch_model.safetensors")
    assert not any(k.startswith(("adversarial", "ema", "loss")) for k in weights)


def test_no_ema_exports_the_live_weights(tmp_path: Path) -> None:
    checkpoint_path = _train(tmp_path, "kl")
    main(["export", "--ckpt", str(checkpoint_path), "--out", str(tmp_path / "live"), "--no-ema"])
    state = torch.load(checkpoint_path, weights_only=True)["state_dict"]
    exported = load_file(tmp_path / "live" / "diffusion_pytorch_model.safetensors")
    live = {k.removeprefix("autoencoder."): v for k, v in state.items() if k.startswith("autoencoder.")}
    assert exported.keys() == live.keys() and all(torch.equal(exported[k], live[k]) for k in live)
    assert not torch.equal(live["encoder.conv_in.weight"], state["ema.module.encoder.conv_in.weight"])
    assert json.loads((tmp_path / "live" / "config.json").read_text())["_vtok_weights"] == "live"


def test_an_export_loads_without_lightning(tmp_path: Path) -> None:
    code = (
        "import sys, torch; from vtok import VideoAutoencoder; "
        f"m = VideoAutoencoder.from_pretrained({str(FIXTURE)!r}); m.decode(m.encode(torch.zeros(1, 3, 5, 16, 16))); "
        "assert not [k for k in sys.modules if k.split('.')[0] in ('lightning', 'pytorch_lightning', 'wandb')], 'lightning imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_format_1_fixture_still_loads_and_reproduces_its_outputs() -> None:
    model = load_autoencoder(FIXTURE)
    expected = load_file(FIXTURE / "expected.safetensors")
    with torch.no_grad():
        assert torch.equal(model.tokenize(expected["video"]), expected["tokens"])
        torch.testing.assert_close(model.detokenize(expected["tokens"]), expected["reconstruction"])
    assert model.config["_vtok_format"] == 1


def test_latent_statistics_are_stored_in_the_export(tmp_path: Path, video_folder: Path) -> None:
    from vtok.commands.protocol import ClipProtocol, clip_dataset
    from vtok.export import latent_statistics

    # per channel, over every batch element and position of tensors of any batch size and length
    parts = [torch.randn(2, 3, 1, 2, 2) * 3 + 1, torch.randn(1, 3, 4, 2, 3) - 2]
    flat = torch.cat([z.movedim(1, 0).flatten(1) for z in parts], dim=1).double()
    stats = latent_statistics(parts)
    torch.testing.assert_close(torch.tensor(stats["mean"], dtype=torch.float64), flat.mean(1))
    torch.testing.assert_close(torch.tensor(stats["std"], dtype=torch.float64), flat.std(1, correction=0))
    # first-frame tokens' channels (the last one here) over the first latent frame alone, not its zeros after it
    first = latent_statistics(parts, first_frame_channels=1)
    assert first["mean"][:2] == stats["mean"][:2] and first["std"][:2] == stats["std"][:2]
    holding = torch.cat([z[:, 2, :1].flatten() for z in parts]).double()
    assert (first["mean"][2], first["std"][2]) == pytest.approx((holding.mean().item(), holding.std(correction=0).item()))

    checkpoint_path = _train(tmp_path, "kl")
    main(["export", "--ckpt", str(checkpoint_path), "--out", str(tmp_path / "export"),
          "--latent-stats", str(video_folder), "--frames", "5", "--size", "32"])  # fmt: skip
    model = load_autoencoder(tmp_path / "export")
    mean, std = model.config["_vtok_latent_mean"], model.config["_vtok_latent_std"]
    assert len(mean) == len(std) == 8 and all(s > 0 for s in std)
    assert model.config["_vtok_latent_stats_protocol"] == {
        "frames": 5, "height": 32, "width": 32, "stride": 1, "fps": None, "crop": "centre", "clip": "centre",
        "videos": 8, "skipped_files": 0,
    }  # fmt: skip
    # the exported model's latents of the same centre clips, measured here with plain torch
    clips = clip_dataset(ClipProtocol(frames=5, height=32, width=32), str(video_folder), model)
    with torch.no_grad():
        latents = torch.cat([model.encode(clips[(0, i)]["video"][None]) for i in range(len(clips))])
    assert len(clips) == 8 and latents.shape == (8, 8, 2, 4, 4)
    flat = latents.movedim(1, 0).flatten(1).double()
    close = {"rtol": 1e-5, "atol": 1e-6}
    torch.testing.assert_close(torch.tensor(mean, dtype=torch.float64), flat.mean(1), **close)
    torch.testing.assert_close(torch.tensor(std, dtype=torch.float64), flat.std(1, correction=0), **close)


def test_an_export_with_latent_statistics_loads_through_every_loader(
    fsq_run: dict[str, Path], video_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from vtok.export import load_autoencoder_and_metadata
    from vtok.training.priors import initialise_from_prior

    folder = tmp_path / "export"
    main(["export", "--ckpt", str(fsq_run["checkpoint"]), "--out", str(folder), "--latent-stats", str(video_folder),
          "--max-videos", "3", "--frames", "9", "--size", "32", "48", "--fps", "12"])  # fmt: skip
    recorded = json.loads((folder / "config.json").read_text())["_vtok_latent_stats_protocol"]
    assert recorded == {
        "frames": 9, "height": 32, "width": 48, "stride": 1, "fps": 12.0, "crop": "centre", "clip": "centre",
        "videos": 3, "skipped_files": 0,
    }  # fmt: skip
    reference = load_autoencoder(fsq_run["export"])  # the same weights, exported without statistics
    video = torch.rand(1, 3, 5, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    model, metadata = load_autoencoder_and_metadata(folder)
    assert metadata["_vtok_latent_stats_protocol"] == recorded
    loaded = [VideoAutoencoder.from_pretrained(folder), load_autoencoder(folder), model]
    loaded.append(initialise_from_prior(str(folder), VideoAutoencoder.from_config(reference.config))[0])  # model.init_from
    with torch.no_grad():
        for each in loaded:
            assert torch.equal(each.eval().tokenize(video), reference.tokenize(video))
    out = tmp_path / "eval"  # and the commands that load it
    main(["evaluate", "--model", str(folder), "--data", str(video_folder), "--out", str(out), "--max-videos", "1",
          "--pictures", "0"])  # fmt: skip
    assert json.loads((out / "metrics.json").read_text())["model"]["path"] == str(folder)
    main(["tokenize", "--model", str(folder), "--data", str(video_folder), "--out", str(tmp_path / "tokens"),
          "--frames", "5", "--size", "32"])  # fmt: skip
    assert (tmp_path / "tokens" / "index.jsonl").is_file()
    # an export without the key, as older versions wrote them, loads as before
    assert "_vtok_latent_stats_protocol" not in json.loads((FIXTURE / "config.json").read_text())
    assert "_vtok_latent_stats_protocol" not in load_autoencoder(fsq_run["export"]).config


def _export_error(capsys: pytest.CaptureFixture, *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(["export", *argv])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert "Traceback" not in message
    return message


def test_bad_inputs_are_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    torch.save({"state_dict": {}}, tmp_path / "foreign.ckpt")
    assert "not a vtok training checkpoint" in _export_error(capsys, "--ckpt", str(tmp_path / "foreign.ckpt"), "--out", str(tmp_path / "o"))
    torch.save({"state_dict": {}, "vtok": {"autoencoder_class": "OtherModel"}}, tmp_path / "other.ckpt")
    assert "'OtherModel', not a VideoAutoencoder" in _export_error(capsys, "--ckpt", str(tmp_path / "other.ckpt"), "--out", str(tmp_path / "o"))

    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="is not a vtok export"):
        load_autoencoder(tmp_path / "empty")
    corrupted = tmp_path / "corrupted"
    corrupted.mkdir()
    (corrupted / "config.json").write_text((FIXTURE / "config.json").read_text())
    weights = (FIXTURE / "diffusion_pytorch_model.safetensors").read_bytes()
    (corrupted / "diffusion_pytorch_model.safetensors").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(ValueError, match="cannot be loaded"):
        load_autoencoder(corrupted)
    with pytest.raises(FileNotFoundError):
        load_autoencoder(tmp_path / "nowhere")


def test_a_folder_an_export_s_file_or_a_file_torch_cannot_read_is_named_for_what_it_is(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """An export folder was "no checkpoint at" it; a non-torch file or one holding objects came with torch's
    advice to load it with weights_only=False (running its code); a cut-short checkpoint's reason was cut mid-sentence."""
    torch.save({"state_dict": {"w": torch.zeros(2**18)}}, tmp_path / "whole.ckpt")
    (tmp_path / "cut.ckpt").write_bytes((tmp_path / "whole.ckpt").read_bytes()[:100_000])  # as a copy cut short
    torch.save({"state_dict": {}, "vtok": {}, "args": argparse.Namespace(lr=1.0)}, tmp_path / "objects.ckpt")
    (tmp_path / "runs").mkdir()
    (tmp_path / "not_a_checkpoint.ckpt").write_text("hello")
    (tmp_path / "clip.mp4").write_bytes(b"\x00\x00\x00\x20ftypisom" + bytes(200))
    for ckpt, message in [
        (FIXTURE, f"{FIXTURE} is a folder (an export? it holds config.json), not a training checkpoint: give a .ckpt file"),
        (tmp_path / "runs", "runs is a folder, not a training checkpoint: give a .ckpt file written by `vtok fit`"),
        (FIXTURE / "config.json", f"config.json is a file of the export folder {FIXTURE}: give the folder itself"),
        (FIXTURE / "diffusion_pytorch_model.safetensors", f"is a file of the export folder {FIXTURE}: give the folder itself"),
        (tmp_path / "not_a_checkpoint.ckpt", "not_a_checkpoint.ckpt is not a torch checkpoint (a file written by `vtok fit`"),
        (tmp_path / "clip.mp4", "clip.mp4 is not a torch checkpoint (a file written by `vtok fit` / torch.save)"),
        (tmp_path / "objects.ckpt", "holding Python objects (argparse.Namespace) beyond tensors and plain data"),
        (tmp_path / "cut.ckpt", "cut.ckpt is not a readable torch checkpoint (PytorchStreamReader failed reading zip archive"),
    ]:
        error = _export_error(capsys, "--ckpt", str(ckpt), "--out", str(tmp_path / "o")).strip()
        assert error.startswith("vtok export: error:") and message in error and "\n" not in error, error
        assert "weights_only" not in error, error
    assert error.endswith("modified after saving.)"), f"torch's reason whole: {error}"  # the cut-short checkpoint's
    assert not (tmp_path / "o").exists()
    with pytest.raises(ValueError, match="give the folder itself"):  # what a loader is given
        load_autoencoder(FIXTURE / "config.json")


def test_weights_missing_a_tensor_are_refused_not_filled_with_random_layers(tmp_path: Path) -> None:
    # diffusers only warns when a file lacks tensors the config builds; vtok refuses, naming them
    incomplete = tmp_path / "incomplete"
    incomplete.mkdir()
    (incomplete / "config.json").write_text((FIXTURE / "config.json").read_text())
    weights = load_file(FIXTURE / "diffusion_pytorch_model.safetensors")
    dropped = sorted(weights)[0]
    del weights[dropped]
    save_file(weights, incomplete / "diffusion_pytorch_model.safetensors")
    with pytest.raises(ValueError, match=f"1 tensors missing from the weights \\(first: {dropped}\\)"):
        load_autoencoder(incomplete)
    # diffusers' own entry point, as a user would call it; with a device_map it failed first on a meta tensor
    for kwargs in ({}, {"device_map": "cpu"}):
        with pytest.raises(IncompleteWeightsError, match=dropped):
            VideoAutoencoder.from_pretrained(incomplete, **kwargs)
    sharded = tmp_path / "sharded"  # a sharded save missing a tensor in one of its shards
    VideoAutoencoder.from_pretrained(FIXTURE).save_pretrained(sharded, max_shard_size="20KB")
    index = json.loads((sharded / "diffusion_pytorch_model.safetensors.index.json").read_text())
    shard = sharded / index["weight_map"][dropped]
    save_file({k: v for k, v in load_file(shard).items() if k != dropped}, shard)
    with pytest.raises(IncompleteWeightsError, match=f"1 tensors missing from the weights \\(first: {dropped}\\)"):
        VideoAutoencoder.from_pretrained(sharded, device_map="cpu")
    config = json.loads((FIXTURE / "config.json").read_text())
    config["layers_per_block"] = config["layers_per_block"] + 1  # a config edited to a deeper network
    (incomplete / "config.json").write_text(json.dumps(config))
    save_file(load_file(FIXTURE / "diffusion_pytorch_model.safetensors"), incomplete / "diffusion_pytorch_model.safetensors")
    with pytest.raises(IncompleteWeightsError, match="tensors missing from the weights"):
        load_autoencoder(incomplete)
    # a tensor of another shape: the error names it and both shapes, not diffusers' advice to load random layers
    weights = load_file(FIXTURE / "diffusion_pytorch_model.safetensors")
    built = weights["encoder.conv_in.bias"].numel()
    weights["encoder.conv_in.bias"] = torch.zeros(built + 1)
    save_file(weights, incomplete / "diffusion_pytorch_model.safetensors")
    (incomplete / "config.json").write_text((FIXTURE / "config.json").read_text())
    shapes = re.escape(f"another shape than the config builds (first: encoder.conv_in.bias: [{built + 1}] in the file, ")
    for load in (load_autoencoder, VideoAutoencoder.from_pretrained):
        with pytest.raises(IncompleteWeightsError, match=shapes + re.escape(f"[{built}] built)")) as error:
            load(incomplete)
        assert "ignore_mismatched_sizes" not in str(error.value)



def test_an_export_over_a_sharded_save_replaces_it_and_a_failed_one_leaves_the_folder_as_it_was(tmp_path: Path) -> None:
    """The sharded save's index stayed beside the new single file, naming the shards the save removed: the
    export said "exported" and would not load."""
    from vtok.export import write_export

    weights = "diffusion_pytorch_model"
    tiny = {"latent_channels": 4, "block_out_channels": (8,), "layers_per_block": 1}
    old, new = (VideoAutoencoder(**tiny) for _ in range(2))
    out = tmp_path / "export"
    old.save_pretrained(out, max_shard_size="20KB")
    assert (out / f"{weights}.safetensors.index.json").is_file()
    (out / "README.md").write_text("a model card")  # not a file of the save: kept
    before = sorted(path.name for path in out.iterdir())
    with pytest.raises(TypeError):
        write_export(new, out, {"_vtok_training_step": object()})  # fails once the weights are written
    assert sorted(path.name for path in out.iterdir()) == before, "a failed export leaves the folder as it was"
    write_export(new, out, {"_vtok_training_step": 7})
    assert sorted(path.name for path in out.iterdir()) == ["README.md", "config.json", f"{weights}.safetensors"]
    loaded = VideoAutoencoder.from_pretrained(out)
    assert loaded.config["_vtok_training_step"] == 7
    assert all(torch.equal(a, b) for a, b in zip(new.state_dict().values(), loaded.state_dict().values()))
    with pytest.raises(TypeError):
        write_export(new, tmp_path / "fresh", {"_vtok_training_step": object()})
    assert not (tmp_path / "fresh").exists()

def test_a_checkpoint_whose_config_does_not_fit_its_weights_is_refused(tmp_path: Path) -> None:
    checkpoint = torch.load(_train(tmp_path, "kl"), weights_only=True)
    checkpoint["vtok"]["autoencoder_config"]["latent_channels"] += 1
    torch.save(checkpoint, tmp_path / "mismatched.ckpt")
    with pytest.raises(ValueError, match="do not fit its recorded config"):
        load_autoencoder(tmp_path / "mismatched.ckpt")


def test_latent_statistics_skip_unreadable_videos_and_count_them(
    fsq_run: dict[str, Path], mixed_folder: tuple[Path, dict[str, str]], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from vtok.commands.protocol import ClipProtocol, clip_dataset
    from vtok.export import latent_statistics

    folder, broken = mixed_folder
    main(["export", "--ckpt", str(fsq_run["checkpoint"]), "--out", str(tmp_path / "export"),
          "--latent-stats", str(folder), "--frames", "5", "--size", "32"])  # fmt: skip
    assert f"latent statistics from 4 videos ({len(broken)} skipped)" in capsys.readouterr().out
    model = load_autoencoder(tmp_path / "export")
    recorded = model.config["_vtok_latent_stats_protocol"]
    assert recorded["videos"] == 4 and recorded["skipped_files"] == len(broken) and recorded["frames"] == 5
    good = sorted(str(p) for p in folder.glob("*.mp4") if p.name not in broken)  # each once, no stand-ins
    clips = clip_dataset(ClipProtocol(frames=5, height=32, width=32), str(folder), model)
    with torch.no_grad():
        expected = latent_statistics([model.encode(clips.load_with_info(clips.files.index(f))[0][None]) for f in good])
    close = {"rtol": 1e-5, "atol": 1e-6}
    torch.testing.assert_close(torch.tensor(model.config["_vtok_latent_mean"]), torch.tensor(expected["mean"]), **close)
    torch.testing.assert_close(torch.tensor(model.config["_vtok_latent_std"]), torch.tensor(expected["std"]), **close)



def test_latent_statistics_encode_on_the_device_asked_for_reading_the_checkpoint_once(
    fsq_run: dict[str, Path], video_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--latent-stats encoded on the CPU, whatever the machine had, and read the checkpoint twice."""
    loads: list[Path] = []
    encoded_on: set[tuple[str, str]] = set()
    load, encode = torch.load, VideoAutoencoder.encode

    def counting_load(path: Path, *args: object, **kwargs: object) -> object:
        loads.append(Path(path))
        return load(path, *args, **kwargs)

    def recording_encode(self: VideoAutoencoder, video: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        encoded_on.add((video.device.type, next(self.parameters()).device.type))
        return encode(self, video, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counting_load)
    monkeypatch.setattr(VideoAutoencoder, "encode", recording_encode)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    main(["export", "--ckpt", str(fsq_run["checkpoint"]), "--out", str(tmp_path / "export"), "--latent-stats",
          str(video_folder), "--max-videos", "2", "--frames", "5", "--size", "32", "--device", device])  # fmt: skip
    assert encoded_on == {(device, device)}
    assert loads.count(fsq_run["checkpoint"]) == 1
    assert len(VideoAutoencoder.from_pretrained(tmp_path / "export").config["_vtok_latent_mean"]) == 4  # fsq [8, 5, 5, 5]

@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--max-videos", "0"], "--max-videos must be at least 1, got 0"),
        (["--max-videos", "-3"], "--max-videos must be at least 1, got -3"),
        (["--frames", "101"], "--latent-stats: none of the 8 videos could be read"),
        (["--out", "FILE"], "is a file; give the path of a new or an existing folder"),
    ],
)
def test_bad_latent_statistics_flags_are_one_line_errors(
    flags: list[str], message: str, fsq_run: dict[str, Path], video_folder: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:  # fmt: skip
    (tmp_path / "FILE").write_text("a file")
    flags = [str(tmp_path / f) if f == "FILE" else f for f in flags]
    out = [] if "--out" in flags else ["--out", str(tmp_path / "export")]
    data = ["--latent-stats", str(video_folder)]
    stderr = _export_error(capsys, "--ckpt", str(fsq_run["checkpoint"]), *out, *data, *flags)
    error = stderr.strip().splitlines()[-1]  # after the warnings of skipped videos
    assert error.startswith("vtok export: error:") and message in error, error
    assert not (tmp_path / "export").exists()


def _edited_fixture(tmp_path: Path, **edits: object) -> Path:
    folder = tmp_path / "edited"
    folder.mkdir(parents=True)
    config = {**json.loads((FIXTURE / "config.json").read_text()), **edits}
    (folder / "config.json").write_text(json.dumps(config))
    weights = "diffusion_pytorch_model.safetensors"
    (folder / weights).write_bytes((FIXTURE / weights).read_bytes())
    return folder


@pytest.mark.parametrize(
    ("edits", "message"),
    [
        ({"fsq_levels": [8, 5, 4]}, "codebook_size 125 (written at export), but its fields build codebook_size 160"),
        ({"temporal_compression": 2}, "compression '4x8x8' (written at export), but its fields build "
                                      "compression '2x8x8'"),
        ({"_vtok_tokens_per_position": 2}, "tokens_per_position 2 (written at export), but its fields build "
                                           "tokens_per_position 1"),
    ],
)  # fmt: skip
def test_a_config_edited_after_export_is_refused_by_every_loader(tmp_path: Path, edits: dict, message: str) -> None:
    # the weights' shapes do not change, so without the recorded keys another model would load silently
    folder = _edited_fixture(tmp_path, **edits)
    for load in (VideoAutoencoder.from_pretrained, load_autoencoder):
        with pytest.raises(ValueError, match="config.json records " + re.escape(message)) as error:
            load(folder)
        assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("edits", "message"),
    [
        ({"frame_padding": "zeros"}, "_vtok_config_sha256 does not match"),
        ({"resample_shortcut": False}, "_vtok_config_sha256 does not match"),
        ({"decoder_causal": False}, "decoder_causal is set, which the export left at its default"),  # a later field
    ],
)
def test_a_field_edited_after_export_that_keeps_every_recorded_figure_is_refused_by_its_fingerprint(
    tmp_path: Path, edits: dict, message: str
) -> None:
    """Edits that change neither the weights' shapes nor compression, codebook or tokens per position
    (a field the export did not hold, set now, included): only the fingerprint of the fields tells."""
    fields = constructor_fields(json.loads((FIXTURE / "config.json").read_text()))  # what the export held
    recorded = {"_vtok_config_sha256": config_fingerprint(VideoAutoencoder.from_pretrained(FIXTURE).config, fields),
                "_vtok_config_fields": fields}  # as `vtok export` records them  # fmt: skip
    as_exported = _edited_fixture(tmp_path / "as_exported", **recorded)
    loaded = load_autoencoder(as_exported)
    loaded.save_pretrained(tmp_path / "saved_again")  # now with every field of this vtok, defaults included
    assert load_autoencoder(tmp_path / "saved_again") is not None, "the fingerprint holds through a save"
    folder = _edited_fixture(tmp_path, **recorded, **edits)
    for load in (VideoAutoencoder.from_pretrained, load_autoencoder):
        with pytest.raises(ValueError, match=re.escape(f"config.json's fields differ from those written at export ({message})")) as error:
            load(folder)
        assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("edits", "message"),
    [
        ({"_class_name": "AutoencoderKL"}, "holds a 'AutoencoderKL', not a vtok VideoAutoencoder"),
        ({"_vtok_format": 2}, "was written by a newer vtok (export format 2); upgrade vtok"),
        ({"_vtok_format": "2"}, "config.json has _vtok_format '2', not a positive integer"),
        ({"_vtok_format": None}, "config.json has _vtok_format None, not a positive integer"),
    ],
)
def test_another_class_or_export_format_is_a_one_line_error_from_every_loader(
    tmp_path: Path, edits: dict, message: str
) -> None:
    folder = _edited_fixture(tmp_path, **edits)
    for load in (VideoAutoencoder.from_pretrained, load_autoencoder):
        with pytest.raises(ValueError, match=re.escape(message)) as error:
            load(folder)
        assert "\n" not in str(error.value)
