"""A loader whose saved state is the place of the batches trained, not of the batches handed out.

Lightning's training loop may take batches from a loader before the step that trains them: it
reads one batch ahead of a loader that has no length (a WebDataset stream, unless
``limit_train_batches`` gives it one), to know whether a batch is the last. A checkpoint written
after step n then finds the loader one batch further on; its state marks that batch as delivered,
and a resumed run never trains it (for a shard stream it can also mark a whole shard as done). A
loader beside the stream (images) is read ahead the same way. Rather than guess how far ahead the
consumer reads, :class:`TrainedStateLoader` keeps its state after every batch handed out and is told
when a batch is trained (``batch_trained``, called by the data module as each training batch
reaches the device); it saves the state of the last batch trained.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Iterator
from typing import Any

from torchdata.stateful_dataloader import StatefulDataLoader


class TrainedStateLoader(StatefulDataLoader):
    """A :class:`StatefulDataLoader` whose ``state_dict`` is its state after the batches its consumer
    has reported trained with :meth:`batch_trained` (the usual state once the loader is exhausted and
    every batch was trained).

    Args:
        *args: see :class:`StatefulDataLoader`.
        track_trained: keep the states and follow :meth:`batch_trained`; without it (a consumer that
            never reports, such as a benchmark) the loader saves its state as handed out.
        **kwargs: see :class:`StatefulDataLoader`.
    """

    def __init__(self, *args: Any, track_trained: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.track_trained = track_trained
        # states after the last batch trained, then after each batch handed out since
        self._states: deque[dict[str, Any]] = deque()
        self._exhausted = True

    def __iter__(self) -> Iterator[Any]:
        batches = super().__iter__()
        return self._tracked(batches) if self.track_trained else batches

    def _tracked(self, batches: Iterator[Any]) -> Iterator[Any]:
        self._states = deque([copy.deepcopy(super().state_dict())])
        self._exhausted = False
        for batch in batches:
            self._states.append(copy.deepcopy(super().state_dict()))
            yield batch
        self._exhausted = True

    def batch_trained(self) -> None:
        """The oldest batch handed out and not yet reported has been trained."""
        if len(self._states) > 1:
            self._states.popleft()

    def state_dict(self) -> dict[str, Any]:
        if not self.track_trained or not self._states or (self._exhausted and len(self._states) == 1):
            return super().state_dict()
        return copy.deepcopy(self._states[0])
