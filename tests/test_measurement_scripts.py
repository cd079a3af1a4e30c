"""The design and technique measurement scripts run at smoke size and print their JSON lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*argv: str) -> list[dict]:
    result = subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def test_design_choices_measures_five_variants() -> None:
    rows = _run("benchmarks.design_choices", "--steps", "2", "--size", "16", "--frames", "5")
    assert [(r["frame_padding"], r["resample_shortcut"], r.get("patch_size", 1)) for r in rows] == [
        ("replicate", True, 1), ("replicate", False, 1), ("zeros", True, 1), ("zeros", False, 1), ("replicate", True, 2)
    ]
    assert all(r["val_psnr_db"] > 0 and r["seconds_per_step"] > 0 for r in rows)
    assert rows[-1]["params_m"] < rows[0]["params_m"]  # the full-resolution level is gone


def test_onevae_measures_prior_tokens_and_first_frame() -> None:
    rows = _run("benchmarks.onevae", "--steps", "2", "--prior-steps", "2", "--size", "16", "--frames", "5", "--eval-every", "1")
    by_name = {r["measurement"]: r for r in rows}
    assert set(by_name) == {"prior_vs_scratch", "tokens_per_position", "first_frame_strengthening"}
    assert [s for s, _ in by_name["prior_vs_scratch"]["scratch_psnr_by_step"]] == [1, 2]
    assert by_name["tokens_per_position"]["k2_bits_per_pixel"] == 2 * by_name["tokens_per_position"]["k1_bits_per_pixel"]
    strengthened = by_name["first_frame_strengthening"]
    assert strengthened["on"]["bits_per_pixel"] > strengthened["off"]["bits_per_pixel"]


def test_decoders_measures_denoising_and_generative_decoding() -> None:
    rows = _run("benchmarks.decoders", "--steps", "2", "--stage2-steps", "2", "--frames", "9", "--size", "32", "--width", "8")
    by_name = {r["measurement"]: r for r in rows}
    assert set(by_name) == {"denoising_decoder", "generative_decoder"}
    for variant in ("plain", "denoising"):
        assert set(by_name["denoising_decoder"][variant]) == {"latent_std", "t=0", "t=0.05", "t=0.2"}
        assert by_name["denoising_decoder"][variant]["t=0.05"]["psnr_db"] > 0
    generative = by_name["generative_decoder"]
    for stage in ("stage1", "stage1_continued", "stage2"):
        assert generative[stage]["zero_noise"]["high_frequency_ratio"] > 0
        assert generative[stage]["zero_noise"] != generative[stage]["sampled_noise"]  # the noise channels are read
