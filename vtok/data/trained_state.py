"""A loader whose saved state is the place of the batches trained, not of the batches fetched.

Lightning's training loop fetches one batch ahead of the step from a loader that has no length
(a WebDataset stream: it must know whether a batch is the last one), so when a checkpoint is
written after step n the loader has already handed out batch n + 1. Its state then marks that
batch as delivered, and a resumed run never trains it; for a shard stream it can also mark a whole
shard as finished. :class:`TrainedStateLoader` keeps the states of its last few batches and saves
the one of the last batch trained.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Iterator
from typing import Any

from torchdata.stateful_dataloader import StatefulDataLoader

LIGHTNING_FETCHES_AHEAD = 1  # batches Lightning's _PrefetchDataFetcher holds for a loader with no length


class TrainedStateLoader(StatefulDataLoader):
    """A :class:`StatefulDataLoader` whose ``state_dict`` is its state ``fetched_ahead`` batches back
    (the state at the end of an epoch once the loader is exhausted: then every batch was trained).

    Args:
        *args: see :class:`StatefulDataLoader`.
        fetched_ahead: batches the consumer holds before training them
            (:data:`LIGHTNING_FETCHES_AHEAD` under Lightning for a loader with no length).
        **kwargs: see :class:`StatefulDataLoader`.
    """

    def __init__(self, *args: Any, fetched_ahead: int = LIGHTNING_FETCHES_AHEAD, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fetched_ahead = fetched_ahead
        self._states: deque[dict[str, Any]] = deque(maxlen=fetched_ahead + 1)  # after the last batches
        self._exhausted = True

    def __iter__(self) -> Iterator[Any]:
        batches = super().__iter__()
        return self._tracked(batches) if self.fetched_ahead else batches

    def _tracked(self, batches: Iterator[Any]) -> Iterator[Any]:
        self._states.clear()
        self._exhausted = False
        self._states.append(copy.deepcopy(super().state_dict()))
        for batch in batches:
            self._states.append(copy.deepcopy(super().state_dict()))
            yield batch
        self._exhausted = True

    def state_dict(self) -> dict[str, Any]:
        if self._exhausted or not self._states:
            return super().state_dict()
        return copy.deepcopy(self._states[0])
