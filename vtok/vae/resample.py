"""Causal down- and up-sampling in space and time, with optional parameter-free shortcuts.

Down: a causal 3x3x3 convolution with stride 2 in the resampled axes. A clip of ``1 + 2n`` frames
becomes ``1 + n``; the first output frame sees frame 0 only.
Up: nearest-neighbour repetition (each latent frame after the first becomes two frames; the
first stays one), then a causal 3x3x3 convolution.

The shortcuts follow DC-AE's residual autoencoding (arXiv 2410.10733): space/time-to-depth then a
channel average on the way down, and channel repetition then depth-to-space on the way up, so
the learned convolution only has to model a residual. ``benchmarks/design_choices.py``
measures them against plain resampling.

Every rearrangement works on the channels-last view ``x.movedim(1, -1)`` (``[B, T, H, W, C]``) and
returns the network's layout (``vtok/vae/layout.py``): on CUDA channels-last-3d, as written, which
cuDNN's convolutions read without a conversion (``F.interpolate``'s CUDA kernel is channels-first only).
"""

from __future__ import annotations

import torch
from einops import rearrange, reduce, repeat
from torch import nn

from vtok.vae.causal_conv import CausalConv3d, FramePadding, pad_time
from vtok.vae.layout import to_network_layout
from vtok.vae.streaming import Streamable


class _Resample3d(nn.Module, Streamable):
    """What down- and upsampling share: the factors, and the channel grouping of the shortcut.

    The down shortcut averages groups of the ``in·r`` space/time-to-depth channels into ``out``;
    the up shortcut repeats each of the ``in`` channels into ``out·r`` before depth-to-space.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        space: resample height and width by 2.
        time: resample the frames after the first by 2.
        shortcut: add the parameter-free shortcut.
        frame_padding: padding before the first frame.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        space: bool,
        time: bool,
        shortcut: bool = True,
        frame_padding: FramePadding = "replicate",
    ) -> None:
        super().__init__()
        self.rt, self.rs = (2 if time else 1), (2 if space else 1)
        self.frame_padding = frame_padding
        factor = self.rt * self.rs * self.rs
        down = isinstance(self, Downsample3d)
        depth, narrow = (in_channels * factor, out_channels) if down else (out_channels * factor, in_channels)
        if shortcut and depth % narrow:
            raise ValueError(
                f"the resampling shortcut needs {depth} (channels x {factor}) divisible by {narrow}; "
                "change block_out_channels or set resample_shortcut=false"
            )
        self.shortcut_group = depth // narrow if shortcut else 0


class Downsample3d(_Resample3d):
    """Halves height and width (``space``) and/or the frames after the first (``time``):
    ``1 + 2n`` frames become ``1 + n``. Arguments as in :class:`_Resample3d`."""

    def __init__(self, in_channels: int, out_channels: int, *args, **kwargs) -> None:
        super().__init__(in_channels, out_channels, *args, **kwargs)
        stride = (self.rt, self.rs, self.rs)
        self.conv = CausalConv3d(in_channels, out_channels, 3, stride=stride, frame_padding=self.frame_padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        if self.shortcut_group:
            s = x if self.later_chunk else pad_time(x, self.rt - 1, 0, self.frame_padding)
            factors = dict(rt=self.rt, rh=self.rs, rw=self.rs)
            s = rearrange(s.movedim(1, -1), "b (t rt) (h rh) (w rw) c -> b t h w (c rt rh rw)", **factors)
            s = reduce(s, "b t h w (c g) -> b t h w c", "mean", g=self.shortcut_group)
            h = h + to_network_layout(s.movedim(-1, 1))
        return h


class Upsample3d(_Resample3d):
    """Doubles height and width (``space``) and/or the frames after the first (``time``):
    ``1 + n`` frames become ``1 + 2n``. Arguments as in :class:`_Resample3d`, and ``causal``: a causal
    convolution (``False``: time padded on both sides, for non-causal decoders)."""

    def __init__(self, in_channels: int, out_channels: int, *args, causal: bool = True, **kwargs) -> None:
        super().__init__(in_channels, out_channels, *args, **kwargs)
        self.conv = CausalConv3d(in_channels, out_channels, 3, frame_padding=self.frame_padding, causal=causal)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        drop = 0 if self.later_chunk else self.rt - 1  # the first latent frame expands to one frame, not rt
        factors = dict(rt=self.rt, rh=self.rs, rw=self.rs)
        x = x.movedim(1, -1)
        up = repeat(x, "b t h w c -> b (t rt) (h rh) (w rw) c", **factors)  # nearest-neighbour
        # the layout before slicing: the whole tensor is already in it on CUDA, and a slice is not
        h = self.conv(to_network_layout(up.movedim(-1, 1))[:, :, drop:])
        if self.shortcut_group:
            s = repeat(x, "b t h w c -> b t h w (c g)", g=self.shortcut_group)
            s = rearrange(s, "b t h w (c rt rh rw) -> b (t rt) (h rh) (w rw) c", **factors)
            h = h + to_network_layout(s.movedim(-1, 1))[:, :, drop:]
        return h
