"""`vtok evaluate --mode continuous|discrete` and `--decode-timestep t`, and first-frame tokens
through evaluate, tokenize and detokenize: each result equals the model's own computation."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from vtok import VideoAutoencoder
from vtok.cli import main
from vtok.data import ClipSpec, VideoClipDataset, list_files, open_video
from vtok.evaluation import psnr_per_video
from vtok.export import load_autoencoder, write_export
from vtok.tokenfiles import read_token_file
from vtok.vae import FirstFrameTokens, regular_indices

PROTOCOL = ["--frames", "5", "--size", "32", "--max-videos", "2", "--pictures", "0"]


def run(*args: str | Path) -> None:
    main([str(a) for a in args])


def export(folder: Path, **config: object) -> Path:
    """A small model with random weights, saved the way `vtok export` saves one."""
    torch.manual_seed(0)
    return write_export(VideoAutoencoder(block_out_channels=[8, 16], latent_channels=4, layers_per_block=1, **config), folder, {})


def clips(video_folder: Path, count: int = 2, frames: int = 5) -> torch.Tensor:
    files = list_files(video_folder)[:count]
    return torch.stack([VideoClipDataset(files, ClipSpec(frames), (32, 32), train=False)[i]["video"] for i in range(count)])


def evaluated(model: Path, data: Path, out: Path, *flags: str | float) -> tuple[dict, list[float]]:
    run("evaluate", "--model", model, "--data", data, "--out", out, *PROTOCOL, *flags)
    rows = list(csv.DictReader((out / "per_video.csv").open()))
    return json.loads((out / "metrics.json").read_text()), [float(row["psnr"]) for row in rows]


def clip_generator(seed: int, path: str) -> torch.Generator:
    """The documented per-clip seeding of the latent noise: sha256 of "<seed>/<file name>/<file bytes>",
    first 8 bytes little-endian, top bit cleared."""
    digest = hashlib.sha256(f"{seed}/{Path(path).name}/{Path(path).stat().st_size}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


def test_continuous_mode_measures_the_continuous_path_of_a_discrete_model(video_folder: Path, tmp_path: Path) -> None:
    path = export(tmp_path / "fsq", bottleneck="fsq", fsq_levels=[8, 5, 5, 5])
    model, video = load_autoencoder(path), clips(video_folder)
    with torch.no_grad():
        continuous = model.decode(model.encode(video, discrete=False), discrete=False)
        discrete = model.detokenize(model.tokenize(video))
    metrics, psnr = evaluated(path, video_folder, tmp_path / "c", "--mode", "continuous")
    assert metrics["mode"] == "continuous" and metrics["codebook_usage"] is None and metrics["bits_per_pixel"] is None
    assert psnr == pytest.approx(psnr_per_video(continuous, video).tolist(), abs=1e-3)
    metrics, psnr = evaluated(path, video_folder, tmp_path / "d", "--mode", "discrete")
    assert metrics["mode"] == "discrete" and metrics["codebook_usage"] > 0
    assert metrics["group_codebook_usage"] is None and metrics["group_perplexity"] is None  # FSQ: tokens are the slots
    assert psnr == pytest.approx(psnr_per_video(discrete, video).tolist(), abs=1e-3)
    assert metrics["high_frequency_ratio"] > 0


def test_continuous_mode_on_a_model_trained_without_the_continuous_path_says_so(
    video_folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    torch.manual_seed(0)
    model = VideoAutoencoder(block_out_channels=[8, 16], latent_channels=4, layers_per_block=1, bottleneck="fsq", fsq_levels=[8, 5, 5, 5])
    for joint, warned in ((False, True), (True, False)):
        path = write_export(model, tmp_path / f"joint_{joint}", {"_vtok_joint_training": joint})  # as `vtok export` records it
        caplog.clear()
        with caplog.at_level("WARNING", logger="vtok.commands.evaluate"):
            evaluated(path, video_folder, tmp_path / f"e_{joint}", "--mode", "continuous", "--max-videos", 1)
        assert ("trained without model.continuous_weight" in caplog.text) == warned


@pytest.mark.parametrize("conditioned", [True, False], ids=["denoising decoder", "plain decoder"])
def test_decode_timestep_decodes_seeded_noisy_latents(conditioned: bool, video_folder: Path, tmp_path: Path) -> None:
    path = export(tmp_path / "kl", decoder_timestep_conditioning=conditioned)
    model, video = load_autoencoder(path), clips(video_folder)
    t = 0.3
    with torch.no_grad():
        latents = model.encode(video)
        generators = [clip_generator(5, path) for path in list_files(video_folder)[:2]]  # one per clip
        noise = torch.stack([torch.randn(latents.shape[1:], generator=generator) for generator in generators])
        expected = model.decode((1 - t) * latents + t * noise, timestep=t if conditioned else None)
    metrics, psnr = evaluated(path, video_folder, tmp_path / "t", "--decode-timestep", t, "--noise-seed", 5, "--batch-size", 2)
    assert metrics["decode_timestep"] == t and metrics["mode"] == "continuous"
    assert psnr == pytest.approx(psnr_per_video(expected, video).tolist(), abs=1e-3)
    assert "noise level t = 0.3 (noise seed 5, per clip); batch size 2." in (tmp_path / "t" / "report.md").read_text()


def test_decode_timestep_results_do_not_depend_on_the_batch_size(video_folder: Path, tmp_path: Path) -> None:
    path = export(tmp_path / "kl", decoder_timestep_conditioning=True)
    runs = {}
    for batch_size in (1, 3):
        out = tmp_path / f"bs{batch_size}"
        # 24x40 frames: 4x2x3x5 latents per clip, not a multiple of 16 values, so one generator drawing for a
        # whole batch gives other numbers than one drawing clip by clip (torch.randn fills 16 values at a time)
        metrics, _ = evaluated(path, video_folder, out, "--decode-timestep", 0.5, "--noise-seed", 7,
                               "--max-videos", 4, "--batch-size", batch_size, "--size", 24, 40)  # fmt: skip
        assert metrics["protocol"]["batch_size"] == batch_size and metrics["protocol"]["noise_seed"] == 7
        assert f"(noise seed 7, per clip); batch size {batch_size}." in (out / "report.md").read_text()
        runs[batch_size] = list(csv.DictReader((out / "per_video.csv").open()))
    assert [row["path"] for row in runs[1]] == [row["path"] for row in runs[3]] and len(runs[1]) == 4
    for key in ("psnr", "ssim", "high_frequency_ratio"):  # batches of 1 and of 3 + 1 clips: the same noise per clip
        one_by_one = [float(row[key]) for row in runs[1]]  # equal up to float32 rounding of batched convolutions
        assert [float(row[key]) for row in runs[3]] == pytest.approx(one_by_one, rel=1e-5, abs=1e-6), key
    metrics, _ = evaluated(path, video_folder, tmp_path / "t0", "--noise-seed", 7)
    assert metrics["protocol"]["noise_seed"] is None, "no noise, no seed to record"


def test_decode_timestep_noise_does_not_depend_on_how_or_where_the_videos_are_found(
    video_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same videos through an absolute path, a relative one and a copy elsewhere score the same."""
    path = export(tmp_path / "kl", decoder_timestep_conditioning=True)
    copy = tmp_path / "elsewhere" / "videos"
    copy.mkdir(parents=True)
    for source in list_files(video_folder)[:2]:
        shutil.copyfile(source, copy / Path(source).name)
    monkeypatch.chdir(video_folder.parent)
    scores = {}
    for name, data in {"absolute": video_folder, "relative": Path(video_folder.name), "copy": copy}.items():
        metrics, psnr = evaluated(path, data, tmp_path / name, "--decode-timestep", 0.5, "--noise-seed", 3)
        assert metrics["videos"] == 2
        scores[name] = psnr
    assert scores["relative"] == scores["absolute"] and scores["copy"] == scores["absolute"], scores


