"""Space-to-depth at the network's input and depth-to-space at its output (LTX-Video, 2501.00103).

With patch size ``p`` the first convolution already runs at ``1/p`` resolution on ``3·p²``
channels, so a high spatial factor does not pay for full-resolution 3D convolutions. Both rearrange the
channels-last view ``x.movedim(1, -1)`` and return the network's layout (``vtok/vae/layout.py``):
on CUDA, channels-last-3d without a second copy.
"""

from __future__ import annotations

import torch
from einops import rearrange

from vtok.vae.layout import to_network_layout


def patchify(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """``[B, C, T, H, W]`` -> ``[B, C·p·p, T, H/p, W/p]``, in the network's layout (also for ``p = 1``)."""
    if patch_size == 1:
        return to_network_layout(x)
    patches = rearrange(x.movedim(1, -1), "b t (h p) (w q) c -> b t h w (c p q)", p=patch_size, q=patch_size)
    return to_network_layout(patches.movedim(-1, 1))


def unpatchify(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Exact inverse of :func:`patchify`."""
    if patch_size == 1:
        return x
    pixels = rearrange(x.movedim(1, -1), "b t h w (c p q) -> b t (h p) (w q) c", p=patch_size, q=patch_size)
    return to_network_layout(pixels.movedim(-1, 1))
