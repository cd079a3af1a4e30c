"""The residual block both halves of the network are made of: (RMSNorm, SiLU, causal 3x3x3 conv) x 2."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vtok.vae.causal_conv import CausalConv3d, FramePadding
from vtok.vae.norm import ChannelRMSNorm


class ResBlock3d(nn.Module):
    """Pre-activation residual block with a 1x1x1 projection on the shortcut when widths differ.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        frame_padding: padding before the first frame for both convolutions.
    """

    def __init__(self, in_channels: int, out_channels: int, frame_padding: FramePadding = "replicate") -> None:
        super().__init__()
        self.norm1 = ChannelRMSNorm(in_channels)
        self.conv1 = CausalConv3d(in_channels, out_channels, 3, frame_padding=frame_padding)
        self.norm2 = ChannelRMSNorm(out_channels)
        self.conv2 = CausalConv3d(out_channels, out_channels, 3, frame_padding=frame_padding)
        self.shortcut = nn.Conv3d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.shortcut(x) + h
