"""Per-sample random generators seeded by (seed, epoch, sample index, ...).

Random choices drawn this way do not depend on which worker process draws them, on how many
workers there are, or on whether the run was resumed: worker processes hold no state that matters.
"""

from __future__ import annotations

import numpy as np
import torch


def mixed_seed(*keys: int) -> int:
    """A non-negative 63-bit seed mixed from the integer ``keys`` (nearby keys give unrelated seeds)."""
    state = np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in keys]).generate_state(2, dtype=np.uint64)
    return int(state[0] >> 1)


def sample_generator(*keys: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded from the integer ``keys`` (e.g. seed, epoch, index)."""
    return torch.Generator().manual_seed(mixed_seed(*keys))
