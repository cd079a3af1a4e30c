"""Channel widths per resolution level, from the config's ``block_out_channels``."""

from __future__ import annotations

from collections.abc import Sequence


def level_widths(block_out_channels: Sequence[int], levels: int) -> list[int]:
    """Widths for ``levels`` resolution levels (full resolution first).

    A shorter list is extended with its last width, so one config serves several compressions;
    a longer one is an error, since the extra widths would be silently unused.
    """
    widths = [int(c) for c in block_out_channels]
    if not widths or any(c < 1 for c in widths):
        raise ValueError(f"block_out_channels must be positive widths, got {list(block_out_channels)}")
    if len(widths) > levels:
        raise ValueError(
            f"block_out_channels has {len(widths)} widths but this compression has {levels} resolution "
            f"levels; give at most {levels}: {widths[:levels]}"
        )
    return widths + [widths[-1]] * (levels - len(widths))
