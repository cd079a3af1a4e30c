"""Test-only work for :func:`vtok.data.scan_pool.run_with_deadlines`, in a module that imports nothing heavy: a pool's
workers import it to unpickle the function, and that import counts in the item's deadline."""

from __future__ import annotations

import time


def working_for(seconds: float) -> float:
    """``seconds`` of steps that each say they are still working, as re-encoding a long video does per frame."""
    from vtok.data.scan_pool import still_working  # loaded in the workers already (the pool's preload)

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.05)
        still_working()
    return seconds