def usage_and_perplexity(values: torch.Tensor, vocabulary: int) -> tuple[float, float]:
    """Codebook usage and perplexity of one slot's codes, from their definitions."""
    counts = torch.bincount(values, minlength=vocabulary).double()
    p = counts[counts > 0] / counts.sum()
    return (counts > 0).sum().item() / vocabulary, math.exp(-(p * p.log()).sum().item())


def test_single_token_gq_counts_whole_tokens_against_the_reported_codebook(video_folder: Path, tmp_path: Path) -> None:
    path = export(tmp_path / "gqs", bottleneck="gq", gq_bits=12, gq_groups=3, gq_single_token=True)
    model, video = load_autoencoder(path), clips(video_folder, 4)
    metrics, _ = evaluated(path, video_folder, tmp_path / "e", "--max-videos", 4, "--batch-size", 3)
    assert metrics["model"]["codebook_size"] == 2**12 and metrics["model"]["tokens_per_position"] == 1
    with torch.no_grad():
        tokens = regular_indices(model.tokenize(video)).flatten()  # every 12-bit token of the 4 clips
    usage, perplexity = usage_and_perplexity(tokens, 2**12)
    assert metrics["codebook_usage"] == pytest.approx(usage) and metrics["perplexity"] == pytest.approx(perplexity)
    groups = [usage_and_perplexity((tokens >> (4 * g)) & 15, 16) for g in range(3)]  # three 4-bit groups
    assert metrics["group_codebook_usage"] == pytest.approx(sum(u for u, _ in groups) / 3)
    assert metrics["group_perplexity"] == pytest.approx(sum(p for _, p in groups) / 3)
    assert "Per group of the single-token GQ" in (tmp_path / "e" / "report.md").read_text()


