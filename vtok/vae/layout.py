"""The memory layout of the network's activations: channels-last-3d on CUDA, channels-first elsewhere.

cuDNN's fast bf16 3D convolutions are channels-last (NDHWC) inside: given channels-first tensors
they transpose every operand in and every result out, and the fused RMS norm copies the permuted
view it reads. On an H200 those copies and transposes took 31 % of an eager training step
(``benchmarks/README.md``). The CPU's 3D convolutions answer channels-first whatever they are
given, so there the network stays channels-first (a channels-last input only adds conversions).

Every convolution puts its (padded) input in this layout (:func:`to_network_layout`, a no-op where
it already is), and the layers in between keep it: the causal padding concatenates plain slices,
and patchify and the resampling restore it after an einops rearrangement.
"""

from __future__ import annotations

import torch


def network_layout(device: torch.device) -> torch.memory_format:
    """``torch.channels_last_3d`` on CUDA, ``torch.contiguous_format`` on every other device."""
    return torch.channels_last_3d if device.type == "cuda" else torch.contiguous_format


def to_network_layout(x: torch.Tensor) -> torch.Tensor:
    """``x`` (5D) in :func:`network_layout` of its device; itself when it already is."""
    return x.contiguous(memory_format=network_layout(x.device))
