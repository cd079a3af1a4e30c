"""Channel-wise RMS normalisation for 5D video tensors (as in Wan 2.1's VAE).

Each position is normalised over its channels alone, so the layer is causal (no statistics across
frames), gives the same result on any temporal chunk or spatial tile, needs no cross-device
reduction, and maps onto the fused ``rms_norm`` kernel when the tensor is channels-last-3d.
GroupNorm, the usual choice, mixes statistics over time (breaking causality and chunked
decoding) and is the slowest layer of a channels-last video network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vtok.tokenizers.autocast import without_autocast


class ChannelRMSNorm(nn.Module):
    """RMS norm over dimension 1 of ``[B, C, T, H, W]`` with a learned per-channel gain.

    Args:
        channels: number of channels ``C``.
        eps: added to the mean square before the square root.
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # CUDA's autocast would run rms_norm in float32: a float32 copy of x in, a float32 result out,
        # both kept for the backward pass (half the activation memory of a bf16 step by the count of
        # benchmarks/roofline.py). The kernels accumulate in float32 whatever their input, so the
        # norm runs in x's own dtype instead (the gain cast to it, as the fused kernel needs).
        with without_autocast(x.device.type):
            # movedim gives a free view when x is channels-last-3d; rms_norm then reads it contiguously.
            y = F.rms_norm(x.movedim(1, -1), (x.shape[1],), self.weight.to(x.dtype), self.eps)
        return y.movedim(-1, 1)
