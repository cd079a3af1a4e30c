"""The latent noise of ``vtok evaluate --decode-timestep``: one seeded generator per clip.

Each clip's noise comes from its own CPU generator seeded by (``--noise-seed``, the clip's noise key:
its file's name and size in bytes), so a clip gets the same noise whatever the batch size, the order
of the batches, the device, the other videos evaluated with it, how its path is written (relative or
absolute) and where the data lives (another folder, mount or machine).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import torch


def noise_key(path: str | Path) -> str:
    """The key that seeds a clip's noise: its file's name and size in bytes, ``"<name>/<bytes>"``
    (not :func:`vtok.data.file_key`, a hash of the path as written, which moves with the data)."""
    path = Path(path)
    return f"{path.name}/{path.stat().st_size}"


def clip_seed(noise_seed: int, key: str) -> int:
    """The generator seed of one clip: the first 8 bytes (little-endian) of
    ``sha256(f"{noise_seed}/{key}")``, top bit cleared (a non-negative int64)."""
    digest = hashlib.sha256(f"{noise_seed}/{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def clip_noise(
    shape: Sequence[int], noise_seed: int, keys: Sequence[str], dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Standard normal noise ``[len(keys), *shape]`` on the CPU, row ``i`` drawn by
    ``torch.randn(shape, generator=torch.Generator().manual_seed(clip_seed(noise_seed, keys[i])))``.

    Args:
        shape: the shape of one clip's latents ``[C, t, h, w]``.
        noise_seed: ``--noise-seed``.
        keys: one stable key per clip (the runner uses :func:`noise_key` of its file).
        dtype: of the noise.
    """
    generators = [torch.Generator().manual_seed(clip_seed(noise_seed, key)) for key in keys]
    return torch.stack([torch.randn(tuple(shape), generator=generator, dtype=dtype) for generator in generators])
