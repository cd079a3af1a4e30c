"""What ``vtok evaluate`` writes: metrics.json strict JSON, with the reason beside each metric left empty."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch


def test_metrics_json_holds_no_nan_or_inf_and_says_why_a_metric_is_null(tmp_path: Path) -> None:
    from vtok.evaluation.report import HEADLINE, finite_metrics, write_outputs
    from vtok.evaluation.runner import _set_sharpness

    sharpness = _set_sharpness(torch.tensor([[float("nan"), 1.0]]))
    assert math.isnan(sharpness), "non-finite reconstructions of detailed originals: not 'the originals are flat'"
    metrics = {
        "psnr": float("nan"), "ssim": 0.5, "lpips": None, "lpips_skipped": "no weights", "high_frequency_ratio": sharpness,
        "high_frequency_ratio_skipped": None, "fvd": float("inf"), "fvd_skipped": None, "compression": "4x8x8",
        "mode": "continuous", "decode_timestep": 0.0, "skipped": [], "pictures": [],
        "protocol": {"frames": 5, "height": 32, "width": 32, "stride": 1, "fps": float("nan"), "clip_fps": [24.0]},
        "model": {"path": "m"}, "device": "cpu",
    }  # fmt: skip
    metrics |= {key: None for key, _ in HEADLINE if key not in metrics}  # the rest of the report's table
    finite = finite_metrics(metrics)
    assert finite["psnr"] is None and finite["psnr_skipped"] == "not a finite number (NaN or inf)"
    assert list(finite)[:2] == ["psnr", "psnr_skipped"], "the reason follows its metric"
    assert finite["fvd"] is None and finite["fvd_skipped"] == finite["high_frequency_ratio_skipped"] == finite["psnr_skipped"]
    assert finite["ssim"] == 0.5 and "ssim_skipped" not in finite and finite["lpips_skipped"] == "no weights"
    assert finite["protocol"]["fps"] is None and finite["protocol"]["clip_fps"] == [24.0]
    write_outputs(tmp_path, finite, [])
    strict = json.loads((tmp_path / "metrics.json").read_text(), parse_constant=lambda name: pytest.fail(f"bare {name}"))
    assert strict["psnr"] is None and strict["fvd_skipped"] == "not a finite number (NaN or inf)"
    assert "| PSNR (dB) | skipped: not a finite number (NaN or inf) |" in (tmp_path / "report.md").read_text()
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        write_outputs(tmp_path, metrics, [])
