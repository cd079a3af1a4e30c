"""What the quantizers share about token indices: validation and batch usage statistics."""

from __future__ import annotations

import torch


def is_integer_dtype(dtype: torch.dtype) -> bool:
    """Whether ``dtype`` holds integers (indices), not floats, complex numbers or booleans."""
    return not (dtype.is_floating_point or dtype.is_complex or dtype == torch.bool)


def check_index_tensor(
    indices: torch.Tensor, tokens_per_position: int, codebook_size: int, name: str = "indices", frames: str = "T"
) -> None:
    """Raises ``ValueError`` unless ``indices`` is an integer ``[B, K, T, H, W]`` tensor in range.

    Args:
        indices: token indices to check.
        tokens_per_position: the expected ``K`` (size of dim 1).
        codebook_size: the vocabulary of one token; valid values are ``[0, codebook_size)``.
        name: what the messages call the tensor.
        frames: what they give as its frame count (``"1"`` for first-frame extras).
    """
    valid = f"int64 [B, {tokens_per_position}, {frames}, H, W] with values in [0, {codebook_size})"
    if not isinstance(indices, torch.Tensor):  # a numpy array failed on its dtype's missing torch attributes
        raise ValueError(f"{name} must be a torch tensor, got {type(indices).__name__}; expected {valid}")
    if not is_integer_dtype(indices.dtype):
        raise ValueError(f"{name} must be an integer tensor, got {indices.dtype}; expected {valid}")
    if indices.ndim != 5 or indices.shape[1] != tokens_per_position:
        raise ValueError(f"{name} have shape {tuple(indices.shape)}; expected {valid}")
    if indices.numel() == 0:
        return
    low, high = (int(bound) for bound in indices.long().aminmax())  # torch has no min/max for uint16/uint32
    if low < 0 or high >= codebook_size:
        raise ValueError(f"{name} range over [{low}, {high}], outside [0, {codebook_size}); expected {valid}")


def histogram_perplexity(counts: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """exp of the entropy of histograms of code counts along ``dim`` (zero counts allowed), float64.

    Args:
        counts: how often each code occurred.
        dim: the dimension that runs over codes (the others are separate histograms).
    """
    p = counts.to(torch.float64)
    p = p / p.sum(dim, keepdim=True).clamp_min(1)
    return torch.exp(-torch.special.xlogy(p, p).sum(dim))


def usage_stats(groups: torch.Tensor, vocab_size: int) -> dict[str, torch.Tensor]:
    """Batch perplexity and codebook usage of ``[N, S]`` indices, averaged over the ``S`` slots.

    Sorts each slot and counts the runs of equal codes, so memory follows the batch, never the
    vocabulary (a 2^18 or 2^62 vocabulary costs nothing extra), and every shape is known before
    the data is: nothing is read back to the host (``torch.unique`` would wait for the GPU at
    every forward pass), so the statistics cost the training step no synchronisation.

    Args:
        groups: integer indices ``[N, S]``, ``N`` positions and ``S`` token slots.
        vocab_size: the vocabulary of one slot.

    Returns:
        ``perplexity`` (exp of the entropy of the batch histogram) and ``batch_usage`` (fraction of
        the vocabulary seen), detached float32 scalars.
    """
    ordered = groups.detach().sort(dim=0).values
    starts = torch.ones_like(ordered, dtype=torch.bool)  # the first position of each run of one code
    starts[1:] = ordered[1:] != ordered[:-1]
    runs = starts.cumsum(0) - 1  # the run (distinct code) each sorted position belongs to
    counts = torch.zeros(ordered.shape, dtype=torch.float64, device=ordered.device)
    counts.scatter_add_(0, runs, torch.ones_like(counts))  # rows past the last run stay 0
    perplexity = histogram_perplexity(counts, dim=0)
    usage = starts.sum(0, dtype=torch.float64) / vocab_size
    return {"perplexity": perplexity.mean().float(), "batch_usage": usage.mean().float()}
