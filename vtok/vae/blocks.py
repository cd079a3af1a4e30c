"""The residual block both halves of the network are made of: (RMSNorm, SiLU, causal 3x3x3 conv) x 2,
and the stage container that hands a conditioning embedding to the blocks that take one."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vtok.vae.causal_conv import CausalConv3d, FramePadding
from vtok.vae.norm import ChannelRMSNorm
from vtok.vae.timestep import Modulation


class ResBlock3d(nn.Module):
    """Pre-activation residual block with a 1x1x1 projection on the shortcut when widths differ.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        frame_padding: padding before the first frame for both convolutions.
        causal: causal convolutions (``False`` pads time on both sides).
        embedding_channels: width of a conditioning embedding that scales and shifts the first
            normalised activation (0: unconditioned).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        frame_padding: FramePadding = "replicate",
        causal: bool = True,
        embedding_channels: int = 0,
    ) -> None:
        super().__init__()
        self.norm1 = ChannelRMSNorm(in_channels)
        self.modulation = Modulation(embedding_channels, in_channels) if embedding_channels else None
        self.conv1 = CausalConv3d(in_channels, out_channels, 3, frame_padding=frame_padding, causal=causal)
        self.norm2 = ChannelRMSNorm(out_channels)
        self.conv2 = CausalConv3d(out_channels, out_channels, 3, frame_padding=frame_padding, causal=causal)
        self.shortcut = nn.Conv3d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, embedding: torch.Tensor | None = None) -> torch.Tensor:
        h = self.norm1(x)
        if self.modulation is not None and embedding is not None:
            h = self.modulation(h, embedding)
        h = self.conv1(F.silu(h))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.shortcut(x) + h


class Stage(nn.Sequential):
    """A sequence of layers that passes a conditioning embedding to its residual blocks."""

    def forward(self, x: torch.Tensor, embedding: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self:
            x = layer(x, embedding) if isinstance(layer, ResBlock3d) else layer(x)
        return x
