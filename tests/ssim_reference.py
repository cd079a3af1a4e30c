"""An independent SSIM for the tests: Wang et al. (2004) written out in numpy float64, window by window.

Every valid 11x11 window position (no padding) of each channel, weighted by a Gaussian of sigma 1.5
that sums to 1; the weighted mean, the weighted *central* second moments (computed from the window's
deviations, not as E[x²] - μ² like the code under test), C1 = (0.01 L)², C2 = (0.03 L)²; the mean over
the positions and the channels. The same number as scikit-image's ``structural_similarity(a, b,
gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=L, channel_axis=0)``, whose
Gaussian, truncated at 3.5 sigma, is the same 11x11 window.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def reference_ssim(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """SSIM of two frames ``[C, H, W]`` (H, W at least 11)."""
    offsets = np.arange(11) - 5.0
    gauss = np.exp(-(offsets**2) / (2 * 1.5**2))
    weights = np.outer(gauss, gauss) / np.outer(gauss, gauss).sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    values = []
    for x, y in zip(np.asarray(a, np.float64), np.asarray(b, np.float64)):
        wx, wy = sliding_window_view(x, (11, 11)), sliding_window_view(y, (11, 11))  # [H-10, W-10, 11, 11]
        mx, my = (wx * weights).sum((-2, -1)), (wy * weights).sum((-2, -1))
        dx, dy = wx - mx[..., None, None], wy - my[..., None, None]
        vx, vy = (dx * dx * weights).sum((-2, -1)), (dy * dy * weights).sum((-2, -1))
        cxy = (dx * dy * weights).sum((-2, -1))
        ssim = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
        values.append(ssim.mean())
    return float(np.mean(values))


def reference_ssim_per_video(reconstruction: np.ndarray, target: np.ndarray) -> list[float]:
    """Per video of ``[B, C, T, H, W]`` arrays in ``[-1, 1]``: the mean over frames of the SSIM of the
    frames mapped to ``[0, 1]`` (the reconstruction clipped first), data range 1."""
    reconstruction = (np.clip(np.asarray(reconstruction, np.float64), -1, 1) + 1) / 2
    target = (np.asarray(target, np.float64) + 1) / 2
    return [
        float(np.mean([reference_ssim(r[:, t], o[:, t]) for t in range(o.shape[1])]))
        for r, o in zip(reconstruction, target)
    ]
