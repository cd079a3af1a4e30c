"""The offline commands' clips read ahead in loader workers, in order, unusable files included.

``vtok evaluate`` and ``vtok tokenize`` once decoded each video in the main process between two
forward passes, so a GPU waited on the decoder for every video. Here worker processes decode the
next videos while the model runs; the order, the clips and the skipped files are the same as when
reading one by one (``workers=0`` does exactly that, in this process).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from vtok.data.dataset import ClipInfo, VideoClipDataset
from vtok.data.errors import UnusableFileError
from vtok.data.fork_server import fork_server_context
from vtok.data.worker_signals import kill_loader_workers_at_exit, loader_worker_init

log = logging.getLogger(__name__)


class _Loads(Dataset):
    """Item ``i``: ``(index, clip, info, None)`` for the ``i``-th file of ``indices``, or
    ``(index, None, None, {"path", "reason"})`` when that file is unusable."""

    def __init__(self, dataset: VideoClipDataset, indices: Sequence[int]) -> None:
        self.dataset, self.indices = dataset, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> tuple[int, torch.Tensor | None, ClipInfo | None, dict[str, str] | None]:
        index = self.indices[position]
        try:
            video, info = self.dataset.load_with_info(index)
        except UnusableFileError as error:
            return index, None, None, {"path": error.path, "reason": error.reason}
        return index, video, info, None


def _one(item: Any) -> Any:
    return item  # no collation: one file per item


def read_ahead(
    dataset: VideoClipDataset, indices: Sequence[int] | None = None, workers: int = 0
) -> Iterator[tuple[int, torch.Tensor | None, ClipInfo | None, dict[str, str] | None]]:
    """The clips of ``dataset``'s files ``indices`` (default: all), in that order, each as
    ``(index, clip, info, skip)``: ``skip`` is ``{"path", "reason"}`` (and clip and info ``None``)
    for an unusable file, which is also logged as a warning.

    Args:
        dataset: centre clips or whole videos (``load_with_info`` of each file).
        indices: which files, in the order wanted.
        workers: processes decoding ahead (0: each file read here when its turn comes).
    """
    items = _Loads(dataset, range(len(dataset)) if indices is None else indices)
    loaded: Iterable[tuple[int, torch.Tensor | None, ClipInfo | None, dict[str, str] | None]]
    if workers == 0:
        loaded = (items[i] for i in range(len(items)))
    else:
        kill_loader_workers_at_exit()  # the workers ignore SIGTERM: see vtok.data.worker_signals
        loaded = DataLoader(
            items,
            batch_size=None,
            collate_fn=_one,
            num_workers=workers,
            prefetch_factor=1,  # one video ahead per worker: whole long videos are large (the default held two)
            worker_init_fn=loader_worker_init(),
            multiprocessing_context=fork_server_context(),  # not a fork of this process: see vtok.data.fork_server
        )
    for item in loaded:
        if item[3] is not None:
            log.warning("skipping %s: %s", item[3]["path"], item[3]["reason"])
        yield item
