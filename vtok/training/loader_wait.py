"""Whether the data loader keeps ahead of the training step, measured in every run.

The time the step waits for data is the time the training loop spends blocked in the training
loaders' ``next()``: when the loader keeps ahead, near zero; when decoding is the bottleneck, it is
where the time goes. vtok's loaders add that time up themselves (``fetch_seconds``, see
:class:`~vtok.data.trained_state.TrainedStateLoader`), so checkpoint saving and other callbacks'
work between two batches is not taken for a wait. For other loaders (a plain ``DataLoader``) the
monitor falls back to the whole gap between the end of one batch and the start of the next, which
also holds that work. The fraction of wall-clock time spent waiting, and the clips per second each
device trains on, are logged every window of batches, on the x axis of ``train/*`` (one training
batch). Host clocks suffice: the training step waits for the device once per step (its non-finite
check), so host time follows device time. Nothing here synchronises with the device. Validation
between batches is not counted: a window's clock stops while it runs, and the window goes on after it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

from vtok.data.batches import video_parts
from vtok.training.direct_logging import log_on_this_batch

log = logging.getLogger(__name__)


class LoaderWaitMonitor(Callback):
    """Logs ``perf/data_wait_fraction`` and ``perf/clips_per_s`` (rank 0's device) every window, and
    warns when the step waits for data for more than ``warn_fraction`` of a window.

    Args:
        window_batches: training batches per window (the first starts with the first batch: the
            wait before it, while the loader's workers start, is not counted).
        warn_fraction: wait fraction above which a window logs a warning (once per run).
    """

    def __init__(self, window_batches: int = 50, warn_fraction: float = 0.2) -> None:
        if window_batches < 1:
            raise ValueError(f"window_batches must be at least 1, got {window_batches}")
        self.window_batches = window_batches
        self.warn_fraction = warn_fraction
        self._last_end: float | None = None  # when the previous batch ended (None: no window running)
        self._paused_at: float | None = None  # when validation started inside a window
        self._marks: list[tuple[Any, float]] | None = None  # (loader, its fetch_seconds) at the window's start
        self._reset(0.0, None)  # each window starts at its first batch (on_train_batch_start)
        self._warned = False
        self.last_window: dict[str, float] = {}  # what the last complete window logged

    def _reset(self, start: float, trainer: Trainer | None) -> None:
        self._window_start, self._waited, self._clips, self._batches = start, 0.0, 0, 0
        loaders = _timed_loaders(trainer.train_dataloader) if trainer is not None else None
        self._marks = [(loader, loader.fetch_seconds) for loader in loaders] if loaders is not None else None

    def _fetch_wait(self, trainer: Trainer) -> float:
        """Seconds spent in the training loaders' ``next()`` since the window started (a loader made
        since, when the trainer reloads them, counts from 0)."""
        marks = {id(loader): mark for loader, mark in self._marks}
        loaders = {id(loader): loader for loader, _ in self._marks}
        loaders.update({id(loader): loader for loader in _timed_loaders(trainer.train_dataloader) or []})
        return sum(loader.fetch_seconds - marks.get(key, 0.0) for key, loader in loaders.items())

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        now = time.perf_counter()
        if self._last_end is None:  # the first batch: a new window
            self._reset(now, trainer)
        elif self._marks is None:  # loaders that do not time themselves: the whole gap counts
            self._waited += now - self._last_end

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        now = time.perf_counter()
        self._last_end = now
        self._clips += video_parts(batch)["videos"]["video"].shape[0]  # the clips, not a combined batch's images
        self._batches += 1
        if self._batches < self.window_batches:
            return
        elapsed = now - self._window_start
        waited = self._fetch_wait(trainer) if self._marks is not None else self._waited
        wait = waited / elapsed if elapsed > 0 else 0.0
        self.last_window = {"perf/data_wait_fraction": wait, "perf/clips_per_s": self._clips / elapsed}
        log_on_this_batch(trainer, self.last_window)  # windows need not match log_every_n_steps
        if wait > self.warn_fraction and not self._warned:
            self._warned = True
            log.warning(
                "the training step waited for data %.0f%% of the last %d batches: the loader is the bottleneck "
                "(raise data.num_workers, or re-encode the sources near the training size with "
                "`vtok prepare --reencode --short-side N`)",
                100 * wait, self._batches,
            )  # fmt: skip
        self._reset(now, trainer)

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # the window's clock stops: validation is neither training nor waiting for its data (starting a
        # new window here instead lost every window when validation came more often than window_batches)
        self._paused_at = time.perf_counter() if self._last_end is not None else None

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._paused_at is not None and self._last_end is not None:
            paused = time.perf_counter() - self._paused_at
            self._window_start += paused
            self._last_end += paused  # for loaders that do not time themselves, the gap across it is no wait
        self._paused_at = None


def _timed_loaders(loaders: Any) -> list[Any] | None:
    """The training loaders (one, or a dict or list of them), when each adds up its own fetch time
    (``fetch_seconds``, as vtok's do); ``None`` otherwise."""
    if isinstance(loaders, Mapping):
        found = list(loaders.values())
    else:
        found = list(loaders) if isinstance(loaders, (list, tuple)) else [loaders]
    return found if found and all(isinstance(getattr(x, "fetch_seconds", None), float) for x in found) else None
