"""Codebook usage and perplexity over a whole evaluation set, not one batch.

Counts are kept per token slot (per group for GQ) as the codes that occurred and how often, so
memory follows the codes seen, never the vocabulary (2^18 or 2^62 codes cost nothing extra).
"""

from __future__ import annotations

import torch

from vtok.tokenizers.indices import histogram_perplexity


class CodeCounter:
    """Histogram of token codes per slot, accumulated batch by batch.

    Args:
        vocab_size: the vocabulary of one slot (from the quantizer's ``token_groups``).
    """

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = vocab_size
        self._codes: list[torch.Tensor] = []  # per slot: sorted codes seen
        self._counts: list[torch.Tensor] = []  # per slot: their counts

    def update(self, groups: torch.Tensor) -> None:
        """Adds integer indices ``[N, S]`` (N positions, S slots), as ``token_groups`` returns them."""
        groups = groups.detach().cpu()
        if not self._codes:
            self._codes = [torch.empty(0, dtype=torch.int64) for _ in range(groups.shape[1])]
            self._counts = [torch.empty(0, dtype=torch.int64) for _ in range(groups.shape[1])]
        for slot, values in enumerate(groups.unbind(1)):
            codes, counts = torch.unique(values.long(), return_counts=True)
            merged, where = torch.unique(torch.cat([self._codes[slot], codes]), return_inverse=True)
            total = torch.zeros(merged.shape[0], dtype=torch.int64)
            total.index_add_(0, where, torch.cat([self._counts[slot], counts]))
            self._codes[slot], self._counts[slot] = merged, total

    def usage(self) -> float | None:
        """Fraction of the vocabulary seen at least once, per slot, averaged (``None`` before any update)."""
        if not self._codes:
            return None
        return sum(codes.numel() / self.vocab_size for codes in self._codes) / len(self._codes)

    def perplexity(self) -> float | None:
        """exp of the entropy of each slot's histogram over everything seen, averaged over slots."""
        if not self._counts:
            return None
        return sum(float(histogram_perplexity(counts)) for counts in self._counts) / len(self._counts)
