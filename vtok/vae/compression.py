"""Spatiotemporal compression factors and the clip shapes they accept.

vtok writes compression time first: ``4x8x8`` is 4 in time and 8 in height and width. A causal
model with temporal factor ``t`` takes ``T = 1 + k·t`` frames (the first frame is encoded on its
own, like an image) and gives ``1 + k`` latent frames; height and width must be multiples of the
spatial factor ``s``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SPATIAL_FACTORS = (4, 8, 16, 32)
TEMPORAL_FACTORS = (1, 2, 4, 8)


@dataclass(frozen=True)
class Compression:
    """Temporal and spatial downsampling factors of a causal video autoencoder.

    Args:
        temporal: frames per latent frame after the first (1, 2, 4 or 8).
        spatial: pixels per latent position along height and width (4, 8, 16 or 32).
    """

    temporal: int
    spatial: int

    def __post_init__(self) -> None:
        if self.temporal not in TEMPORAL_FACTORS:
            raise ValueError(
                f"temporal_compression={self.temporal} is not supported; choose one of {TEMPORAL_FACTORS}"
            )
        if self.spatial not in SPATIAL_FACTORS:
            raise ValueError(
                f"spatial_compression={self.spatial} is not supported; choose one of {SPATIAL_FACTORS}"
            )

    @classmethod
    def parse(cls, text: str) -> "Compression":
        """Reads ``"4x8x8"`` (time x height x width; height and width must match)."""
        parts = text.lower().split("x")
        if len(parts) != 3 or not all(p.isdigit() for p in parts) or parts[1] != parts[2]:
            raise ValueError(f"compression {text!r} is not of the form 'TxSxS', e.g. '4x8x8'")
        return cls(temporal=int(parts[0]), spatial=int(parts[1]))

    def __str__(self) -> str:
        return f"{self.temporal}x{self.spatial}x{self.spatial}"

    @property
    def temporal_stages(self) -> int:
        return int(math.log2(self.temporal))

    @property
    def spatial_stages(self) -> int:
        return int(math.log2(self.spatial))

    def latent_frames(self, frames: int) -> int:
        """Latent frames of a ``frames``-frame clip: the first frame alone, then one per ``temporal``."""
        return 1 + (frames - 1) // self.temporal

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """Latent ``(t', h', w')`` for a clip of ``frames x height x width``, after checking it."""
        self.check_clip(frames, height, width)
        return self.latent_frames(frames), height // self.spatial, width // self.spatial

    def check_clip(self, frames: int, height: int, width: int) -> None:
        """Raises ``ValueError`` naming the nearest valid sizes when the clip shape does not fit."""
        problems = []
        if frames < 1 or (frames - 1) % self.temporal:
            below, above = nearest_lengths(frames, self.temporal)
            problems.append(f"frames={frames} is not 1 + k*{self.temporal}; use {below} or {above}")
        for name, size in (("height", height), ("width", width)):
            if size < 1:
                problems.append(f"{name}={size} must be positive (a multiple of {self.spatial})")
            elif size < self.spatial or size % self.spatial:
                below, above = size // self.spatial * self.spatial, (size // self.spatial + 1) * self.spatial
                options = f"{below} or {above}" if below else f"{above}"
                problems.append(f"{name}={size} is not a multiple of {self.spatial}; use {options}")
        if problems:
            raise ValueError(f"clip shape does not fit compression {self}: " + "; ".join(problems))

    def pixels_per_latent_position(self) -> int:
        """Pixels (per channel) one latent position stands for: ``temporal · spatial²``."""
        return self.temporal * self.spatial * self.spatial


def nearest_lengths(frames: int, multiple: int) -> tuple[int, int]:
    """The clip lengths ``1 + k·multiple`` nearest below (or at) and above ``frames``."""
    below = 1 + max(frames - 1, 0) // multiple * multiple
    return below, below + multiple


def resampling_plan(compression: Compression, patch_size: int = 1) -> list[tuple[bool, bool]]:
    """``(space, time)`` for each resolution stage of the encoder, from full resolution down.

    Patchify takes ``patch_size`` of the spatial factor before the first convolution; the rest is
    halved once per stage, in the first stages (where halving saves the most compute). Time is
    halved in the last stages, where frames are cheapest to keep and motion is modelled at low
    resolution, as Wan 2.1 and CogVideoX do.
    """
    if patch_size < 1 or compression.spatial % patch_size or patch_size & (patch_size - 1):
        raise ValueError(
            f"patch_size={patch_size} must be a power of 2 dividing spatial_compression={compression.spatial}"
        )
    space_stages = compression.spatial_stages - int(math.log2(patch_size))
    time_stages = compression.temporal_stages
    stages = max(space_stages, time_stages)
    return [(i < space_stages, i >= stages - time_stages) for i in range(stages)]
