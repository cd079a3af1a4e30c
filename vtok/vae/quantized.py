"""A discrete quantizer placed between encoder and decoder, with 1x1x1 projections where widths differ."""

from __future__ import annotations

import torch
from torch import nn

from vtok.tokenizers import DiscreteQuantizer
from vtok.vae.bottleneck import BottleneckOutput


class QuantizedBottleneck(nn.Module):
    """Projects the encoder's ``latent_channels`` to the quantizer's width, quantizes, and projects
    the codes back for the decoder. Codes (what ``encode`` returns, what ``detokenize`` rebuilds
    exactly from indices) live in the quantizer's space, between the two projections.

    Args:
        quantizer: an FSQ or GroupLFQ module.
        latent_channels: channels of the encoder's output and of the decoder's input.
    """

    def __init__(self, quantizer: DiscreteQuantizer, latent_channels: int) -> None:
        super().__init__()
        self.quantizer = quantizer
        self.input_channels = self.output_channels = latent_channels
        self.code_channels = quantizer.channels
        same = latent_channels == quantizer.channels
        self.project_in = nn.Identity() if same else nn.Conv3d(latent_channels, quantizer.channels, 1)
        self.project_out = nn.Identity() if same else nn.Conv3d(quantizer.channels, latent_channels, 1)

    def forward(self, h: torch.Tensor, sample: bool = True) -> BottleneckOutput:
        out = self.quantizer(self.project_in(h))
        return BottleneckOutput(latents=out.codes, indices=out.indices, losses=out.losses, stats=out.stats)

    def encode(self, h: torch.Tensor) -> torch.Tensor:
        return self.quantizer(self.project_in(h)).codes

    def to_decoder(self, codes: torch.Tensor) -> torch.Tensor:
        return self.project_out(codes)
