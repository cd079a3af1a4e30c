"""`vtok evaluate --mode continuous|discrete` and `--decode-timestep t`, and first-frame tokens
through evaluate, tokenize and detokenize: each result equals the model's own computation."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from vtok import VideoAutoencoder
from vtok.cli import main
from vtok.data import ClipSpec, VideoClipDataset, list_files, open_video
from vtok.evaluation import psnr_per_video
from vtok.export import load_autoencoder, write_export
from vtok.tokenfiles import read_token_file
from vtok.vae import FirstFrameTokens

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
    assert psnr == pytest.approx(psnr_per_video(discrete, video).tolist(), abs=1e-3)
    assert metrics["high_frequency_ratio"] > 0


@pytest.mark.parametrize("conditioned", [True, False], ids=["denoising decoder", "plain decoder"])
def test_decode_timestep_decodes_seeded_noisy_latents(conditioned: bool, video_folder: Path, tmp_path: Path) -> None:
    path = export(tmp_path / "kl", decoder_timestep_conditioning=conditioned)
    model, video = load_autoencoder(path), clips(video_folder)
    t = 0.3
    with torch.no_grad():
        latents = model.encode(video)
        noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(5))
        expected = model.decode((1 - t) * latents + t * noise, timestep=t if conditioned else None)
    metrics, psnr = evaluated(path, video_folder, tmp_path / "t", "--decode-timestep", t, "--noise-seed", 5, "--batch-size", 2)
    assert metrics["decode_timestep"] == t and metrics["mode"] == "continuous"
    assert psnr == pytest.approx(psnr_per_video(expected, video).tolist(), abs=1e-3)
    assert "noise level t = 0.3" in (tmp_path / "t" / "report.md").read_text()


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
