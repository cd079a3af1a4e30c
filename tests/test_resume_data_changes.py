"""A run resumed after its training data changed (an incremental `vtok prepare` added shards, files were added
or removed): the saved place points into the old list, and the resumed run says so."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vtok.data import ClipSpec, ShardClipDataset, VideoClipDataset
from vtok.data.datamodule import VideoDataModule
from vtok.data.sampler import EpochSampler
from vtok.data.sources import list_files
from vtok.data.shard_lists import expand_shards
from vtok.data.streaming import EpochLoader
from vtok.data.trained_state import TrainedStateLoader
from vtok.data.validation_files import VALIDATION_KEY


def _stopped_after_one_batch(loader: TrainedStateLoader) -> dict:
    batches = iter(loader)
    next(batches)
    loader.batch_trained()
    return loader.state_dict()


def test_a_stream_resumed_over_another_number_of_shards_warns(shard_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    shards = expand_shards(str(shard_dir / "shards"))

    def loader(chosen: list[str]) -> EpochLoader:
        return EpochLoader(ShardClipDataset(chosen, ClipSpec(5), (32, 32), seed=1), epoch=lambda: 0, batch_size=1)

    state = _stopped_after_one_batch(loader(shards[:3]))
    with caplog.at_level("WARNING", logger="vtok.data.trained_state"):
        loader(shards[:3]).load_state_dict(state)
        assert "place in the training data" not in caplog.text, "the same shards: nothing to say"
        loader(shards).load_state_dict(state)
    assert "saved over 3 shards, and the data now holds 4" in caplog.text


def test_files_resumed_after_some_were_added_warn(video_folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    files = list_files(video_folder)

    def loader(chosen: list[str]) -> TrainedStateLoader:
        dataset = VideoClipDataset(chosen, ClipSpec(5), size=(32, 32))
        return TrainedStateLoader(dataset, batch_size=1, sampler=EpochSampler(len(dataset)))

    state = _stopped_after_one_batch(loader(files[:6]))
    with caplog.at_level("WARNING", logger="vtok.data.trained_state"):
        loader(files).load_state_dict(state)
    assert "saved over 6 files, and the data now holds 8" in caplog.text


def test_a_resume_validating_on_other_files_warns(
    fsq_run: dict[str, Path], video_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Another data.seed, data.val_fraction or the split of an older vtok swapped the validation set with no word,
    and val/* curves jumped at the resume."""
    saved = torch.load(fsq_run["checkpoint"], weights_only=False)[VideoDataModule.__qualname__]
    assert saved[VALIDATION_KEY]["count"] >= 1, "Lightning saves the datamodule's state with the checkpoint"
    settings = {"path": str(video_folder), "num_frames": 3, "size": 32, "num_workers": 0, "val_fraction": 0.3}
    first = VideoDataModule(**settings)
    first.setup("fit")
    for seed, warned in ((0, False), (5, True)):
        caplog.clear()
        resumed = VideoDataModule(**settings, seed=seed)
        resumed.setup("fit")
        resumed.load_state_dict(first.state_dict())
        assert ("the validation files are not the checkpoint's" in caplog.text) == warned, seed
