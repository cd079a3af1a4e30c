"""Fitting a discrete model's quantizer projections to a continuous prior's latents (OneVAE).

A tokenizer started from a continuous prior keeps the prior's encoder and decoder, but the 1x1x1
projections into and out of the quantizer start random: the decoder then reads something
unrelated to the latent it was trained on, and the prior is lost at the first step. Fitted to the
prior's latents instead, ``project_in`` maps them onto their principal directions, scaled to half a
unit per standard deviation (+-2 sigma at +-1 before the quantizer's bound: an odd FSQ level count
reaches its outer codes there; an even one, whose levels are not symmetric, uses its outer ones less;
the spacing is near the mean-squared-error optimum either way), and ``project_out`` maps codes back to the
latent (its mean plus those components), each code scaled by the gain that best predicts a
component from its code, less the code's own mean (an even FSQ level count's grid is not symmetric: its
codes average below zero, which read back as a constant shift of every fitted component). With the
quantizer replaced by the identity that gain is 1 and the decoder reads the latent's best rank-``d``
approximation. Real quantizers shrink or stretch: a GroupLFQ code
is a sign, ±1 whatever the component's size, and the best guess of a Gaussian component from its
sign is ±0.8σ, not the ±2σ that an unscaled ±1 maps back to (the decoder would read each component
2.5x too large, worse than reading the latent's mean); FSQ's tanh bound pulls codes inwards. The
gains are measured by passing Gaussian components through the quantizer itself, so any quantizer
gets its own.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from einops import rearrange
from torch import nn

from vtok.vae.quantized import QuantizedBottleneck

SPREAD = 0.5  # quantizer input per standard deviation of a principal component: +-2 sigma at +-1
# Components with less variance than this share of the largest's are not fitted: scaled to SPREAD, a near-constant
# one (a collapsed KL channel) got an input weight of 1e4 or more, and the encoder's first updates then drove
# that quantizer input deep into FSQ's tanh bound, where its gradient is zero for good.
VARIANCE_FLOOR = 1e-4
GAIN_SAMPLES = 64  # a 64x64 grid of Gaussian positions per channel to measure the quantizer's gains on


def latent_moments(latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Count, per-channel sum and channel outer-product sum of ``[B, C, T, H, W]`` latents (float64),
    summed over the ranks of a process group, so every rank fits the same projections."""
    flat = rearrange(latents.detach().double(), "b c t h w -> (b t h w) c")
    moments = [torch.tensor(float(flat.shape[0]), dtype=torch.float64, device=flat.device), flat.sum(0), flat.T @ flat]
    if dist.is_available() and dist.is_initialized():
        for moment in moments:
            dist.all_reduce(moment)
    return moments[0], moments[1], moments[2]


def code_gains(quantizer: nn.Module, channels: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares gains ``g`` and code means ``m`` of the quantizer's codes ``q`` for inputs ``x`` drawn from
    ``N(0, SPREAD^2)`` (the projected components' distribution), for its first ``channels`` channels (float64,
    ``[channels]`` each): ``g (q - m)`` is the affine map of a code that best predicts the input it came from
    (``g = cov(x, q) / var(q)``). Seeded, so every rank measures the same ones."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, quantizer.channels, 1, GAIN_SAMPLES, GAIN_SAMPLES, generator=generator) * SPREAD
    with torch.no_grad():
        codes = quantizer(x.to(device), with_losses=False).codes.double().cpu()
    x, codes = x.double()[0, :channels].flatten(1), codes[0, :channels].flatten(1)
    means = codes.mean(1)
    centred = codes - means[:, None]
    gains = (x * centred).sum(1) / centred.square().sum(1).clamp_min(1e-12)
    return gains.to(device), means.to(device)


def fit_projections(
    bottleneck: QuantizedBottleneck, count: torch.Tensor, total: torch.Tensor, outer: torch.Tensor
) -> tuple[float, int] | None:
    """Sets the bottleneck's projections from the latents' moments (see the module docstring).

    A quantizer wider than the latent, or than the components with more than ``VARIANCE_FLOOR`` of the
    largest one's variance, keeps its extra input channels as they were and reads them back as nothing
    (training gives them a use).

    Returns:
        The share of the latents' variance the fitted components hold and their number; ``None``, changing
        nothing, when the projections are identities (equal widths: no parameters to fit).
    """
    project_in, project_out = bottleneck.project_in, bottleneck.project_out
    if not isinstance(project_in, nn.Conv3d) or not isinstance(project_out, nn.Conv3d):
        return None
    mean = total / count
    covariance = outer / count - torch.outer(mean, mean)
    variances, directions = torch.linalg.eigh(covariance)
    variances, directions = variances.flip(0), directions.flip(1)  # largest first
    usable = int((variances > VARIANCE_FLOOR * variances[0]).sum())
    kept = min(project_in.out_channels, usable)
    share = float(variances[:kept].sum() / variances.sum().clamp_min(1e-12))
    variances, directions = variances[:kept], directions[:, :kept]
    scale = SPREAD / variances.sqrt()
    w_in = (directions * scale).T  # [kept, C]
    w_out = torch.zeros(project_out.out_channels, project_out.in_channels, dtype=torch.float64, device=mean.device)
    gains, code_means = code_gains(bottleneck.quantizer, kept, mean.device)
    w_out[:, :kept] = directions * (gains / scale)
    with torch.no_grad():
        project_in.weight[:kept, :, 0, 0, 0] = w_in.to(project_in.weight.dtype)
        project_in.bias[:kept] = (-w_in @ mean).to(project_in.bias.dtype)
        project_out.weight[:, :, 0, 0, 0] = w_out.to(project_out.weight.dtype)
        project_out.bias.copy_((mean - w_out[:, :kept] @ code_means).to(project_out.bias.dtype))
    return share, kept
