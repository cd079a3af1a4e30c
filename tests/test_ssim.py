"""SSIM is Wang et al.'s (2004) on the valid window positions, equal to an independent computation,
and frames smaller than its 11x11 window are a one-line error through `vtok evaluate`."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import small_frame_export
from tests.ssim_reference import reference_ssim, reference_ssim_per_video
from vtok.cli import main
from vtok.evaluation import psnr_per_video, ssim_per_video
from vtok.evaluation import ssim as ssim_module
from vtok.evaluation.ssim import full_precision_convolutions
from vtok.evaluation.ssim import ssim_per_frame


def _pair(shape: tuple[int, ...], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A smooth-ish target in [-1, 1] and a noisy reconstruction that strays outside it (clipped by the metric)."""
    generator = torch.Generator().manual_seed(seed)
    target = torch.rand(shape, generator=generator).mul(2).sub(1).cumsum(-1).div(4).clamp(-1, 1)
    return target + 0.3 * torch.randn(shape, generator=generator), target


def test_ssim_equals_the_standard_definition_on_the_valid_region() -> None:
    reconstruction, target = _pair((2, 3, 3, 13, 17))  # 3x7 valid window positions: borders would weigh a lot
    expected = reference_ssim_per_video(reconstruction.numpy(), target.numpy())
    assert ssim_per_video(reconstruction, target).tolist() == pytest.approx(expected, abs=1e-5)
    assert ssim_per_video(target, target).tolist() == pytest.approx([1.0, 1.0], abs=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # as validation may call it: still computed in float32
        assert ssim_per_video(reconstruction, target).tolist() == pytest.approx(expected, abs=1e-5)


def test_ssim_per_frame_in_float64_and_other_data_ranges() -> None:
    a, b = (x.double() for x in _pair((4, 3, 24, 11), seed=1))  # frames [N, C, H, W]: one valid column
    for data_range in (1.0, 2.0, 255.0):
        got = ssim_per_frame(a * data_range, b * data_range, data_range=data_range)
        want = [reference_ssim(x * data_range, y * data_range, data_range) for x, y in zip(a.numpy(), b.numpy())]
        assert got.dtype == torch.float64 and got.tolist() == pytest.approx(want, abs=1e-10)
    try:  # scikit-image is no dependency of vtok: compared with it where it is installed
        from skimage.metrics import structural_similarity
    except ImportError:
        return
    x, y = np.random.default_rng(0).random((2, 3, 20, 30))
    options = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False, "data_range": 1.0}
    assert reference_ssim(x, y) == pytest.approx(structural_similarity(x, y, channel_axis=0, **options), abs=1e-10)
    assert ssim_per_frame(torch.from_numpy(x)[None], torch.from_numpy(y)[None]).item() == pytest.approx(
        structural_similarity(x, y, channel_axis=0, **options), abs=1e-10
    )


def test_the_filtering_never_runs_in_tf32_and_leaves_the_global_settings_as_they_were(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """TF32 (cuDNN's default for float32 convolutions) breaks E[x²] - μ²: SSIM off by 0.02-0.04 on real
    frames. The convolutions must see IEEE float32 whatever the user set, and the settings come back."""
    conv_settings = (torch.backends.cudnn.conv, torch.backends.mkldnn.conv)
    for setting in conv_settings:
        monkeypatch.setattr(setting, "fp32_precision", "tf32")  # what a user (or cuDNN's default) may have
    legacy = torch.backends.cudnn.allow_tf32
    real_conv2d, seen = ssim_module.F.conv2d, []

    def spy(*args: object, **kwargs: object) -> torch.Tensor:
        seen.append([setting.fp32_precision for setting in conv_settings])
        return real_conv2d(*args, **kwargs)

    monkeypatch.setattr(ssim_module.F, "conv2d", spy)
    reconstruction, target = _pair((1, 3, 2, 16, 16))
    ssim_per_video(reconstruction, target)
    assert seen and all(precisions == ["ieee", "ieee"] for precisions in seen), seen
    assert [setting.fp32_precision for setting in conv_settings] == ["tf32", "tf32"]
    assert torch.backends.cudnn.allow_tf32 == legacy

    def failing(*args: object, **kwargs: object) -> torch.Tensor:
        raise RuntimeError("out of memory")

    monkeypatch.setattr(ssim_module.F, "conv2d", failing)
    with pytest.raises(RuntimeError, match="out of memory"):
        ssim_per_video(reconstruction, target)
    assert [setting.fp32_precision for setting in conv_settings] == ["tf32", "tf32"], "restored after an error too"


def test_frames_under_the_window_are_refused() -> None:
    with pytest.raises(ValueError, match=r"SSIM needs frames of at least 11x11 pixels .* got 16x10"):
        ssim_per_video(torch.zeros(1, 3, 1, 16, 10), torch.zeros(1, 3, 1, 16, 10))


@pytest.mark.parametrize("size", [4, 8])
def test_small_frames_are_a_one_line_error_of_evaluate_before_any_work(
    size: int, video_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = small_frame_export(tmp_path / "s4")
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--model", str(path), "--data", str(video_folder), "--out", str(tmp_path / "eval"),
              "--frames", "5", "--size", str(size), str(size), "--pictures", "0"])  # fmt: skip
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("vtok evaluate: error: SSIM needs frames of at least 11x11 pixels"), error
    assert f"got {size}x{size}" in error and "\n" not in error, error
    assert not (tmp_path / "eval").exists()


def test_full_precision_convolutions_are_held_by_one_thread_at_a_time() -> None:
    """The settings are process-wide: a second thread waits for the first to leave, so it neither
    filters in a state the first restores nor restores one the first set."""
    conv = torch.backends.cudnn.conv if hasattr(torch.backends.cudnn, "conv") else None
    before = conv.fp32_precision if conv is not None else torch.backends.cudnn.allow_tf32
    first_inside, first_may_leave = threading.Event(), threading.Event()
    order: list[str] = []

    def first() -> None:
        with full_precision_convolutions():
            order.append("first in")
            first_inside.set()
            first_may_leave.wait(10)
            order.append("first out")

    def second() -> None:
        first_inside.wait(10)
        with full_precision_convolutions():
            order.append("second in")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    first_inside.wait(10)
    threads[1].join(0.5)  # the second thread is kept waiting while the first holds the settings
    first_may_leave.set()
    for thread in threads:
        thread.join(10)
    assert order == ["first in", "first out", "second in"]
    assert (conv.fp32_precision if conv is not None else torch.backends.cudnn.allow_tf32) == before


def test_a_reconstruction_holding_infinities_scores_nan_not_a_saturated_pixel() -> None:
    """Clamped, +-inf scored as a saturated pixel: validation of a diverged network logged an ordinary PSNR and SSIM."""
    reconstruction, target = _pair((2, 3, 2, 16, 16))
    reconstruction[0, :, 0, :4] = float("inf")
    reconstruction[0, :, 1, :4] = -float("inf")
    psnr, ssim = psnr_per_video(reconstruction, target), ssim_per_video(reconstruction, target)
    assert psnr[0].isnan() and ssim[0].isnan(), (psnr, ssim)
    assert psnr[1] == psnr_per_video(reconstruction[1:], target[1:])[0] and ssim[1].isfinite()
