"""Video decoder mirroring :class:`~vtok.vae.encoder.Encoder3d`: a middle, upsampling stages, a head.

Options for very high compression, where a deterministic decoder blurs:
- ``causal=False``: time padded on both sides (LTX-Video's decoder sees a little of the future);
- ``timestep_conditioning``: the denoising decoder of LTX-Video (2501.00103), told the noise level
  ``t`` of its latent through a per-channel scale and shift in every residual block;
- ``noise_channels``: WeTok's generative decoder (2508.05599), which reads Gaussian noise beside
  the latent and so can model several plausible videos for the same tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vtok.vae.backbone import BackboneSpec, run_stages
from vtok.vae.blocks import ResBlock3d, Stage
from vtok.vae.causal_conv import CausalConv3d
from vtok.vae.norm import ChannelRMSNorm
from vtok.vae.patchify import unpatchify
from vtok.vae.resample import Upsample3d
from vtok.vae.timestep import TimestepEmbedding


class Decoder3d(nn.Module):
    """Maps ``[B, in_channels, 1 + k, h, w]`` latents to ``[B, 3, 1 + k·t, h·s, w·s]`` video.

    Args:
        in_channels: latent channels.
        out_channels: video channels.
        spec: the encoder's widths, depth and resampling plan, undone in reverse.
        causal: causal convolutions (``False``: time padded on both sides).
        timestep_conditioning: condition every residual block on a noise level ``t``.
        noise_channels: channels of Gaussian noise read beside the latent (0: none).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        spec: BackboneSpec,
        causal: bool = True,
        timestep_conditioning: bool = False,
        noise_channels: int = 0,
    ) -> None:
        super().__init__()
        self.patch_size = spec.patch_size
        self.noise_channels = noise_channels
        self.gradient_checkpointing = False
        widths, padding = spec.widths, spec.frame_padding
        embedding = 4 * widths[0] if timestep_conditioning else 0
        self.time_embedding = TimestepEmbedding(embedding) if timestep_conditioning else None
        block = lambda i, o: ResBlock3d(i, o, padding, causal, embedding)  # noqa: E731
        self.conv_in = CausalConv3d(in_channels + noise_channels, widths[-1], 3, frame_padding=padding, causal=causal)
        self.mid = Stage(*(block(widths[-1], widths[-1]) for _ in range(2)))
        self.stages = nn.ModuleList()
        for level in reversed(range(len(spec.plan))):
            space, time = spec.plan[level]
            upsample = Upsample3d(widths[level + 1], widths[level], space, time, spec.resample_shortcut, padding, causal=causal)
            self.stages.append(Stage(upsample, *(block(widths[level], widths[level]) for _ in range(spec.layers_per_block))))
        self.norm_out = ChannelRMSNorm(widths[0])
        self.conv_out = CausalConv3d(widths[0], out_channels * spec.patch_size**2, 3, frame_padding=padding, causal=causal)

    def forward(self, z: torch.Tensor, timestep: torch.Tensor | None = None) -> torch.Tensor:
        """Decodes ``z`` (noise channels, when the decoder has them, already concatenated); ``timestep``
        ``[B]`` is the latent's noise level for a conditioned decoder (``None``: 0)."""
        embedding = None
        if self.time_embedding is not None:
            t = timestep if timestep is not None else z.new_zeros(z.shape[0])
            embedding = self.time_embedding(t)
        checkpoint = self._gradient_checkpointing_func if self.gradient_checkpointing else None
        h = run_stages([self.mid, *self.stages], self.conv_in(z), checkpoint, embedding)
        return unpatchify(self.conv_out(F.silu(self.norm_out(h))), self.patch_size)
