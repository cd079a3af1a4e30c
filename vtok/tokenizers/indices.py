"""What the quantizers share about token indices: validation and batch usage statistics."""

from __future__ import annotations

import torch


def check_index_tensor(indices: torch.Tensor, tokens_per_position: int, codebook_size: int) -> None:
    """Raises ``ValueError`` unless ``indices`` is an integer ``[B, K, T, H, W]`` tensor in range.

    Args:
        indices: token indices to check.
        tokens_per_position: the expected ``K`` (size of dim 1).
        codebook_size: the vocabulary of one token; valid values are ``[0, codebook_size)``.
    """
    valid = f"int64 [B, {tokens_per_position}, T, H, W] with values in [0, {codebook_size})"
    if indices.dtype.is_floating_point or indices.dtype.is_complex or indices.dtype == torch.bool:
        raise ValueError(f"indices must be an integer tensor, got {indices.dtype}; expected {valid}")
    if indices.ndim != 5 or indices.shape[1] != tokens_per_position:
        raise ValueError(f"indices have shape {tuple(indices.shape)}; expected {valid}")
    if indices.numel() == 0:
        return
    low, high = int(indices.min()), int(indices.max())
    if low < 0 or high >= codebook_size:
        raise ValueError(f"indices range over [{low}, {high}], outside [0, {codebook_size}); expected {valid}")


def histogram_perplexity(counts: torch.Tensor) -> torch.Tensor:
    """exp of the entropy of a histogram of code counts (zero counts allowed), a float64 scalar.

    Args:
        counts: how often each code occurred.
    """
    p = counts.to(torch.float64)
    p = p[p > 0] / p.sum()
    return torch.exp(-(p * p.log()).sum())


def usage_stats(groups: torch.Tensor, vocab_size: int) -> dict[str, torch.Tensor]:
    """Batch perplexity and codebook usage of ``[N, S]`` indices, averaged over the ``S`` slots.

    Counts only the codes that occur (``torch.unique``), so memory follows the batch, never the
    vocabulary: a 2^18 or 2^62 vocabulary costs nothing extra.

    Args:
        groups: integer indices ``[N, S]``, ``N`` positions and ``S`` token slots.
        vocab_size: the vocabulary of one slot.

    Returns:
        ``perplexity`` (exp of the entropy of the batch histogram) and ``batch_usage`` (fraction of
        the vocabulary seen), detached float32 scalars.
    """
    groups = groups.detach()
    perplexities, usages = [], []
    for slot in groups.unbind(1):
        counts = torch.unique(slot, return_counts=True)[1]
        perplexities.append(histogram_perplexity(counts))
        usages.append(torch.tensor(counts.numel() / vocab_size, dtype=torch.float64, device=groups.device))
    return {
        "perplexity": torch.stack(perplexities).mean().float(),
        "batch_usage": torch.stack(usages).mean().float(),
    }
