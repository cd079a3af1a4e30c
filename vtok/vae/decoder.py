"""Video decoder mirroring :class:`~vtok.vae.encoder.Encoder3d`: a middle, upsampling stages, a head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vtok.vae.backbone import BackboneSpec, run_stages
from vtok.vae.blocks import ResBlock3d
from vtok.vae.causal_conv import CausalConv3d
from vtok.vae.norm import ChannelRMSNorm
from vtok.vae.patchify import unpatchify
from vtok.vae.resample import Upsample3d


class Decoder3d(nn.Module):
    """Maps ``[B, in_channels, 1 + k, h, w]`` latents to ``[B, 3, 1 + k·t, h·s, w·s]`` video.

    Args:
        in_channels: latent channels.
        out_channels: video channels.
        spec: the encoder's widths, depth and resampling plan, undone in reverse.
    """

    def __init__(self, in_channels: int, out_channels: int, spec: BackboneSpec) -> None:
        super().__init__()
        self.patch_size = spec.patch_size
        self.gradient_checkpointing = False
        widths, padding = spec.widths, spec.frame_padding
        self.conv_in = CausalConv3d(in_channels, widths[-1], 3, frame_padding=padding)
        self.mid = nn.Sequential(*(ResBlock3d(widths[-1], widths[-1], padding) for _ in range(2)))
        self.stages = nn.ModuleList()
        for level in reversed(range(len(spec.plan))):
            space, time = spec.plan[level]
            blocks: list[nn.Module] = [
                Upsample3d(widths[level + 1], widths[level], space, time, spec.resample_shortcut, padding)
            ]
            blocks += [ResBlock3d(widths[level], widths[level], padding) for _ in range(spec.layers_per_block)]
            self.stages.append(nn.Sequential(*blocks))
        self.norm_out = ChannelRMSNorm(widths[0])
        self.conv_out = CausalConv3d(widths[0], out_channels * spec.patch_size**2, 3, frame_padding=padding)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        checkpoint = self._gradient_checkpointing_func if self.gradient_checkpointing else None
        h = run_stages([self.mid, *self.stages], self.conv_in(z), checkpoint)
        return unpatchify(self.conv_out(F.silu(self.norm_out(h))), self.patch_size)
