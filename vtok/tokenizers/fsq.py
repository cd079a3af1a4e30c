"""Finite scalar quantization (FSQ, 2309.15505) with OneVAE's multi-token quantization (2508.09857).

Each channel is bounded with a tanh to ``L_i`` levels and rounded with a straight-through
gradient; the token index is the mixed-radix number of the per-channel levels, so the codebook
(``prod(L_i)`` codes) stays implicit. ``K`` tokens per latent position quantize ``K`` blocks of
``d`` channels independently.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from einops import rearrange

from vtok.tokenizers.autocast import without_autocast
from vtok.tokenizers.base import DiscreteQuantizer
from vtok.tokenizers.output import QuantizerOutput

# The tanh bound spans (1 + eps) times the levels' half range, as vector-quantize-pytorch's FSQ does (the tests check
# that codes and indices equal that library's); the paper's own listing scales by (1 - eps). Either way the outer
# levels are reached by finite inputs.
BOUND_EPS = 1e-3
MAX_CODEBOOK_SIZE = 2**62
# A level of 2 is dead: the half-step shift of even levels puts its only boundary at z = -3.8.
MIN_LEVELS = 3


class FSQ(DiscreteQuantizer):
    """Finite scalar quantizer for latents ``[B, K*d, T, H, W]``; no projections inside.

    Channel ``i`` of a token takes ``L_i`` values on a grid scaled into ``[-1, 1]``: for odd
    ``L`` the grid is ``{-1, ..., 1}`` in steps of ``2/(L-1)``; for even ``L`` it is shifted by
    half a step (the standard implementation) and runs from ``-1`` to ``1 - 2/L`` in steps of
    ``2/L`` (``L = 4`` gives ``{-1, -0.5, 0, 0.5}``). Every ``L`` is at least 3: the half-step
    shift puts the only boundary of ``L = 2`` at ``z = -3.8``, so such a channel is dead (one
    level for practically every input). The index of a token is
    ``sum_i digit_i * prod_{j<i} L_j`` with ``digit_i`` in ``[0, L_i)``: the first channel is the
    least significant digit, as in vector-quantize-pytorch. Channels of token ``k`` are
    ``k*d ... k*d + d - 1``. Quantization runs in float32 with autocast disabled; the codes come
    back in the input's dtype.

    Args:
        levels: number of levels per channel, each at least 3, e.g. ``[8, 8, 8, 5, 5, 5]``.
        tokens_per_position: ``K``, independent tokens per latent position (OneVAE multi-token).
    """

    def __init__(self, levels: Sequence[int], tokens_per_position: int = 1) -> None:
        super().__init__()
        if any(float(level) % 1 for level in levels):  # int() would truncate 5.5 to 5 in silence (NaN: refused)
            raise ValueError(f"FSQ levels must be integers (8.0 is 8; range [3, inf)), got {list(levels)}")
        levels = [int(level) for level in levels]
        if not levels or min(levels) < MIN_LEVELS:
            raise ValueError(
                f"FSQ levels must be a non-empty list of integers >= 3 (range [3, inf)), got {levels}: an even level "
                "is shifted by half a step, so a level of 2 puts its only boundary at the tail of the bound "
                "(z = -3.8) and its channel takes one value for practically every input; use 3 or more"
            )
        if tokens_per_position < 1 or float(tokens_per_position) % 1:  # 2.5 would be 2 tokens, counted as 2.5
            raise ValueError(f"tokens_per_position must be an integer >= 1 (range [1, inf)), got {tokens_per_position}")
        if math.prod(levels) > MAX_CODEBOOK_SIZE:
            raise ValueError(f"FSQ codebook size prod({levels}) exceeds 2**62; the valid range is [3, 2**62]")
        self.levels = levels
        self.tokens_per_position = int(tokens_per_position)
        self.codebook_size = math.prod(levels)
        basis = [math.prod(levels[:i]) for i in range(len(levels))]
        # Integer buffers: model.to(dtype) leaves them alone, so the float32 constants derived
        # from them in forward are the same whatever dtype the model is cast to.
        self.register_buffer("_levels", torch.tensor(levels, dtype=torch.int64), persistent=False)
        self.register_buffer("_basis", torch.tensor(basis, dtype=torch.int64), persistent=False)

    @property
    def dim(self) -> int:
        """Channels per token: one per entry of ``levels``."""
        return len(self.levels)

    @property
    def channels(self) -> int:
        """Latent channels the quantizer takes: ``tokens_per_position`` tokens of ``dim`` channels."""
        return self.tokens_per_position * self.dim

    def extra_repr(self) -> str:
        return f"levels={self.levels}, tokens_per_position={self.tokens_per_position}"

    def _grid(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Levels and half widths as float32 ``[d, 1, 1, 1]``, to broadcast over ``[B, K, d, T, H, W]``."""
        levels = self._levels.float().view(-1, 1, 1, 1)
        return levels, (self._levels // 2).float().view(-1, 1, 1, 1)

    def _bound(self, x: torch.Tensor) -> torch.Tensor:
        """tanh bound into level units: rounds to ``{-(L//2), ..., (L-1)//2}`` (even L shifted by 1/2)."""
        levels, _ = self._grid()
        half_l = (levels - 1) * (1 + BOUND_EPS) / 2
        offset = torch.where(levels % 2 == 0, 0.5, 0.0)
        shift = torch.atanh(offset / half_l)
        return torch.tanh(x + shift) * half_l - offset

    def forward(self, z: torch.Tensor, with_losses: bool = True) -> QuantizerOutput:
        """Codes and indices of ``z``; FSQ has no losses, and ``with_losses=False`` (inference) also
        leaves out the batch statistics."""
        self._check_latents(z, f" (K={self.tokens_per_position} tokens x d={self.dim} channels)")
        with without_autocast(z.device.type):
            x = rearrange(z.float(), "b (k d) t h w -> b k d t h w", k=self.tokens_per_position)
            levels, half_width = self._grid()
            bounded = self._bound(x)
            # Clamped digits: no input (bf16, extreme values; NaN, as the middle digit) gives an out-of-range
            # index. A NaN latent still makes its codes NaN (the loss says so) and tokenize() refuses it.
            digits = torch.minimum((bounded.detach().nan_to_num(0.0).round() + half_width).clamp_min(0), levels - 1)
            # q + (s - s.detach()) keeps the value exactly q (what indices_to_codes returns)
            # while the gradient flows to z as through the bound.
            scaled = bounded / half_width
            codes = self._digits_to_codes(digits) + (scaled - scaled.detach())
            indices = (digits.long() * self._basis.view(-1, 1, 1, 1)).sum(2)
        codes = rearrange(codes, "b k d t h w -> b (k d) t h w").to(z.dtype)
        return QuantizerOutput(codes=codes, indices=indices, stats=self.usage(indices) if with_losses else {})

    def _digits_to_codes(self, digits: torch.Tensor) -> torch.Tensor:
        _, half_width = self._grid()
        return (digits - half_width) / half_width

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """The exact inverse of the quantizer's indices.

        Args:
            indices: integer ``[B, K, T, H, W]`` in ``[0, codebook_size)``.

        Returns:
            float32 codes ``[B, K*d, T, H, W]``, equal to the ``codes`` the forward pass gave.
        """
        self.check_indices(indices)
        digits = (indices.long().unsqueeze(2) // self._basis.view(-1, 1, 1, 1)) % self._levels.view(-1, 1, 1, 1)
        return rearrange(self._digits_to_codes(digits.float()), "b k d t h w -> b (k d) t h w")

    def token_groups(self, indices: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Indices as ``[N, S]`` (positions x token slots, ``S = K``) and the vocabulary of one slot.

        Args:
            indices: ``[B, K, T, H, W]`` as returned by the forward pass.
        """
        return rearrange(indices, "b k t h w -> (b t h w) k"), self.codebook_size
