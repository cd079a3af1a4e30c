"""Space-to-depth at the network's input and depth-to-space at its output (LTX-Video, 2501.00103).

With patch size ``p`` the first convolution already runs at ``1/p`` resolution on ``3·p²``
channels, so a high spatial factor does not pay for full-resolution 3D convolutions.
"""

from __future__ import annotations

import torch
from einops import rearrange


def patchify(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """``[B, C, T, H, W]`` -> ``[B, C·p·p, T, H/p, W/p]``."""
    if patch_size == 1:
        return x
    return rearrange(x, "b c t (h p) (w q) -> b (c p q) t h w", p=patch_size, q=patch_size)


def unpatchify(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Exact inverse of :func:`patchify`."""
    if patch_size == 1:
        return x
    return rearrange(x, "b (c p q) t h w -> b c t (h p) (w q)", p=patch_size, q=patch_size)
