"""Causal video encoder: patchify, residual stages with strided downsampling, a middle, a head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vtok.vae.backbone import BackboneSpec, run_stages
from vtok.vae.blocks import ResBlock3d, Stage
from vtok.vae.causal_conv import CausalConv3d
from vtok.vae.norm import ChannelRMSNorm
from vtok.vae.patchify import patchify
from vtok.vae.resample import Downsample3d


class Encoder3d(nn.Module):
    """Maps ``[B, 3, 1 + k·t, H, W]`` to ``[B, out_channels, 1 + k, H/s, W/s]`` causally.

    Args:
        in_channels: video channels.
        out_channels: channels handed to the bottleneck.
        spec: widths, depth and resampling plan.
    """

    def __init__(self, in_channels: int, out_channels: int, spec: BackboneSpec) -> None:
        super().__init__()
        self.patch_size = spec.patch_size
        self.gradient_checkpointing = False
        widths, padding = spec.widths, spec.frame_padding
        self.conv_in = CausalConv3d(in_channels * spec.patch_size**2, widths[0], 3, frame_padding=padding)
        self.stages = nn.ModuleList()
        for level, (space, time) in enumerate(spec.plan):
            blocks = [ResBlock3d(widths[level], widths[level], padding) for _ in range(spec.layers_per_block)]
            blocks.append(Downsample3d(widths[level], widths[level + 1], space, time, spec.resample_shortcut, padding))
            self.stages.append(Stage(*blocks))
        self.mid = Stage(*(ResBlock3d(widths[-1], widths[-1], padding) for _ in range(2)))
        self.norm_out = ChannelRMSNorm(widths[-1])
        self.conv_out = CausalConv3d(widths[-1], out_channels, 3, frame_padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        checkpoint = self._gradient_checkpointing_func if self.gradient_checkpointing else None
        h = run_stages([*self.stages, self.mid], self.conv_in(patchify(x, self.patch_size)), checkpoint)
        return self.conv_out(F.silu(self.norm_out(h)))
