"""Reconstruction metrics shared by validation during training and ``vtok evaluate``.

Inputs are videos ``[B, C, T, H, W]`` in ``[-1, 1]``; every per-video metric returns one value per
video, so callers choose how to average (per clip, per video, across ranks). PSNR over all frames
of a video; SSIM (Wang et al., 2004, as :mod:`vtok.evaluation.ssim` computes it) and LPIPS (Zhang et
al., 1801.03924) per frame, averaged over the frames of a video; the Fréchet distance between
Gaussian fits of two feature sets (FID's math, Heusel et al., 1706.08500), which is FVD
(Unterthiner et al., 1812.01717) on I3D features.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn
from torchmetrics.functional.image import peak_signal_noise_ratio
from torchmetrics.image.fid import _compute_fid

from vtok.evaluation.ssim import ssim_per_frame

DATA_RANGE = 2.0  # videos live in [-1, 1]
MAX_PSNR = 100.0  # dB: what an exact reconstruction scores (an infinite PSNR would make every mean infinite)


def shown_pixels(reconstruction: torch.Tensor) -> torch.Tensor:
    """``reconstruction`` in float32 clamped to the pixel range ``[-1, 1]``, as it would be shown, except that an
    infinite value (a diverged network) becomes NaN: clamped, it scored as a saturated pixel, and a network
    putting out infinities logged an ordinary-looking PSNR and SSIM."""
    pixels = reconstruction.float()
    return pixels.clamp(-1, 1).masked_fill(pixels.isinf(), float("nan"))


def psnr_per_video(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR in dB over all frames of each video, ``[B]``, at most :data:`MAX_PSNR` (an exact
    reconstruction, such as a black clip's, scores it instead of infinity); NaN for a video with a
    non-finite reconstructed value (:func:`shown_pixels`)."""
    return peak_signal_noise_ratio(
        shown_pixels(reconstruction),
        target.float(),
        data_range=DATA_RANGE,
        reduction="none",
        dim=(1, 2, 3, 4),
    ).clamp_max(MAX_PSNR)


def _frames(video: torch.Tensor) -> torch.Tensor:
    return rearrange(video.float(), "b c t h w -> (b t) c h w")


def ssim_per_video(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SSIM of every frame, averaged over the frames of each video, ``[B]``.

    Computed on pixel values in ``[0, 1]`` with data range 1 (the usual convention, as 8-bit frames
    over 255: SSIM is not shift-invariant), by :func:`vtok.evaluation.ssim.ssim_per_frame`: the
    11x11 Gaussian window (sigma 1.5) of Wang et al. (2004), averaged over the valid window
    positions only, then over the channels.

    Raises:
        ValueError: frames smaller than 11x11 pixels.
    """
    reconstruction, target = shown_pixels(reconstruction).add(1).div(2), target.add(1).div(2)
    values = ssim_per_frame(_frames(reconstruction), _frames(target), data_range=1.0)
    return values.view(target.shape[0], -1).mean(1)


@torch.no_grad()
def lpips_per_video(
    network: nn.Module, reconstruction: torch.Tensor, target: torch.Tensor, frames_per_pass: int = 64
) -> torch.Tensor:
    """LPIPS distance of every frame, averaged over the frames of each video, ``[B]``.

    Args:
        network: the LPIPS network from :func:`vtok.losses.perceptual.load_lpips_vgg`, on the videos' device.
        reconstruction: the decoded videos.
        target: the original videos.
        frames_per_pass: frames per forward pass of the network (bounds its memory).
    """
    pairs = zip(_frames(shown_pixels(reconstruction)).split(frames_per_pass), _frames(target).split(frames_per_pass))
    distances = torch.cat([network(a, b).flatten() for a, b in pairs])
    return distances.view(target.shape[0], -1).mean(1)


def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """Fréchet distance between Gaussian fits (mean, unbiased covariance) of two feature sets ``[N, D]``.

    ``||mu_a - mu_b||² + Tr(S_a + S_b - 2 (S_a S_b)^½)``, in float64, with the matrix square root's
    trace taken from the eigenvalues of ``S_a S_b`` (torchmetrics' FID computation).

    Raises:
        ValueError: a set has fewer than 2 rows, or the sets differ in width.
    """
    if features_a.ndim != 2 or features_b.ndim != 2 or features_a.shape[1] != features_b.shape[1]:
        raise ValueError(f"expected two feature sets [N, D] of one width, got {tuple(features_a.shape)} and {tuple(features_b.shape)}")
    if min(features_a.shape[0], features_b.shape[0]) < 2:
        raise ValueError(f"a Fréchet distance needs at least 2 samples per set, got {features_a.shape[0]} and {features_b.shape[0]}")
    a, b = features_a.double(), features_b.double()
    distance = _compute_fid(a.mean(0), torch.cov(a.T), b.mean(0), torch.cov(b.T))
    return max(float(distance), 0.0)  # identical sets give 0 up to rounding, never a negative distance


def high_frequency_energy(video: torch.Tensor, cutoff: float = 0.5) -> torch.Tensor:
    """Spectral energy of each video's frames above ``cutoff`` of the Nyquist frequency, per pixel
    value (Parseval: a white-noise video of variance v has energy about v·(share of the band)), ``[B]``.

    Each frame's mean is removed first; the radius is measured in units of Nyquist per axis, so
    non-square frames are handled alike, and horizontal and vertical detail weigh the same (the
    half-spectrum's columns between 0 and Nyquist count twice, for their mirrored halves).
    """
    height, width = video.shape[-2:]
    fy = torch.fft.fftfreq(height, device=video.device).abs() * 2  # 1.0 at Nyquist
    fx = torch.fft.rfftfreq(width, device=video.device) * 2
    high = (fy[:, None].square() + fx[None, :].square()).sqrt() > cutoff
    mirrored = torch.full_like(fx, 2.0)
    mirrored[0] = 1.0
    if width % 2 == 0:
        mirrored[-1] = 1.0  # the Nyquist column has no mirror either
    weight = high * mirrored[None, :]
    frames = video.float().clamp(-1, 1)
    spectrum = torch.fft.rfft2(frames - frames.mean(dim=(-2, -1), keepdim=True), norm="ortho").abs().square()
    return (spectrum * weight).sum(dim=(1, 2, 3, 4)) / video[0].numel()


# Below this high-band energy per pixel value (an RMS of 1e-3, an eighth of an 8-bit level) an original
# is flat: a ratio against it measures nothing but rounding, so none is given.
FLAT_ENERGY = 1e-6


def high_frequency_ratio(reconstruction: torch.Tensor, target: torch.Tensor, cutoff: float = 0.5) -> torch.Tensor:
    """Sharpness without weights: :func:`high_frequency_energy` of each video, reconstruction over
    original, ``[B]``; NaN where the original is flat (below :data:`FLAT_ENERGY`).

    Blur removes high frequencies and drives the ratio below 1; a decoder that invents detail (or
    noise) can push it above 1, so read it beside PSNR. Over a set of videos, take the ratio of the
    summed energies (as ``vtok evaluate`` does), not the mean of the ratios, which one nearly flat
    video can swamp.
    """
    return energy_ratio(high_frequency_energy(reconstruction, cutoff), high_frequency_energy(target, cutoff))


def energy_ratio(decoded: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """``decoded / original`` of high-frequency energies (per video, or means over a set), NaN where
    the original is flat (below :data:`FLAT_ENERGY`)."""
    return (decoded / original.clamp_min(FLAT_ENERGY)).masked_fill(original < FLAT_ENERGY, float("nan"))
