"""Synthetic sample clips: textured shapes moving over a drifting textured background.

Written as real H.264 mp4 files, they are what the default run and the tests train on: they have
motion, edges and texture at several scales, and they are generated in a second, offline.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import torch

from vtok.data.seeding import sample_generator
from vtok.data.writers import write_video

log = logging.getLogger(__name__)


def default_sample_dir() -> Path:
    """Where generated sample clips are cached: ``$XDG_CACHE_HOME/vtok/sample_clips``."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vtok" / "sample_clips"


def _waves(yy: torch.Tensor, xx: torch.Tensor, t: torch.Tensor, g: torch.Generator, count: int) -> torch.Tensor:
    """Sum of drifting sinusoids, ``[T, H, W]`` in about ``[-1, 1]``."""
    out = torch.zeros(t.shape[0], *yy.shape)
    for _ in range(count):
        fy, fx = (torch.rand(2, generator=g) * 2 - 1) * 6
        speed, phase = torch.rand(2, generator=g) * 2 * math.pi
        out += torch.sin(2 * math.pi * (fy * yy + fx * xx)[None] + speed * t[:, None, None] + phase)
    return out / count


def synthetic_clip(frames: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """uint8 RGB frames ``[frames, height, width, 3]`` of one generated clip."""
    g = sample_generator(seed, 0x5EED)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    t = torch.arange(frames, dtype=torch.float32) / 8
    base = torch.rand(3, generator=g) * 0.6 + 0.2
    video = torch.stack([base[c] + 0.25 * _waves(yy, xx, t, g, 3) for c in range(3)], dim=-1)
    for _ in range(int(torch.randint(2, 5, (), generator=g))):
        centre = torch.rand(2, generator=g)
        velocity = (torch.rand(2, generator=g) * 2 - 1) * 0.04
        radius = float(torch.rand((), generator=g) * 0.2 + 0.1)
        colour = torch.rand(3, generator=g)
        square = bool(torch.rand((), generator=g) < 0.5)
        stripes = 0.5 + 0.5 * _waves(yy, xx, t, g, 1)
        for i in range(frames):
            cy, cx = ((centre + velocity * i) % 1.0).tolist()
            dy, dx = (yy - cy).abs(), (xx - cx).abs()
            mask = torch.maximum(dy, dx) < radius if square else dy.square() + dx.square() < radius**2
            video[i][mask] = colour * (0.6 + 0.4 * stripes[i][mask, None])
    return (video.clamp(0, 1) * 255).round().to(torch.uint8)


def write_sample_clips(
    folder: str | Path, count: int, frames: int, height: int, width: int, fps: float = 24.0, seed: int = 0
) -> list[Path]:
    """Writes ``count`` generated clips as ``folder/sample_XXXX.mp4`` (existing ones are kept).

    Height and width are rounded up to even numbers (H.264 needs them even). The same arguments give the
    same files on any run (the seeded runs that train on them repeat exactly).
    """
    folder = Path(folder)
    height, width = height + height % 2, width + width % 2
    paths = [folder / f"sample_{index:04d}.mp4" for index in range(count)]
    missing = [index for index, path in enumerate(paths) if not path.exists()]
    if missing:
        log.info("writing %d generated sample clips to %s", len(missing), folder)
    for index in missing:
        write_video(paths[index], synthetic_clip(frames, height, width, seed=seed * 100_003 + index), fps, reproducible=True)
    return paths
