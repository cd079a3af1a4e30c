"""Token indices of a model with first-frame strengthening (OneVAE): the regular tensor plus extras."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class FirstFrameTokens:
    """What ``tokenize`` returns when ``first_frame_tokens > 0``.

    Every latent frame, the first included, has the regular ``K`` tokens per position in
    ``indices`` (``[B, K, t', h', w']``, exactly as without strengthening); the first latent frame,
    which carries a whole image in a causal model, has ``first_frame_extra`` more tokens per
    position beside them (``[B, K_extra, 1, h', w']``) from a quantizer of its own. ``detokenize``
    takes this object back.

    Args:
        indices: the regular tokens of every latent frame.
        first_frame_extra: the extra tokens of the first latent frame.
    """

    indices: torch.Tensor
    first_frame_extra: torch.Tensor


def map_tokens(tokens: torch.Tensor | FirstFrameTokens, function: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor | FirstFrameTokens:
    """``function`` applied to a plain index tensor, or to both tensors of :class:`FirstFrameTokens`
    (e.g. ``lambda t: t[0]`` takes one clip, ``lambda t: t[None]`` makes a batch of one, or ``.to(device)``)."""
    if isinstance(tokens, FirstFrameTokens):
        return FirstFrameTokens(function(tokens.indices), function(tokens.first_frame_extra))
    return function(tokens)


def regular_indices(tokens: torch.Tensor | FirstFrameTokens) -> torch.Tensor:
    """The regular ``[.., K, t', h', w']`` index tensor, with or without first-frame extras."""
    return tokens.indices if isinstance(tokens, FirstFrameTokens) else tokens
