"""`vtok evaluate`: every metric written, PSNR/SSIM equal to a direct computation, LPIPS and FVD from
local weights (skipped with a reason without them), broken videos skipped and counted, bad input
reported in one line."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.helpers import small_frame_export
from tests.ssim_reference import reference_ssim_per_video
from vtok import VideoAutoencoder
from vtok.cli import main
from vtok.data import ClipSpec, VideoClipDataset, list_files
from vtok.evaluation.detectors import I3D_FILE, load_i3d
from vtok.evaluation.metrics import MAX_PSNR, frechet_distance, high_frequency_energy, high_frequency_ratio, psnr_per_video
from vtok.export import load_autoencoder, write_export

KEYS = {
    "psnr", "ssim", "lpips", "lpips_skipped", "fvd", "fvd_skipped", "fvd_weights_sha256", "codebook_usage",
    "perplexity", "bits_per_pixel", "latent_values_per_pixel", "tokens_per_second_of_video", "compression",
    "videos", "clips", "skipped_files", "skipped", "encode_frames_per_s", "decode_frames_per_s", "protocol",
    "model", "device", "high_frequency_ratio", "mode", "decode_timestep", "lpips_weights_sha256",
    "group_codebook_usage", "group_perplexity", "fvd_clips", "high_frequency_ratio_skipped",
    "tokens_per_second_of_video_skipped", "enlarged_videos", "first_frame_codebook_usage", "first_frame_perplexity",
}  # fmt: skip


class TinyI3D(nn.Module):
    """Stand-in for i3d_torchscript.pt with its call signature: features from per-channel statistics
    of the resized clip. It refuses any call other than the one the FVD convention makes."""

    def __init__(self) -> None:
        super().__init__()
        self.projection = nn.Linear(6, 8)
        with torch.no_grad():
            self.projection.weight.copy_(torch.linspace(-1, 1, 48).view(8, 6))
            self.projection.bias.zero_()

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False) -> torch.Tensor:
        if rescale or not resize or not return_features or x.min() < -1 or x.max() > 1:
            raise ValueError("expected videos in [-1, 1] with rescale=False, resize=True, return_features=True")
        x = F.interpolate(x, size=(x.shape[2], 16, 16), mode="trilinear", align_corners=False)
        return self.projection(torch.cat([x.mean((2, 3, 4)), x.std((2, 3, 4))], dim=1))


@pytest.fixture()
def i3d_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The TinyI3D stand-in saved as TorchScript where the loader looks ($TORCH_HOME/hub/checkpoints)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    path = tmp_path / "torch" / "hub" / "checkpoints" / I3D_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.script(TinyI3D()).save(str(path))
    return path


def run(*args: str | Path) -> None:
    main([str(a) for a in args])


def test_evaluate_writes_every_metric_and_agrees_with_a_direct_computation(
    fsq_run: dict[str, Path], video_folder: Path, vgg_weights: Path, i3d_weights: Path, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    out = tmp_path / "eval"
    run("evaluate", "--model", fsq_run["export"], "--data", video_folder, "--out", out, "--max-videos", 3, "--batch-size", 2)
    metrics = json.loads((out / "metrics.json").read_text())
    assert KEYS <= metrics.keys()
    assert metrics["videos"] == metrics["clips"] == 3 and metrics["skipped_files"] == 0 and metrics["enlarged_videos"] == 0
    assert metrics["protocol"]["frames"] == 5 and metrics["protocol"]["height"] == metrics["protocol"]["width"] == 32
    assert metrics["model"]["training_step"] == 2 and metrics["compression"] == "4x8x8" and metrics["device"] == "cpu"

    # The same centre clips (frames 7-11 of 20; the centred 40x40 crop of 40x64, resized to 32), decoded
    # by the model itself, and the metrics computed here from their definitions.
    model = load_autoencoder(fsq_run["export"])
    files = list_files(video_folder)[:3]
    clips = torch.stack([VideoClipDataset(files, ClipSpec(5), (32, 32), train=False)[i]["video"] for i in range(3)])
    with torch.no_grad():
        reconstruction = model.detokenize(model.tokenize(clips)).clamp(-1, 1)
    original, decoded = clips.add(1).div(2), reconstruction.add(1).div(2)  # [0, 1]
    psnr = 10 * torch.log10(1 / (original - decoded).square().mean(dim=(1, 2, 3, 4)))
    ssim = torch.tensor(reference_ssim_per_video(reconstruction.numpy(), clips.numpy()))  # valid windows, numpy
    rows = list(csv.DictReader((out / "per_video.csv").open()))
    assert [row["path"] for row in rows] == files
    assert [float(row["psnr"]) for row in rows] == pytest.approx(psnr.tolist(), abs=1e-3)
    assert [float(row["ssim"]) for row in rows] == pytest.approx(ssim.tolist(), abs=1e-4)
    assert metrics["psnr"] == pytest.approx(psnr.mean().item(), abs=1e-3)
    assert metrics["ssim"] == pytest.approx(ssim.mean().item(), abs=1e-4)
    # sharpness over the set: summed energies, not a mean of ratios
    energy = high_frequency_energy(reconstruction).sum() / high_frequency_energy(clips).sum()
    assert metrics["high_frequency_ratio"] == pytest.approx(energy.item(), rel=1e-4)

    assert metrics["lpips"] > 0 and metrics["lpips_skipped"] is None and all(float(row["lpips"]) > 0 for row in rows)
    assert metrics["lpips_weights_sha256"] == hashlib.sha256(vgg_weights.read_bytes()).hexdigest()
    assert metrics["fvd"] > 0 and metrics["fvd_skipped"] is None and metrics["fvd_clips"] == 3
    assert "FVD from 3 clips" in caplog.text and "compare it only with FVDs of 3 clips" in caplog.text
    assert metrics["fvd_weights_sha256"] == hashlib.sha256(i3d_weights.read_bytes()).hexdigest()
    assert 0 < metrics["codebook_usage"] <= 1 and 1 <= metrics["perplexity"] <= 1000
    assert metrics["first_frame_codebook_usage"] is None and metrics["first_frame_perplexity"] is None  # no extras
    assert metrics["bits_per_pixel"] == pytest.approx(math.log2(1000) * 2 * 4 * 4 / (5 * 32 * 32))
    assert metrics["tokens_per_second_of_video"] == pytest.approx(2 * 4 * 4 / (5 / 24))  # K=1, 2x4x4 positions, 24 fps
    assert metrics["latent_values_per_pixel"] == pytest.approx(4 * 2 * 4 * 4 / (3 * 5 * 32 * 32))  # 4 FSQ channels
    assert metrics["encode_frames_per_s"] > 0 and metrics["decode_frames_per_s"] > 0

    report = (out / "report.md").read_text()
    assert "| PSNR (dB) |" in report and "absolute error amplified" in report
    assert f"LPIPS backbone (VGG16) sha256: `{metrics['lpips_weights_sha256']}`" in report
    assert "FVD over 3 clips (comparable only with FVDs over as many" in report
    pictures = sorted(p.name for p in (out / "pictures").iterdir())
    assert len(pictures) == 6 and all(f"pictures/{name}" in report for name in pictures)
    assert sorted(name for picture in metrics["pictures"] for k, name in picture.items() if k != "path") == [
        f"pictures/{name}" for name in pictures
    ]

    # Again into the same folder with fewer pictures: the earlier run's other pictures go, a user's file stays.
    (out / "pictures" / "notes.txt").write_text("mine")
    run("evaluate", "--model", fsq_run["export"], "--data", video_folder, "--out", out, "--max-videos", 2, "--pictures", 1)
    first = Path(metrics["pictures"][0]["grid"]).stem
    assert sorted(p.name for p in (out / "pictures").iterdir()) == sorted([f"{first}.png", f"{first}.mp4", "notes.txt"])


def test_fvd_is_zero_for_identical_sets_and_positive_otherwise(i3d_weights: Path) -> None:
    detector, reason = load_i3d(None, torch.device("cpu"))
    assert reason is None and detector.sha256 == hashlib.sha256(i3d_weights.read_bytes()).hexdigest()
    videos = torch.rand(6, 3, 5, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    features = detector(videos)
    assert frechet_distance(features, detector(videos.clone())) == pytest.approx(0, abs=1e-6)
    assert frechet_distance(features, detector(videos * 0.5)) > 1e-3
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(features[:1], features[:1])


def test_an_exact_reconstruction_scores_the_psnr_ceiling_not_infinity() -> None:
    black = -torch.ones(2, 3, 5, 16, 16)
    assert psnr_per_video(black - 0.5, black).tolist() == [MAX_PSNR, MAX_PSNR]  # clamped to -1: exact
    assert psnr_per_video(black + 0.02, black).max() < MAX_PSNR


def test_high_frequency_ratio_weighs_both_directions_alike_and_skips_flat_originals() -> None:
    y, x = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    stripes = lambda along: (0.5 * torch.cos(math.pi * 0.75 * along)).expand(1, 3, 2, 16, 16)  # noqa: E731
    horizontal_detail, vertical_detail = stripes(x), stripes(y)
    # the same detail turned by 90 degrees keeps its energy: a ratio of 1 either way
    assert high_frequency_ratio(horizontal_detail, vertical_detail).item() == pytest.approx(1.0, rel=1e-5)
    assert high_frequency_ratio(vertical_detail, horizontal_detail).item() == pytest.approx(1.0, rel=1e-5)
    flat = torch.zeros(1, 3, 2, 16, 16)
    assert high_frequency_ratio(flat + 1e-4 * torch.randn_like(flat), flat).isnan().all()  # nothing to compare with
    noise = torch.randn(1, 3, 2, 16, 16, generator=torch.Generator().manual_seed(0)) * 0.1
    assert high_frequency_energy(noise).item() == pytest.approx(0.01 * 0.80, rel=0.15)  # ~80 % of white noise is above half Nyquist


def test_the_sets_sharpness_needs_originals_with_detail_on_average() -> None:
    from vtok.evaluation.runner import _set_sharpness

    assert _set_sharpness(torch.tensor([[1.0, 2.0]])) == 0.5
    assert _set_sharpness(torch.tensor([[9e-6, 8.5e-9]] * 1000)) is None, "1,000 flat originals add up to no detail"
    assert _set_sharpness(torch.zeros(0, 2)) is None


def test_fvd_needs_two_videos(fsq_run: dict[str, Path], video_folder: Path, i3d_weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    run("evaluate", "--model", fsq_run["export"], "--data", video_folder, "--out", out, "--max-videos", 1, "--pictures", 0)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["fvd"] is None and "at least 2 videos" in metrics["fvd_skipped"]
    assert metrics["fvd_weights_sha256"] == hashlib.sha256(i3d_weights.read_bytes()).hexdigest()


def test_the_lpips_weights_given_are_the_ones_identified(
    fsq_run: dict[str, Path], video_folder: Path, vgg_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-cache"))  # only the file named is there to hash
    out = tmp_path / "eval"
    run("evaluate", "--model", fsq_run["export"], "--data", video_folder, "--out", out, "--max-videos", 1,
        "--pictures", 0, "--lpips-weights", vgg_weights)  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["lpips"] is not None
    assert metrics["lpips_weights_sha256"] == hashlib.sha256(vgg_weights.read_bytes()).hexdigest()


@pytest.fixture()
def kl_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tiny random KL model exported for 9x32x32 clips, with no LPIPS or I3D weights in reach."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-cache"))
    torch.manual_seed(0)
    model = VideoAutoencoder(block_out_channels=[8, 16], latent_channels=4, layers_per_block=1)
    write_export(model, tmp_path / "kl", {"_vtok_clip": {"num_frames": 9, "size": [32, 32]}, "_vtok_training_step": 7})
    return tmp_path / "kl"


def test_continuous_model_on_broken_files_skips_them_and_the_missing_weights(
    mixed_folder: tuple[Path, dict[str, str]], kl_export: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder, broken = mixed_folder
    out = tmp_path / "eval"
    run("evaluate", "--model", kl_export, "--data", folder, "--out", out, "--pictures", 1)
    bar = [part for part in re.split(r"[\r\n]", capsys.readouterr().err) if part.startswith("evaluate:")][-1]
    assert "| 4/4 " in bar and "skipped=5" in bar, bar  # the skipped files once left it at 4/9
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["videos"] == 4 and metrics["skipped_files"] == len(broken) == 5
    assert sorted(Path(s["path"]).name for s in metrics["skipped"]) == sorted(broken)
    assert metrics["protocol"]["frames"] == 9 and metrics["model"]["training_step"] == 7
    for key in ("codebook_usage", "perplexity", "bits_per_pixel", "tokens_per_second_of_video"):
        assert metrics[key] is None, key
    assert metrics["latent_values_per_pixel"] == pytest.approx(4 * 3 * 4 * 4 / (3 * 9 * 32 * 32))
    assert metrics["lpips"] is None and "vgg16-397923af.pth" in metrics["lpips_skipped"]
    assert metrics["fvd"] is None and "i3d_torchscript.pt" in metrics["fvd_skipped"] and "curl" in metrics["fvd_skipped"]
    assert metrics["fvd_weights_sha256"] is None and metrics["lpips_weights_sha256"] is None
    report = (out / "report.md").read_text()
    assert "## Skipped files" in report and all(name in report for name in broken)
    assert len(list((out / "per_video.csv").open())) == 5  # header + 4 videos


def _foreign_checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "other.ckpt"
    torch.save({"vtok": {"autoencoder_class": "ImageVAE"}, "state_dict": {}}, path)
    return path


def _damaged_export(tmp_path: Path, export: Path) -> Path:
    folder = tmp_path / "damaged"
    folder.mkdir()
    (folder / "config.json").write_text((export / "config.json").read_text())
    (folder / "diffusion_pytorch_model.safetensors").write_bytes(b"\x00" * 64)
    return folder


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("not an export", "is not a vtok export"),
        ("another model class", "holds a 'ImageVAE'"),
        ("damaged weights", "cannot be loaded"),
        ("empty data folder", "no video files found"),
        ("missing data", "is not a folder, a file"),
    ],
)
def test_bad_input_is_one_line_with_exit_code_2(
    case: str, message: str, fsq_run: dict[str, Path], video_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "empty").mkdir()
    model, data = fsq_run["export"], video_folder
    if case == "not an export":
        model = tmp_path / "empty"
    elif case == "another model class":
        model = _foreign_checkpoint(tmp_path)
    elif case == "damaged weights":
        model = _damaged_export(tmp_path, fsq_run["export"])
    elif case == "empty data folder":
        data = tmp_path / "empty"
    else:
        data = tmp_path / "nowhere"
    with pytest.raises(SystemExit) as exit_info:
        run("evaluate", "--model", model, "--data", data, "--out", tmp_path / "eval")
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("vtok evaluate: error:") and message in error and "\n" not in error, error


def test_a_manifest_bounds_the_clips_and_the_real_clip_rate_is_recorded(
    fsq_run: dict[str, Path], video_folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # as `vtok prepare` records files damaged after frame 12 and 5 (their headers say 20), at 12 fps
    files = sorted(video_folder.glob("*.mp4"))[:2]
    manifest = tmp_path / "manifest.jsonl"
    lines = [{"path": str(f), "frames": n, "fps": 12.0, "reported_frames": 20} for f, n in zip(files, (12, 5))]
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "eval"
    run("evaluate", "--model", fsq_run["export"], "--data", manifest, "--out", out, "--frames", 9, "--fps", 48,
        "--pictures", 0)  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["videos"] == 1 and [s["path"] for s in metrics["skipped"]] == [str(files[1])]
    assert "too short" in metrics["skipped"][0]["reason"] and "the video has 5" in metrics["skipped"][0]["reason"]
    model = load_autoencoder(fsq_run["export"])
    assert metrics["tokens_per_second_of_video"] == pytest.approx(model.tokens_per_clip(9, 32, 32) * 12 / 9)
    assert metrics["protocol"]["fps"] == 48 and metrics["protocol"]["clip_fps"] == [12.0]  # below --fps: its own rate
    assert "--fps 48 is above the frame rate of 1 videos" in caplog.text
    assert "(clips at 12 fps)" in (out / "report.md").read_text()


def test_a_wrong_lpips_file_is_never_advised_to_be_overwritten(
    fsq_run: dict[str, Path], video_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:  # fmt: skip
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    mine = tmp_path / "my-notes.pth"
    mine.write_text("not weights")
    with pytest.raises(SystemExit) as exit_info:
        run("evaluate", "--model", fsq_run["export"], "--data", video_folder, "--out", tmp_path / "eval",
            "--lpips-weights", mine)  # fmt: skip
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    cache = tmp_path / "torch" / "hub" / "checkpoints" / "vgg16-397923af.pth"
    assert error.startswith("vtok evaluate: error: --lpips-weights") and f"curl -L -o {cache} " in error, error
    assert f"-o {mine}" not in error


@pytest.mark.parametrize(
    ("command", "flags", "message"),
    [
        ("evaluate", ["--size", "32", "32", "32"], "--size takes one number or two (H W), got 3"),
        ("evaluate", ["--frames", "0"], "--frames must be at least 1, got 0"),
        ("evaluate", ["--fps", "nan"], "--fps must be a finite number above 0, got nan"),
        ("evaluate", ["--fps", "inf"], "--fps must be a finite number above 0, got inf"),
        ("evaluate", ["--out", "FILE"], "--out FILE is a file"),
        ("evaluate", ["--out", "FILE/eval"], "--out FILE/eval cannot be a folder: FILE is a file"),
        ("tokenize", ["--out", "FILE"], "--out FILE is a file"),
        ("prepare", ["--out", "FILE"], "--out FILE is a file"),
        ("prepare", ["--timeout", "0"], "--timeout must be a number of seconds above 0"),
    ],
)
def test_bad_flags_are_one_line_errors_before_any_work(
    command: str, flags: list[str], message: str, fsq_run: dict[str, Path], video_folder: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    Path("FILE").write_text("a file")
    model = [] if command == "prepare" else ["--model", str(fsq_run["export"])]
    out = [] if "--out" in flags else ["--out", "out"]
    with pytest.raises(SystemExit) as exit_info:
        run(command, *model, "--data", video_folder, *out, *flags)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"vtok {command}: error:") and message in error and "\n" not in error, error
    assert not Path("out").exists()


def test_the_clip_protocol_defaults_to_the_frame_rate_the_model_was_trained_at() -> None:
    import argparse

    from vtok.commands.protocol import add_protocol_arguments, resolve_protocol

    parser = argparse.ArgumentParser()
    add_protocol_arguments(parser)
    model = VideoAutoencoder(block_out_channels=[8, 16], latent_channels=4, layers_per_block=1)
    trained = {"num_frames": 9, "size": [32, 32], "frame_stride": 3, "fps": None}
    protocol = resolve_protocol(parser.parse_args([]), model, trained)
    assert (protocol.frames, protocol.stride, protocol.fps) == (9, 3, None)
    at_fps = resolve_protocol(parser.parse_args([]), model, {**trained, "frame_stride": 1, "fps": 8.0})
    assert (at_fps.stride, at_fps.fps) == (1, 8.0)
    # either flag given: the flags alone decide
    assert resolve_protocol(parser.parse_args(["--fps", "12"]), model, trained).stride == 1
    assert resolve_protocol(parser.parse_args(["--stride", "2"]), model, {**trained, "fps": 8.0}).fps is None
    # an export from before the stride was recorded: stride 1
    assert resolve_protocol(parser.parse_args([]), model, {"num_frames": 9, "size": [32, 32]}).stride == 1


def test_videos_read_ahead_in_workers_give_the_same_results_and_skips(
    mixed_folder: tuple[Path, dict[str, str]], kl_export: Path, tmp_path: Path
) -> None:
    folder, _ = mixed_folder
    results = []
    for workers in (0, 2):
        out = tmp_path / f"eval-{workers}"
        run("evaluate", "--model", kl_export, "--data", folder, "--out", out, "--pictures", 0, "--workers", workers,
            "--max-videos", 3)  # fmt: skip
        metrics = json.loads((out / "metrics.json").read_text())
        results.append(((out / "per_video.csv").read_text(), metrics["skipped"], metrics["psnr"]))
    assert results[0] == results[1]
    assert len(results[0][0].splitlines()) == 4 and results[0][1], "3 videos and the broken files before them"


def test_pictures_of_an_evaluation_stopped_before_its_metrics_are_no_data_for_the_next(
    video_folder: Path, kl_export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run stopped after writing its pictures (Ctrl-C, an error in a later batch) left them unlisted, scored as
    videos by the next evaluation of a folder holding them; now written aside, they go when the run stops."""
    data = tmp_path / "videos"
    data.mkdir()
    for path in sorted(video_folder.glob("*.mp4"))[:2]:
        shutil.copy(path, data)
    with monkeypatch.context() as patch:  # stopped once the pictures were written, before metrics.json
        patch.setattr("vtok.evaluation.runner.write_outputs", lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
        with pytest.raises(SystemExit, match="130"):
            run("evaluate", "--model", kl_export, "--data", data, "--out", data / "eval_a", "--pictures", 2)
    assert not (data / "eval_a").exists()  # its pictures went too, so the folder it made
    run("evaluate", "--model", kl_export, "--data", data, "--out", data / "eval_b", "--pictures", 0)
    assert json.loads((data / "eval_b" / "metrics.json").read_text())["videos"] == 2
    run("evaluate", "--model", kl_export, "--data", data, "--out", data / "eval_a", "--pictures", 1)  # finished now
    assert len(list((data / "eval_a" / "pictures").glob("*.mp4"))) == 1


def test_an_output_folder_inside_the_data_is_not_evaluated_as_data(
    video_folder: Path, kl_export: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The pictures' side-by-side mp4s under --out were scored as videos by the next run into it."""
    data = tmp_path / "videos"
    data.mkdir()
    for path in sorted(video_folder.glob("*.mp4"))[:2]:
        (data / path.name).symlink_to(path)
    (tmp_path / "alias").symlink_to(data)
    for out in (data / "eval", data / "eval", tmp_path / "alias" / "eval"):
        caplog.clear()
        with caplog.at_level("INFO", logger="vtok"):
            run("evaluate", "--model", kl_export, "--data", data, "--out", out, "--pictures", 2, "--max-videos", 4)
        assert json.loads((out / "metrics.json").read_text())["videos"] == 2
    assert len(list((data / "eval" / "pictures").glob("*.mp4"))) == 2
    assert "2 videos that an earlier vtok evaluate wrote (its pictures) are not taken as data" in caplog.text
    shutil.rmtree(data / "eval")
    for _ in range(2):  # --out holding the data (`--out .`): only the pictures it writes are left out
        run("evaluate", "--model", kl_export, "--data", data, "--out", data, "--pictures", 2, "--max-videos", 4)
        assert json.loads((data / "metrics.json").read_text())["videos"] == 2
    # into another folder: the pictures that the evaluation into `data` wrote (data/pictures) are still no data
    run("evaluate", "--model", kl_export, "--data", data, "--out", data / "again", "--pictures", 0, "--max-videos", 4)
    assert json.loads((data / "again" / "metrics.json").read_text())["videos"] == 2
    (data / "metrics.json").unlink()  # pictures of a run stopped before its metrics.json: --out's own are left out
    caplog.clear()
    with caplog.at_level("INFO", logger="vtok"):
        run("evaluate", "--model", kl_export, "--data", data, "--out", data, "--pictures", 2, "--max-videos", 4)
    assert json.loads((data / "metrics.json").read_text())["videos"] == 2
    assert "2 files inside the output folder" in caplog.text


def test_videos_smaller_than_the_protocol_size_are_counted_and_named(
    video_folder: Path, kl_export: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """40x64 sources evaluated at 48x48: their 40x40 crops are enlarged, which the report must say."""
    out = tmp_path / "eval"
    with caplog.at_level("WARNING", logger="vtok.evaluation.runner"):
        run("evaluate", "--model", kl_export, "--data", video_folder, "--out", out, "--max-videos", 2, "--size", 48)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["enlarged_videos"] == 2 and metrics["protocol"]["height"] == 48
    assert "2 videos are smaller than the protocol's 48x48" in caplog.text
    assert "| videos smaller than the protocol size (compared enlarged) | 2 |" in (out / "report.md").read_text()


def test_frames_too_small_for_vgg_skip_lpips_with_a_reason_said_once(
    video_folder: Path, vgg_weights: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """11-15 pixel frames suit SSIM but not VGG16, whose four poolings leave no pixel for its last features."""
    path = small_frame_export(tmp_path / "s4")
    out = tmp_path / "eval"
    with caplog.at_level("WARNING", logger="vtok.evaluation.runner"):
        run("evaluate", "--model", path, "--data", video_folder, "--out", out, "--frames", "5", "--size", "12", "16",
            "--max-videos", 3, "--batch-size", 2, "--pictures", "0")  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["videos"] == 3 and metrics["ssim"] is not None
    assert metrics["lpips"] is None and metrics["lpips_weights_sha256"] is None
    assert metrics["lpips_skipped"] == "LPIPS (VGG16) needs frames of at least 16x16 pixels, got 12x16"
    assert caplog.text.count("LPIPS (VGG16) needs frames of at least 16x16 pixels") == 1
    assert "skipped: LPIPS (VGG16) needs frames" in (out / "report.md").read_text()


@pytest.mark.parametrize(("bottleneck", "part", "what"), [("kl", "decoder", "reconstructions"), ("fsq", "encoder", "latents")])
def test_a_diverged_model_is_a_one_line_error_that_blames_its_weights(
    bottleneck: str, part: str, what: str, video_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """NaN weights gave metrics.json bare NaN (invalid JSON) and, for FSQ, an error blaming the input's pixels."""
    torch.manual_seed(0)
    config = {"bottleneck": "fsq", "fsq_levels": [8, 5, 5, 5]} if bottleneck == "fsq" else {}
    model = VideoAutoencoder(block_out_channels=[8, 16], latent_channels=4, layers_per_block=1, **config)
    name, weight = next(getattr(model, part).named_parameters())
    with torch.no_grad():
        weight.view(-1)[0] = float("nan")
    path = write_export(model, tmp_path / "diverged", {})
    with pytest.raises(SystemExit) as exit_info:
        run("evaluate", "--model", path, "--data", video_folder, "--out", tmp_path / "eval", "--frames", "5",
            "--size", "32", "--pictures", "0")  # fmt: skip
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    first = list_files(video_folder)[0]
    expected = f"vtok evaluate: error: the model gave non-finite {what} for {first}: its weights are NaN/inf ({part}.{name}"
    assert error.startswith(expected) and "diverged training?" in error and "pixels" not in error, error
    assert not (tmp_path / "eval" / "metrics.json").exists()