@pytest.mark.parametrize(
    ("flags", "message"),
    [(["--mode", "discrete"], "--mode discrete needs a discrete model"), (["--decode-timestep", "1.5"], "must be in [0, 1]")],
)
def test_impossible_modes_are_one_line_errors(
    flags: list[str], message: str, video_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run("evaluate", "--model", export(tmp_path / "kl"), "--data", video_folder, "--out", tmp_path / "e", *PROTOCOL, *flags)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "e").exists(), "nothing is written before the flags are checked"


def test_first_frame_tokens_go_through_evaluate_tokenize_and_detokenize(video_folder: Path, tmp_path: Path) -> None:
    path = export(tmp_path / "ff", bottleneck="fsq", fsq_levels=[8, 5, 5, 5], first_frame_tokens=2)
    model = load_autoencoder(path)
    metrics, _ = evaluated(path, video_folder, tmp_path / "eval")
    assert metrics["tokens_per_second_of_video"] == pytest.approx((2 * 4 * 4 + 2 * 4 * 4) / (5 / 24))  # 2x4x4 regular + 2 extra per first-frame position
    # per clip, as bits_per_pixel: 4 channels at 2x4x4 positions, the 2 x 4 extra channels in the first frame alone
    assert metrics["latent_values_per_pixel"] == pytest.approx((4 * 2 * 4 * 4 + 8 * 4 * 4) / (3 * 5 * 32 * 32))
    assert model.latent_values_per_pixel() == pytest.approx(4 / (3 * 4 * 8 * 8)), "long clips: the extras vanish"
    with torch.no_grad():
        own = model.tokenize(clips(video_folder))
    regular = usage_and_perplexity(own.indices.flatten(), 1000)  # regular tokens only, as before
    assert (metrics["codebook_usage"], metrics["perplexity"]) == pytest.approx(regular)
    extra = [usage_and_perplexity(own.first_frame_extra[:, slot].flatten(), 1000) for slot in range(2)]  # per slot
    assert metrics["first_frame_codebook_usage"] == pytest.approx(sum(u for u, _ in extra) / 2)
    assert metrics["first_frame_perplexity"] == pytest.approx(sum(p for _, p in extra) / 2)
    assert "First latent frame's extra tokens" in (tmp_path / "eval" / "report.md").read_text()

    run("tokenize", "--model", path, "--data", video_folder, "--out", tmp_path / "tokens", "--frames", "9", "--size", "32")
    entry = json.loads((tmp_path / "tokens" / "index.jsonl").read_text().splitlines()[0])
    tokens, metadata = read_token_file(tmp_path / "tokens" / entry["tokens"])
    assert isinstance(tokens, FirstFrameTokens) and metadata["first_frame_tokens"] == "2"
    assert tokens.indices.shape == (1, 3, 4, 4) and tokens.first_frame_extra.shape == (2, 1, 4, 4)
    with torch.no_grad():
        own = model.tokenize(clips(video_folder, 1, 9))
    assert torch.equal(tokens.indices, own.indices[0]) and torch.equal(tokens.first_frame_extra, own.first_frame_extra[0])

    run("detokenize", "--model", path, "--tokens", tmp_path / "tokens" / entry["tokens"], "--out", tmp_path / "v.mp4")
    assert open_video(tmp_path / "v.mp4").num_frames == 9
    with pytest.raises(SystemExit):  # the model without extras refuses the file
        run("detokenize", "--model", export(tmp_path / "plain", bottleneck="fsq", fsq_levels=[8, 5, 5, 5]),
            "--tokens", tmp_path / "tokens" / entry["tokens"], "--out", tmp_path / "w.mp4")  # fmt: skip


def test_ntsc_rates_are_not_called_slower_than_their_round_fps(
    video_folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """23.976 fps is 24 fps to the clips (stride 1, no warning there), but the evaluation warned that such videos
    run slower than --fps 24: only a video more than 1% slower is."""
    files = list_files(video_folder)[:2]
    manifest = tmp_path / "manifest.jsonl"
    lines = [{"path": str(f), "frames": 20, "fps": fps, "reported_frames": 20} for f, fps in zip(files, (24000 / 1001, 12.0))]
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    metrics, _ = evaluated(export(tmp_path / "model"), manifest, tmp_path / "eval", "--fps", 24)
    assert metrics["protocol"]["clip_fps"] == [12.0, 23.976]
    assert f"--fps 24 is above the frame rate of 1 videos (first: {files[1]})" in caplog.text, caplog.text
