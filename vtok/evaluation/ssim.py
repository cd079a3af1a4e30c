"""SSIM as Wang et al. (2004) define it, computed here rather than by a library whose border handling varies.

For each frame and channel, with an 11x11 Gaussian window of standard deviation 1.5 (normalised to
sum 1) giving local means μ, variances σ² and the covariance σ_xy (population moments, the window's
weights; no sample-covariance correction):

    SSIM(x, y) = (2 μ_x μ_y + C1)(2 σ_xy + C2) / ((μ_x² + μ_y² + C1)(σ_x² + σ_y² + C2)),
    C1 = (0.01 L)², C2 = (0.03 L)², L the data range,

averaged over the *valid* window positions only (no padding: (H - 10) x (W - 10) positions), then
over the channels. This is the reference MATLAB ``ssim_index`` and scikit-image's
``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
data_range=L)``; torchmetrics' SSIM, since its September 2024 releases, instead averages over the
reflect-padded whole frame, which reads about 0.004 lower on real frames.

Frames smaller than the window are refused (:class:`ValueError`) rather than measured with a
narrower window: such a number would not be the SSIM that papers report, and a metric that cannot
be compared is worse than none.

The filtering runs in full float32 (or float64) whatever the global precision settings: TF32, which
cuDNN uses for float32 convolutions by default, keeps 10 mantissa bits, and the variances
E[x²] - μ² cancel those away (SSIM off by 0.02-0.04 on real frames).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F

WINDOW = 11  # the standard window, Wang et al. (2004)
SIGMA = 1.5
K1, K2 = 0.01, 0.03


def gaussian_window(size: int = WINDOW, sigma: float = SIGMA, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The 1D Gaussian ``[size]`` centred on the middle sample, summing to 1 (the 2D window is its outer product)."""
    offsets = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    weights = torch.exp(-offsets.square() / (2 * sigma**2))
    return (weights / weights.sum()).to(dtype)


def check_ssim_size(height: int, width: int) -> None:
    """Raises ``ValueError`` unless ``height x width`` frames hold the 11x11 SSIM window."""
    if height < WINDOW or width < WINDOW:
        raise ValueError(
            f"SSIM needs frames of at least {WINDOW}x{WINDOW} pixels (its {WINDOW}x{WINDOW} Gaussian window, "
            f"Wang et al. 2004), got {height}x{width}; use larger frames (vtok evaluate --size, data.size in training)"
        )


def ssim_per_frame(
    x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, frames_per_pass: int = 64
) -> torch.Tensor:
    """SSIM of each frame pair, averaged over the valid window positions and the channels, ``[N]``.

    Args:
        x, y: frames ``[N, C, H, W]`` of one shape (computed in float32, or float64 when given float64).
        data_range: L, the span of the pixel values (1.0 for values in ``[0, 1]``).
        frames_per_pass: frames filtered at once (bounds the memory of the five filtered maps).

    Raises:
        ValueError: the shapes differ or are not ``[N, C, H, W]``, or a frame is smaller than 11x11.
    """
    if x.shape != y.shape or x.ndim != 4:
        shapes = f"{tuple(x.shape)} and {tuple(y.shape)}"
        raise ValueError(f"expected two frame batches [N, C, H, W] of one shape, got {shapes}")
    check_ssim_size(*x.shape[-2:])
    dtype = torch.float64 if torch.float64 in (x.dtype, y.dtype) else torch.float32
    window = gaussian_window(dtype=dtype).to(x.device)
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    values = []
    # filtered in float32 or float64 even inside autocast, and never in TF32
    with torch.autocast(x.device.type, enabled=False), full_precision_convolutions():
        for a, b in zip(x.to(dtype).split(frames_per_pass), y.to(dtype).split(frames_per_pass)):
            values.append(_ssim_map(a, b, window, c1, c2).mean(dim=(1, 2, 3)))
    return torch.cat(values)


_PRECISION_SETTINGS = threading.RLock()  # see full_precision_convolutions


@contextmanager
def full_precision_convolutions() -> Iterator[None]:
    """Float32 convolutions in IEEE precision inside, on cuDNN (TF32 by default) and oneDNN alike; the
    global settings are restored on the way out.

    The per-operator settings (``torch.backends.cudnn.conv.fp32_precision``, PyTorch 2.9 and later) are
    the ones convolutions read, and an operator's own ``"ieee"`` overrides the backend-wide setting and
    the legacy ``torch.backends.cudnn.allow_tf32``; ``cudnn.flags(allow_tf32=False)`` would instead leave
    the operator inheriting a backend-wide ``"tf32"``. The float32 matmul precision plays no part: the
    depthwise convolutions here run on cuDNN or CUDA's depthwise kernel, never on cuBLAS. The settings
    are process-wide: one thread at a time holds them (another waits), so none restores a state that
    another thread set.
    """
    with _PRECISION_SETTINGS:
        yield from _ieee_convolutions()


def _ieee_convolutions() -> Iterator[None]:
    if not hasattr(torch.backends.cudnn, "conv"):  # PyTorch before 2.9: only the backend-wide flag exists
        earlier_flag = torch.backends.cudnn.allow_tf32
        try:
            torch.backends.cudnn.allow_tf32 = False
            yield
        finally:
            torch.backends.cudnn.allow_tf32 = earlier_flag
        return
    settings = (torch.backends.cudnn.conv, torch.backends.mkldnn.conv)
    earlier = [setting.fp32_precision for setting in settings]
    try:
        for setting in settings:
            setting.fp32_precision = "ieee"
        yield
    finally:
        for setting, precision in zip(settings, earlier):
            setting.fp32_precision = precision


def _ssim_map(a: torch.Tensor, b: torch.Tensor, window: torch.Tensor, c1: float, c2: float) -> torch.Tensor:
    """SSIM at every valid window position of frames ``[n, C, H, W]``: ``[n, C, H - 10, W - 10]``."""
    maps = torch.cat([a, b, a * a, b * b, a * b], dim=1)  # [n, 5C, H, W], filtered channel by channel
    groups = maps.shape[1]
    rows = window.view(1, 1, -1, 1).expand(groups, 1, -1, 1).contiguous()
    columns = window.view(1, 1, 1, -1).expand(groups, 1, 1, -1).contiguous()
    filtered = F.conv2d(F.conv2d(maps, rows, groups=groups), columns, groups=groups)  # no padding: valid positions
    mu_a, mu_b, aa, bb, ab = filtered.unflatten(1, (5, a.shape[1])).unbind(1)
    var_a, var_b, cov = aa - mu_a.square(), bb - mu_b.square(), ab - mu_a * mu_b
    numerator = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    denominator = (mu_a.square() + mu_b.square() + c1) * (var_a + var_b + c2)
    return numerator / denominator
