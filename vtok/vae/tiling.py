"""Spatial tiling with linear blending, for frames larger than a model was trained on.

The frame is cut into overlapping square tiles, each tile goes through the network on its own,
and the outputs are blended with weights that ramp linearly across the overlaps, which hides
the seams that plain tiling leaves. Tiles see less context at their borders than one pass would,
so results differ slightly from the untiled pass; tiling is off unless asked for.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def tile_starts(size: int, tile: int, step: int) -> list[int]:
    """Start offsets of tiles of ``tile`` covering ``[0, size)`` every ``step``, the last flush with the end."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile + 1, step))
    if starts[-1] + tile < size:
        starts.append(size - tile)
    return starts


def _ramp(length: int, overlap: int, fade_in: bool, fade_out: bool, device: torch.device) -> torch.Tensor:
    weight = torch.ones(length, device=device)
    ramp = torch.linspace(0, 1, overlap + 2, device=device)[1:-1]  # strictly inside (0, 1)
    if fade_in and overlap:
        weight[:overlap] = ramp
    if fade_out and overlap:
        weight[-overlap:] = ramp.flip(0)
    return weight


def tiled_map(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tile: int, overlap: int, scale: float
) -> torch.Tensor:
    """``fn`` applied to overlapping spatial tiles of ``x`` ``[B, C, T, H, W]``, blended.

    Args:
        fn: maps a tile ``[B, C, T, tile, tile]`` to ``[B, C', T', tile·scale, tile·scale]``.
        x: the input.
        tile: tile side in input pixels (or latent positions).
        overlap: overlap of neighbouring tiles, in input units.
        scale: output size per input unit (``1/s`` for an encoder, ``s`` for a decoder).
    """
    height, width = x.shape[-2:]
    if height <= tile and width <= tile:
        return fn(x)
    rows, cols = tile_starts(height, tile, tile - overlap), tile_starts(width, tile, tile - overlap)
    out = weights = None
    ramp = round(overlap * scale)
    for top in rows:
        for left in cols:
            y = fn(x[..., top : top + tile, left : left + tile])
            if out is None:
                out = y.new_zeros(*y.shape[:3], round(height * scale), round(width * scale))
                weights = y.new_zeros(round(height * scale), round(width * scale))
            h, w = y.shape[-2:]
            weight = torch.outer(
                _ramp(h, ramp, top > 0, top + tile < height, y.device),
                _ramp(w, ramp, left > 0, left + tile < width, y.device),
            )
            oy, ox = round(top * scale), round(left * scale)
            out[..., oy : oy + h, ox : ox + w] += y * weight
            weights[oy : oy + h, ox : ox + w] += weight
    return out / weights
