"""Long videos and large frames for ``VideoAutoencoder``: temporal chunks with a causal cache, and
optional spatial tiles blended over their overlaps."""

from __future__ import annotations

import math
import operator
import warnings

import torch
from torch import nn

from vtok.vae.causal_conv import CausalConv3d
from vtok.vae.resample import Upsample3d
from vtok.vae.streaming import run_in_chunks, run_in_overlapping_chunks
from vtok.vae.tiling import tiled_map


def temporal_reach(decoder: nn.Module) -> int:
    """Latent frames on either side that one output frame of a non-causal ``decoder`` depends on:
    each time-padded convolution adds half its kernel at the temporal resolution it runs at (finer
    after each temporal upsampling), and the nearest-neighbour upsampling up to one frame more."""
    reach, resolution = 0.0, 1
    for module in decoder.modules():  # in the order they run: each upsampling before its convolution
        if isinstance(module, Upsample3d):
            resolution *= module.rt
        elif isinstance(module, CausalConv3d) and not module.causal:
            reach += -(-module.time_padding // 2) / resolution
    return math.ceil(reach) + 1


def _frames_or_none(name: str, value: int | None, least: int, meaning: str) -> int | None:
    """``value`` (as an ``int``: numpy's integers too) if it is ``None`` or an integer ``>= least``, else ``ValueError``
    naming ``name``: 0 or 2.5 latent frames failed deep inside the chunking with torch's or Python's error."""
    if value is None:
        return None
    try:
        frames = operator.index(value) if not isinstance(value, bool) else None
    except TypeError:
        frames = None
    if frames is not None and frames >= least:
        return frames
    raise ValueError(f"{name} must be None or an integer >= {least} ({meaning}), got {value!r}")


class LongVideoMixin:
    """``encode``/``decode``/``tokenize`` of ``VideoAutoencoder`` run through these two methods.

    ``temporal_chunk`` latent frames go through the network at a time, with a causal cache carried
    between chunks, so the result equals one pass while activation memory depends on the chunk
    alone (``None``: one pass; diffusers backbones manage long clips themselves). A non-causal
    decoder decodes chunks with ``temporal_overlap`` latent frames of context on each side and
    cross-fades the overlaps; by default twice the decoder's reach (:func:`temporal_reach`), so
    that beyond the cross-fade each chunk sees all it depends on and the result equals one pass.
    Its effective chunk is ``max(temporal_chunk, 2 * overlap)``: a chunk of 4 between 2 x 22 frames
    of context (the ltx_8x32x32 preset's) decoded each latent frame twelve times over, a chunk of twice
    the overlap decodes at most twice the clip's frames; a clip of at most ``1 + chunk + 2 * overlap``
    latent frames, no more than one chunk's window, is decoded in one pass. Its activation memory
    follows that window.
    Tiling is off until :meth:`enable_tiling`.
    """

    tile: tuple[int, int] | None
    _temporal_chunk: int | None = None
    _temporal_overlap: int | None = None
    _backbone_chunks_itself: bool = False  # a diffusers backbone: its encode/decode have caches of their own

    @property
    def temporal_chunk(self) -> int | None:
        """Latent frames per chunk in encode/decode/tokenize (``None``: one pass)."""
        return self._temporal_chunk

    @temporal_chunk.setter
    def temporal_chunk(self, value: int | None) -> None:
        if value is not None and self._backbone_chunks_itself:  # chunks of its layers would each start afresh
            raise ValueError(
                "temporal_chunk: this model runs a diffusers backbone, which manages long clips with caches of its "
                "own (its layers carry no vtok cache between chunks: each chunk would start as a new clip); leave it None"
            )
        self._temporal_chunk = _frames_or_none("temporal_chunk", value, 1, "latent frames per chunk; None: one pass")

    @property
    def temporal_overlap(self) -> int | None:
        """Latent frames of context each side of a non-causal chunk (``None``: twice the reach, exact)."""
        return self._temporal_overlap

    @temporal_overlap.setter
    def temporal_overlap(self, value: int | None) -> None:
        self._temporal_overlap = _frames_or_none(
            "temporal_overlap", value, 0, "latent frames of context each side; None: twice the decoder's reach"
        )

    def enable_tiling(self, tile: int = 256, overlap: int = 64) -> None:
        """Encode and decode in overlapping ``tile`` x ``tile`` pixel tiles, blended over ``overlap``.

        Raises:
            ValueError: sizes that are not multiples of the spatial factor, or an overlap that
                leaves no stride.
        """
        s = self.compression.spatial
        try:  # an int (numpy's too), not 32.0, which passed the checks below and failed at the first encode
            tile, overlap = operator.index(tile), operator.index(overlap)
        except TypeError:
            raise ValueError(f"tile={tile!r} and overlap={overlap!r} must be integers (pixels)") from None
        if tile % s or overlap % s or not 0 <= overlap < tile:
            raise ValueError(f"tile={tile} and overlap={overlap} must be multiples of {s} with 0 <= overlap < tile")
        self.tile = (tile, overlap)

    def disable_tiling(self) -> None:
        """Encodes and decodes whole frames again (undoes :meth:`enable_tiling`)."""
        self.tile = None

    def _encode_features(self, video: torch.Tensor) -> torch.Tensor:
        """The encoder's output for a whole video: in temporal chunks, and tiles when enabled."""

        def chunked(x: torch.Tensor) -> torch.Tensor:
            if self.temporal_chunk is None:
                return self.encoder(x)
            span = self.temporal_chunk * self.compression.temporal
            self._warn_if_autograd_keeps_chunks(x.shape[2] > 1 + span)
            return run_in_chunks(self.encoder, self.encoder, x, 1 + span, span)

        if self.tile is None:
            return chunked(video)
        return tiled_map(chunked, video, *self.tile, scale=1 / self.compression.spatial)

    def _decode_features(self, features: torch.Tensor, timestep: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder's output for a whole latent video (decoder-input width): chunks, tiles."""
        decode = (lambda z: self.decoder(z)) if timestep is None else (lambda z: self.decoder(z, timestep))  # noqa: E731

        def chunked(z: torch.Tensor) -> torch.Tensor:
            chunk = self.temporal_chunk
            if chunk is None:
                return decode(z)
            if self.config.decoder_causal:
                self._warn_if_autograd_keeps_chunks(z.shape[2] > 1 + chunk)
                return run_in_chunks(self.decoder, decode, z, 1 + chunk, chunk)
            overlap = self.temporal_overlap if self.temporal_overlap is not None else 2 * temporal_reach(self.decoder)
            chunk = max(chunk, 2 * overlap)  # each chunk also decodes 2 * overlap frames of context
            self._warn_if_autograd_keeps_chunks(z.shape[2] > 1 + chunk + 2 * overlap)  # within one window: one pass
            return run_in_overlapping_chunks(self.decoder, decode, z, chunk, overlap, self.compression.temporal)

        if self.tile is None:
            return chunked(features)
        s = self.compression.spatial
        return tiled_map(chunked, features, self.tile[0] // s, self.tile[1] // s, scale=s)

    def _warn_if_autograd_keeps_chunks(self, several: bool) -> None:
        """Autograd keeps every chunk's activations (and caches) until the graph is freed: with gradients on,
        memory grows with the clip, as in one pass, and more (measured: +2.5 GB to encode 257 64x64 frames
        in chunks, +0.9 GB in one pass, +0.17 GB in chunks without gradients)."""
        if several and torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters()):
            warnings.warn(
                "encode/decode in temporal chunks with gradients on: autograd keeps every chunk's activations, so "
                "memory grows with the clip; call them under torch.inference_mode() (or torch.no_grad())",
                stacklevel=5,  # the caller of encode or decode (untiled)
            )
