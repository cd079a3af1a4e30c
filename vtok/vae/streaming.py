"""Causal processing of long videos in fixed temporal chunks, with a cache carried between chunks.

Inside :func:`streaming`, every causal layer remembers the frames of its input that its next
outputs still need (``kernel - stride`` frames for a convolution) and reads them in place of the
first-frame padding on the next chunk; resampling layers pad or drop the first frame only in the
first chunk. Channel-wise normalisation is per position. Together, the chunks' outputs equal one
pass over the whole video (to float rounding), while activation memory depends on the chunk size
alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn


class StreamState:
    """What the causal layers of one network carry from one temporal chunk to the next."""

    def __init__(self) -> None:
        self.first = True
        self.past: dict[int, torch.Tensor] = {}


class Streamable:
    """Mixin for layers that behave differently after the first chunk; ``stream`` is set by :func:`streaming`."""

    stream: StreamState | None = None

    @property
    def later_chunk(self) -> bool:
        return self.stream is not None and not self.stream.first


@contextmanager
def streaming(network: nn.Module) -> Iterator[StreamState]:
    """Puts every streamable layer of ``network`` on one shared :class:`StreamState`.

    Activation checkpointing is off meanwhile: backward would recompute a chunk after the state had
    moved on (as a later chunk without its cache, or as the first), giving other shapes or, silently,
    wrong gradients. A chunk's activations are bounded by the chunk size anyway.
    """
    state = StreamState()
    layers = [m for m in network.modules() if isinstance(m, Streamable)]
    checkpointed = [m for m in network.modules() if getattr(m, "gradient_checkpointing", False)]
    for layer in layers:
        layer.stream = state
    for module in checkpointed:
        module.gradient_checkpointing = False
    try:
        yield state
    finally:
        for layer in layers:
            layer.stream = None
        for module in checkpointed:
            module.gradient_checkpointing = True


def run_in_chunks(
    network: nn.Module, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, first: int, rest: int
) -> torch.Tensor:
    """``fn`` over temporal chunks of ``x`` (``first`` frames, then ``rest`` at a time), streamed
    through ``network``'s layers; the outputs concatenated along time."""
    if x.shape[2] <= first:
        return fn(x)
    outputs = []
    with streaming(network) as state:
        for start, stop in [(0, first), *((s, s + rest) for s in range(first, x.shape[2], rest))]:
            outputs.append(fn(x[:, :, start:stop]))
            state.first = False
    return torch.cat(outputs, dim=2)


def latent_to_frame(index: int, temporal: int) -> int:
    """First video frame decoded from latent frame ``index`` (latent 0 is frame 0 alone)."""
    return 0 if index == 0 else (index - 1) * temporal + 1


def run_in_overlapping_chunks(
    network: nn.Module,
    fn: Callable[[torch.Tensor], torch.Tensor],
    z: torch.Tensor,
    chunk: int,
    overlap: int,
    temporal: int,
) -> torch.Tensor:
    """``fn`` (a non-causal decoder) over temporal chunks of latents ``z``, each decoded with
    ``overlap`` latent frames of context on both sides and cross-faded with its neighbours.

    Chunk ``[a, b)`` is decoded from ``[a - overlap, b + overlap)``; around each boundary the two
    chunks' outputs are blended with linear weights over ``ceil(overlap / 2)`` latent frames on
    either side, where both still have at least as much context left. When the context exceeds
    the decoder's receptive field the result equals one pass; below it, the cross-fade spreads the
    difference instead of leaving a seam. Latents no longer than one chunk with context on both sides
    (``1 + chunk + 2 * overlap`` frames: no more memory than a chunk's window) go in one pass.
    """
    frames = z.shape[2]
    if frames <= 1 + chunk + 2 * overlap:
        return fn(z)
    band = -(-overlap // 2)
    bounds = [0, *range(1 + chunk, frames, chunk), frames]
    out = total = None
    for a, b in zip(bounds[:-1], bounds[1:]):
        low, high = max(0, a - overlap), min(frames, b + overlap)
        with streaming(network) as state:
            state.first = low == 0  # a chunk after the first decodes its first latent into `temporal` frames
            y = fn(z[:, :, low:high])
        if out is None:
            out = y.new_zeros(*y.shape[:2], (frames - 1) * temporal + 1, *y.shape[3:])
            total = y.new_zeros(out.shape[2])
        start = latent_to_frame(low, temporal)
        index = torch.arange(start, start + y.shape[2], device=y.device, dtype=y.dtype)
        weight = torch.ones_like(index)
        if a > 0:  # rise across the band around the left boundary
            left, right = latent_to_frame(max(a - band, 1), temporal), latent_to_frame(a + band, temporal)
            weight = weight * ((index - left + 0.5) / max(right - left, 1)).clamp(0, 1)
        if b < frames:  # fall across the band around the right boundary
            left, right = latent_to_frame(max(b - band, 1), temporal), latent_to_frame(b + band, temporal)
            weight = weight * (1 - (index - left + 0.5) / max(right - left, 1)).clamp(0, 1)
        out[:, :, start : start + y.shape[2]] += y * weight[:, None, None]
        total[start : start + y.shape[2]] += weight
    return out / total[:, None, None]
