"""What every quantizer in :mod:`vtok.tokenizers` shares: the token interface around its indices."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import nn

from vtok.tokenizers.indices import check_index_tensor, usage_stats


class DiscreteQuantizer(nn.Module, ABC):
    """Base of FSQ and GroupLFQ: a quantizer of latents ``[B, channels, T, H, W]`` into int64
    tokens ``[B, tokens_per_position, T, H, W]`` with values in ``[0, codebook_size)``.

    Subclasses set ``channels``, ``codebook_size`` and ``tokens_per_position`` and implement
    ``forward(z, with_losses=True)`` (``with_losses=False``, for inference, gives codes and indices
    alone, without the training and validation losses and statistics), ``indices_to_codes`` and
    ``token_groups``.
    """

    channels: int
    codebook_size: int
    tokens_per_position: int

    @property
    def bits_per_token(self) -> float:
        """``log2(codebook_size)``: the information one token carries at most."""
        return math.log2(self.codebook_size)

    def check_indices(self, indices: torch.Tensor) -> None:
        """Raises ``ValueError`` unless ``indices`` is integer ``[B, K, T, H, W]`` in ``[0, codebook_size)``.

        Args:
            indices: token indices to check.
        """
        check_index_tensor(indices, self.tokens_per_position, self.codebook_size)

    @abstractmethod
    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """The exact codes ``[B, channels, T, H, W]`` (float32) of integer ``indices``."""

    @abstractmethod
    def token_groups(self, indices: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Indices as ``[N, S]`` (N positions, S token slots) and the vocabulary of one slot."""

    def usage(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        """Batch ``perplexity`` and ``batch_usage`` of ``indices``, per slot of ``token_groups``, averaged.

        Args:
            indices: ``[B, K, T, H, W]`` as returned by the forward pass.
        """
        return usage_stats(*self.token_groups(indices))

    def _check_latents(self, z: torch.Tensor, detail: str = "") -> None:
        if z.ndim != 5 or z.shape[1] != self.channels:
            raise ValueError(
                f"{type(self).__name__} expects latents [B, {self.channels}, T, H, W]{detail}, got {tuple(z.shape)}"
            )
