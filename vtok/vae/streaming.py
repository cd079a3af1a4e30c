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
    """Puts every streamable layer of ``network`` on one shared :class:`StreamState`."""
    state = StreamState()
    layers = [m for m in network.modules() if isinstance(m, Streamable)]
    for layer in layers:
        layer.stream = state
    try:
        yield state
    finally:
        for layer in layers:
            layer.stream = None


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
