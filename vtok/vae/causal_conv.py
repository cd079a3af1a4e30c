"""Causal 3D convolution: time is padded only on the past, so no output frame sees a later one.

The padding before the first frame is either copies of the first frame (``"replicate"``: a still
image is encoded as if it had always been still) or zeros (``"zeros"``). Height and width are
zero-padded by the convolution itself, which keeps the fast cuDNN path. With ``causal=False``
(LTX-Video's decoder) time is padded on both sides instead, half the kernel each.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from vtok.vae.layout import to_network_layout
from vtok.vae.streaming import Streamable

FramePadding = Literal["replicate", "zeros"]


def pad_time(x: torch.Tensor, before: int, after: int, frame_padding: FramePadding) -> torch.Tensor:
    """``x`` ``[B, C, T, H, W]`` with ``before`` frames put before the first and ``after`` after the
    last: copies of the edge frames (``"replicate"``) or zeros (``"zeros"``)."""
    if before == after == 0:
        return x
    if frame_padding == "zeros":
        return F.pad(x, (0, 0, 0, 0, before, after))
    # Plain slices, not .expand(): cat writes its output in its inputs' common memory format, and an
    # expanded slice (stride 0 in time) counts as channels-first, which would turn every convolution
    # input of a channels-last network back to channels-first (one conversion per convolution).
    return torch.cat([x[:, :, :1]] * before + [x] + [x[:, :, -1:]] * after, dim=2)


def _triple(value: int | tuple[int, int, int]) -> tuple[int, int, int]:
    return (value, value, value) if isinstance(value, int) else tuple(value)  # type: ignore[return-value]


class CausalConv3d(nn.Conv3d, Streamable):
    """``nn.Conv3d`` whose temporal receptive field covers only the current and earlier frames.

    With temporal stride ``r`` and kernel ``k_t = r + 1`` (or any ``k_t`` with stride 1) a clip of
    ``1 + n·r`` frames gives ``1 + n`` frames, the first of them computed from frame 0 alone.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: ``k`` or ``(k_t, k_h, k_w)``; spatial sizes must be odd.
        stride: ``s`` or ``(s_t, s_h, s_w)``.
        frame_padding: what stands before the first frame: ``"replicate"`` or ``"zeros"``.
        causal: pad only the past (``False``: both sides, for non-causal decoders).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int, int] = 3,
        stride: int | tuple[int, int, int] = 1,
        frame_padding: FramePadding = "replicate",
        causal: bool = True,
    ) -> None:
        kt, kh, kw = _triple(kernel_size)
        if kh % 2 == 0 or kw % 2 == 0:
            raise ValueError(f"spatial kernel sizes must be odd, got {(kh, kw)}")
        super().__init__(in_channels, out_channels, (kt, kh, kw), stride=stride, padding=(0, kh // 2, kw // 2))
        self.time_padding = kt - 1
        self.frame_padding = frame_padding
        self.causal = causal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.causal:  # each chunk stands alone (overlapping chunks are blended by the caller)
            before = self.time_padding // 2
            padded = pad_time(x, before, self.time_padding - before, self.frame_padding)
            return super().forward(to_network_layout(padded))
        if self.later_chunk:
            x = torch.cat([self.stream.past[id(self)], x], dim=2)  # the previous chunk's tail
        else:
            x = pad_time(x, self.time_padding, 0, self.frame_padding)
        if self.stream is not None:  # keep the input frames that the next outputs will still read
            consumed = ((x.shape[2] - self.kernel_size[0]) // self.stride[0] + 1) * self.stride[0]
            self.stream.past[id(self)] = x[:, :, consumed:].clone()
        # the layout the device's convolution reads natively (vtok/vae/layout.py): a no-op on CUDA,
        # where the padding already wrote it; on a CPU it keeps channels-last views (the norms') out
        return super().forward(to_network_layout(x))
