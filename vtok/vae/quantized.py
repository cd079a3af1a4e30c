"""A discrete quantizer between encoder and decoder, with 1x1x1 projections where widths differ,
and optionally extra tokens for the first latent frame (OneVAE's first-frame strengthening)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vtok.tokenizers import DiscreteQuantizer
from vtok.tokenizers.indices import check_index_tensor
from vtok.vae.bottleneck import BottleneckOutput
from vtok.vae.tokens import FirstFrameTokens


def _projection(channels_in: int, channels_out: int) -> nn.Module:
    return nn.Identity() if channels_in == channels_out else nn.Conv3d(channels_in, channels_out, 1)


class QuantizedBottleneck(nn.Module):
    """Projects the encoder's ``latent_channels`` to the quantizer's width, quantizes, and projects
    the codes back for the decoder. Codes (what ``encode`` returns, what ``detokenize`` rebuilds
    exactly from indices) live in the quantizer's space, between the two projections.

    With a ``first_frame`` quantizer, the first latent frame is also projected to it and
    quantized into extra tokens; their codes follow the regular ones on the channel axis (zeros in
    the other frames) and their projection back is added to the first frame's decoder input. That
    projection starts at zero (as adapters and zero convolutions do), so a model with extra tokens
    starts out computing exactly what the same weights compute without them, and the extra tokens
    only add what training finds the regular ones miss; started from a prior, it starts as the prior.

    Args:
        quantizer: an FSQ or GroupLFQ module.
        latent_channels: channels of the encoder's output and of the decoder's input.
        first_frame: the quantizer of the first frame's extra tokens, or ``None``.
    """

    def __init__(self, quantizer: DiscreteQuantizer, latent_channels: int, first_frame: DiscreteQuantizer | None = None) -> None:
        super().__init__()
        self.quantizer = quantizer
        self.first_frame = first_frame
        self.input_channels = self.output_channels = latent_channels
        self.regular_channels = quantizer.channels
        self.first_frame_channels = first_frame.channels if first_frame is not None else 0  # zeros in later frames
        self.code_channels = quantizer.channels + self.first_frame_channels
        self.project_in = _projection(latent_channels, quantizer.channels)
        self.project_out = _projection(quantizer.channels, latent_channels)
        if first_frame is not None:
            self.project_in_first = nn.Conv3d(latent_channels, first_frame.channels, 1)
            # no bias: the extra codes' zeros in later frames must add nothing
            self.project_out_first = nn.Conv3d(first_frame.channels, latent_channels, 1, bias=False)
            nn.init.zeros_(self.project_out_first.weight)

    def _with_first_frame(self, codes: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
        """Regular codes ``[B, Kd, T, ...]`` and first-frame extra codes ``[B, Ed, 1, ...]`` -> ``[B, Kd+Ed, T, ...]``."""
        return torch.cat([codes, F.pad(extra.to(codes.dtype), (0, 0, 0, 0, 0, codes.shape[2] - 1))], dim=1)

    def forward(
        self, h: torch.Tensor, sample: bool = True, pixel_values: int = 1, with_losses: bool = True
    ) -> BottleneckOutput:
        """Quantizes ``h`` (``sample`` and ``pixel_values`` are the Gaussian's: quantizing draws
        nothing, and the quantizers' losses are means already). ``with_losses=False`` (inference)
        skips the losses and statistics, which training and validation log."""
        out = self.quantizer(self.project_in(h), with_losses=with_losses)
        if self.first_frame is None:
            return BottleneckOutput(latents=out.codes, indices=out.indices, losses=out.losses, stats=out.stats)
        extra = self.first_frame(self.project_in_first(h[:, :, :1]), with_losses=with_losses)
        stats = {**out.stats, **{f"first_frame_{k}": v for k, v in extra.stats.items()}}
        return BottleneckOutput(
            latents=self._with_first_frame(out.codes, extra.codes),
            indices=out.indices,
            first_frame_indices=extra.indices,
            losses=out.losses,  # FSQ, the only quantizer with first-frame tokens, has no losses
            stats=stats,
        )

    def encode(self, h: torch.Tensor) -> torch.Tensor:
        """The codes of ``h`` (inference: no losses)."""
        return self.forward(h, with_losses=False).latents

    def tokenize(self, h: torch.Tensor) -> torch.Tensor | FirstFrameTokens:
        """The tokens of ``h`` (inference: no losses)."""
        out = self.forward(h, with_losses=False)
        return out.indices if self.first_frame is None else FirstFrameTokens(out.indices, out.first_frame_indices)

    def indices_to_codes(self, tokens: torch.Tensor | FirstFrameTokens) -> torch.Tensor:
        """The exact codes of ``tokens``; ``ValueError`` for out-of-range or missing extra tokens."""
        if self.first_frame is None:
            if isinstance(tokens, FirstFrameTokens):
                raise ValueError("this model has no first-frame tokens; pass the index tensor alone")
            return self.quantizer.indices_to_codes(tokens)
        if not isinstance(tokens, FirstFrameTokens):
            raise ValueError("this model strengthens the first frame: pass FirstFrameTokens(indices, first_frame_extra)")
        codes = self.quantizer.indices_to_codes(tokens.indices)  # checks the regular indices
        extra, count = tokens.first_frame_extra, self.first_frame.tokens_per_position
        expected = (tokens.indices.shape[0], count, 1, *tokens.indices.shape[3:])
        if tuple(extra.shape) != expected:  # cat would fail (or pad) with a raw error
            raise ValueError(
                f"first_frame_extra has shape {tuple(extra.shape)}, but indices of shape {tuple(tokens.indices.shape)} "
                f"need {list(expected)}: [B, {count}, 1, h, w] extra tokens for their first latent frame"
            )
        check_index_tensor(extra, count, self.first_frame.codebook_size, "first_frame_extra tokens", "1")
        return self._with_first_frame(codes, self.first_frame.indices_to_codes(extra))

    def to_decoder(self, codes: torch.Tensor) -> torch.Tensor:
        latent = self.project_out(codes[:, : self.regular_channels])
        if self.first_frame is None:
            return latent
        first = latent[:, :, :1] + self.project_out_first(codes[:, self.regular_channels :, :1])
        return torch.cat([first, latent[:, :, 1:]], dim=2)
