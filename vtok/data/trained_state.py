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

The saved state also says how the run was launched (ranks, loader workers). torchdata restores a
state only into as many workers as saved it; a state from another launch goes to the sampler alone,
which knows its place without the workers (see :meth:`TrainedStateLoader.load_state_dict`).

The loader also adds up the seconds its consumer spent blocked in its iterator's ``next()``
(``fetch_seconds``): the time a training step waited for data, which the training loop's loader-wait
monitor reads (host clock only).
"""

from __future__ import annotations

import copy
import logging
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

from torchdata.stateful_dataloader import StatefulDataLoader

from vtok.data.errors import ResumeMismatchError
from vtok.data.sampler import rank_and_world

LAUNCH_KEY = "vtok_launch"  # {"world": ranks, "workers": loader workers} of the run that saved the state
DATA_KEY = "vtok_data"  # {"files" or "shards": how many the dataset held} when the state was saved

log = logging.getLogger(__name__)


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
        self.fetch_seconds = 0.0  # host seconds spent in next() of this loader's iterators, ever

    def __iter__(self) -> Iterator[Any]:
        batches = self._timed(super().__iter__())
        return self._tracked(batches) if self.track_trained else batches

    def _timed(self, batches: Iterator[Any]) -> Iterator[Any]:
        """``batches``, adding the time each ``next()`` takes (a batch, or the end) to ``fetch_seconds``."""
        while True:
            start = time.perf_counter()
            try:
                batch = next(batches)
            except StopIteration:
                return
            finally:
                self.fetch_seconds += time.perf_counter() - start
            yield batch

    def _tracked(self, batches: Iterator[Any]) -> Iterator[Any]:
        # No copies here: torchdata builds a new state at each call and never changes an earlier one
        # (nor do vtok's sampler and stream); the one kept is copied when it is saved (state_dict).
        if not (self._exhausted and len(self._states) > 1):
            self._states = deque([self._current_state()])
        # Otherwise batches of the last pass, which ended, are still untrained (a loader beside a stream,
        # restarted in Lightning's read-ahead): they stay to be reported, and the state after the last of
        # them (that pass's end: a resumed loader goes on with the next pass) stands for this pass's start.
        # A pass left unfinished is dropped with the batches fetched from it: they are never trained.
        self._exhausted = False
        for batch in batches:
            self._states.append(self._current_state())
            yield batch
        self._exhausted = True

    def _current_state(self) -> dict[str, Any]:
        """torchdata's state of the loader now, with what a subclass adds to it (:meth:`_place`)."""
        return {**super().state_dict(), **self._place()}

    def _place(self) -> dict[str, Any]:
        """Entries a subclass keeps beside torchdata's state (taken back in its ``load_state_dict``)."""
        return {}

    def next_pass(self) -> int | None:
        """The epoch number the loader's next pass takes (``None``: its sampler does not number passes)."""
        return getattr(self.sampler, "next_pass", None)

    def start_passes_at(self, epoch: int) -> None:
        """Numbers the next pass ``epoch`` (see :meth:`vtok.data.sampler.EpochSampler.start_passes_at`)."""
        if hasattr(self.sampler, "start_passes_at"):
            self.sampler.start_passes_at(epoch)

    def batch_trained(self) -> None:
        """The oldest batch handed out and not yet reported has been trained."""
        if len(self._states) > 1:
            self._states.popleft()

    def _launch(self) -> dict[str, int]:
        return {"world": rank_and_world()[1], "workers": self.num_workers}

    def state_dict(self) -> dict[str, Any]:
        if not self.track_trained or not self._states or (self._exhausted and len(self._states) == 1):
            state = self._current_state()
        else:
            state = copy.deepcopy(self._states[0])
        size = self._data_size()
        return {**state, LAUNCH_KEY: self._launch(), **({DATA_KEY: size} if size else {})}

    def _data_size(self) -> dict[str, int]:
        """How many files (or shards) the dataset reads; empty for a dataset that lists neither."""
        for kind in ("shards", "files"):
            items = getattr(self.dataset, kind, None)
            if items is not None:
                return {kind: len(items)}
        return {}

    def _say_if_the_data_changed(self, saved: dict[str, int] | None) -> None:
        """Warns when the dataset holds another number of files (or shards) than when ``saved`` was."""
        now = self._data_size()
        if saved is None or not now or saved == now:
            return
        (kind, then), count = next(iter(saved.items())), next(iter(now.values()))
        log.warning(
            "the checkpoint's place in the training data was saved over %d %s, and the data now holds %d: the "
            "interrupted epoch goes on from that place in the new list, so some of its samples are trained twice "
            "and others not at all; the epochs after it read the new list whole",
            then, kind, count,
        )  # fmt: skip

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restores a saved place. One saved by another number of ranks or workers (which torchdata
        cannot restore) goes to the sampler alone: it resumes the epoch from its own state, and the
        loader starts afresh from there.

        Raises:
            ResumeMismatchError: the state is from another launch and the sampler cannot resume it.
        """
        state = dict(state_dict)
        self._say_if_the_data_changed(state.pop(DATA_KEY, None))
        saved = state.pop(LAUNCH_KEY, None)
        if saved is None or saved == self._launch():
            super().load_state_dict(state)
            return
        sampler_state = _sampler_state(state)
        if sampler_state is None or not hasattr(self.sampler, "load_state_dict"):
            raise ResumeMismatchError(self._mismatch(saved))
        self.sampler.load_state_dict(sampler_state)

    def _mismatch(self, saved: dict[str, int]) -> str:
        """Why a state from the launch ``saved`` cannot be restored here."""
        now = self._launch()
        return (
            f"the checkpoint's place in the training data was saved by {saved['world']} processes with "
            f"{saved['workers']} loader workers each, and this run has {now['world']} with {now['workers']}; "
            f"this loader cannot take it over. Resume with data.num_workers={saved['workers']} on {saved['world']} "
            "processes, or start a new run from the checkpoint's weights (--model.init_from <checkpoint>, without "
            "--ckpt_path)"
        )


def _sampler_state(state: dict[str, Any]) -> dict[str, Any] | None:
    """The sampler's state inside a torchdata loader state (saved with or without workers)."""
    main = state.get("_snapshot", {}).get("_main_snapshot", state)  # with workers, the main process's part
    batches = main.get("_sampler_iter_state") or {}  # the batch sampler's iterator: its sampler's state inside
    return batches.get("sampler_state")
