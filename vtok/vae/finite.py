"""Saying whose fault NaN or inf is: the video's pixels, the model's weights, or an overflow inside it."""

from __future__ import annotations

import torch
from torch import nn


class NonFiniteLatents(ValueError):
    """``tokenize`` met NaN or inf in the encoder's output, which no token can hold.

    Args:
        message: what happened and whose fault it is.
        clips: the batch indices of the videos whose latents are not finite.
    """

    def __init__(self, message: str, clips: list[int]) -> None:
        super().__init__(message)
        self.clips = clips


def model_fault(model: nn.Module) -> str:
    """Why ``model`` gave NaN or inf for finite input: the weights that are not finite (a diverged
    training run), or, when all are, an activation that overflowed."""
    weights = model.state_dict().items()
    bad = [name for name, tensor in weights if tensor.is_floating_point() and not bool(tensor.isfinite().all())]
    if not bad:
        return "its weights are finite, so an activation overflowed inside it"
    more = f" and {len(bad) - 1} more tensors" if len(bad) > 1 else ""
    return f"its weights are NaN/inf ({bad[0]}{more}; diverged training?)"


def non_finite_clips(values: torch.Tensor) -> list[int]:
    """The batch indices of the items of ``values`` ``[B, ...]`` that hold NaN or inf (one host sync; none on the
    meta device, whose tensors hold no values: shapes only)."""
    if values.is_meta:
        return []
    bad = ~values.isfinite().flatten(1).all(1)
    return bad.nonzero().flatten().tolist() if bool(bad.any()) else []
