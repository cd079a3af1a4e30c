"""PatchGAN discriminators (pix2pix, 1611.07004): a 3D one over clips and a 2D one over frames.

Both return a map of real/fake logits, one per receptive-field patch. Normalisation is spectral
(stable, no statistics) or group norm; never batch norm, whose statistics would differ between
the real and fake halves and between ranks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

DiscriminatorKind = Literal["patch3d", "patch2d"]
DiscriminatorNorm = Literal["spectral", "group"]


def _block(conv: nn.Module, channels: int, norm: DiscriminatorNorm, normalise: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [spectral_norm(conv) if norm == "spectral" else conv]
    if normalise and norm == "group":
        layers.append(nn.GroupNorm(math.gcd(32, channels), channels))  # 32 groups where the width allows
    layers.append(nn.LeakyReLU(0.2))
    return layers


Stage = Literal["first", "strided", "unstrided"]


def _patchgan(conv: Callable[[int, int, Stage], nn.Module], channels: int, layers: int, norm: DiscriminatorNorm) -> nn.Sequential:
    """First layer, ``layers`` normalised layers (all strided but the last), then a 1-channel head.
    ``conv(in, out, stage)`` makes one convolution for a stage."""
    widths = [channels * min(2**i, 8) for i in range(layers + 1)]
    body = _block(conv(3, widths[0], "first"), widths[0], norm, normalise=False)
    for i in range(layers):
        stage: Stage = "strided" if i < layers - 1 else "unstrided"
        body += _block(conv(widths[i], widths[i + 1], stage), widths[i + 1], norm, normalise=True)
    body.append(conv(widths[-1], 1, "unstrided"))
    return nn.Sequential(*body)


class PatchDiscriminator3d(nn.Module):
    """3D PatchGAN over ``[B, 3, T, H, W]`` clips: 3x4x4 convolutions; the first halves space
    only, the others space and time.

    Args:
        channels: width of the first layer (doubled per layer, at most 8x).
        layers: layers after the first.
        norm: ``"spectral"`` or ``"group"``.
    """

    def __init__(self, channels: int = 64, layers: int = 3, norm: DiscriminatorNorm = "spectral") -> None:
        super().__init__()
        strides = {"first": (1, 2, 2), "strided": (2, 2, 2), "unstrided": 1}
        conv = lambda i, o, stage: nn.Conv3d(i, o, (3, 4, 4), stride=strides[stage], padding=1)  # noqa: E731
        self.net = _patchgan(conv, channels, layers, norm)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.net(video)


class PatchDiscriminator2d(nn.Module):
    """2D PatchGAN applied to every frame of ``[B, 3, T, H, W]`` (frames folded into the batch).

    Args:
        channels: width of the first layer (doubled per layer, at most 8x).
        layers: layers after the first.
        norm: ``"spectral"`` or ``"group"``.
    """

    def __init__(self, channels: int = 64, layers: int = 3, norm: DiscriminatorNorm = "spectral") -> None:
        super().__init__()
        conv = lambda i, o, stage: nn.Conv2d(i, o, 4, stride=1 if stage == "unstrided" else 2, padding=1)  # noqa: E731
        self.net = _patchgan(conv, channels, layers, norm)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.net(video.transpose(1, 2).flatten(0, 1))  # [B·T, 3, H, W]


def build_discriminator(kind: DiscriminatorKind, channels: int, layers: int, norm: DiscriminatorNorm) -> nn.Module:
    """The discriminator named by the config."""
    if kind == "patch3d":
        return PatchDiscriminator3d(channels, layers, norm)
    if kind == "patch2d":
        return PatchDiscriminator2d(channels, layers, norm)
    raise ValueError(f"discriminator={kind!r} is not supported; choose one of {DiscriminatorKind.__args__}")
