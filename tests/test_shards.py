"""Shards streamed into training: the split over ranks and workers, quotas, resumption, and the
checks that keep an epoch from repeating or dropping samples (writing them: test_prepare.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import webdataset as wds
from torchvision.io import write_png

from tests.helpers import csv_logger, metric_column
from vtok.cli import main as vtok_main
from vtok.data import ClipSpec, ShardClipDataset
from vtok.data.datamodule import VideoDataModule
from vtok.data.fork_server import fork_server_context
from vtok.data.sampler import EpochSampler
from vtok.data.shard_split import check_quotas, sample_quotas, split_shards
from vtok.data.shard_lists import expand_shards, shard_counts
from vtok.data.streaming import EpochLoader
from vtok.data.trained_state import TrainedStateLoader

ROOT = Path(__file__).resolve().parents[1]


def test_the_split_gives_each_shard_to_exactly_one_rank_and_worker() -> None:
    shards = [f"shard-{i}.tar" for i in range(8)]
    owners = {}
    for epoch in (0, 1):
        owners[epoch] = {}
        for rank in range(2):
            for worker in range(2):
                for shard in split_shards(shards, rank, 2, worker, 2, epoch=epoch, seed=3):
                    owners[epoch].setdefault(shard, []).append((rank, worker))
        assert sorted(owners[epoch]) == sorted(shards)
        assert all(len(readers) == 1 for readers in owners[epoch].values())
        assert Counter(r for readers in owners[epoch].values() for r in readers) == {(r, w): 2 for r in range(2) for w in range(2)}
    assert owners[0] != owners[1], "the assignment changes every epoch"
    assert split_shards(shards, 1, 2, 0, 2, epoch=5, shuffle=False) == ["shard-1.tar", "shard-5.tar"]

    # five shards on two ranks: the order is padded to six, so one shard is read twice and each rank reads three
    reads = Counter(s for r in range(2) for w in range(2) for s in split_shards(shards[:5], r, 2, w, 2))
    assert set(reads) == set(shards[:5]) and sorted(reads.values()) == [1, 1, 1, 1, 2]
    assert [sum(len(split_shards(shards[:5], r, 2, w, 2)) for w in range(2)) for r in range(2)] == [3, 3]
    # uneven shard sizes: every rank still gives the same number of full batches
    quotas = sample_quotas([7, 7, 7, 7, 3], world=2, workers=2, batch_size=2)
    assert sum(quotas[0]) == sum(quotas[1]) > 0 and all(q % 2 == 0 for row in quotas for q in row)
    # no worker is asked for more than its own shards' full batches: it would read them twice (a mutation review's find)
    assert sample_quotas([2, 2, 6, 2, 6, 4], world=2, workers=3, batch_size=2, shuffle=False) == [[2, 4, 2], [2, 2, 4]]


def test_streamed_samples_reach_exactly_one_rank_and_worker(shard_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shards = expand_shards(str(shard_dir / "shards"))
    readers: dict[str, list[tuple[int, int]]] = {}
    for rank in range(2):
        for worker in range(2):
            # webdataset's pytorch_worker_info reads these before torch.distributed and the worker info
            for name, value in {"RANK": rank, "WORLD_SIZE": 2, "WORKER": worker, "NUM_WORKERS": 2}.items():
                monkeypatch.setenv(name, str(value))
            dataset = ShardClipDataset(shards, ClipSpec(5), (32, 32), seed=1, counts=shard_counts(shards), batch_size=2)
            dataset.set_epoch(1)
            for sample in dataset:
                readers.setdefault(sample["key"], []).append((rank, worker))
    assert len(readers) == 8 and all(len(r) == 1 for r in readers.values())


def _keys_this_rank_reads(rank: int, world: int, init_file: str, shards: list[str], results: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        dataset = ShardClipDataset(shards, ClipSpec(5), (32, 32), seed=1, counts=shard_counts(shards), batch_size=1)
        loader = EpochLoader(dataset, epoch=lambda: 0, batch_size=1, num_workers=2,
                             multiprocessing_context=fork_server_context())  # fmt: skip
        Path(f"{results}.{rank}").write_text(json.dumps([batch["key"][0] for batch in loader]))
    finally:
        dist.destroy_process_group()


def test_ranks_launched_without_a_rank_variable_stream_disjoint_shares_from_fresh_workers(
    shard_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lightning's own launcher (and srun) set no RANK, and workers from the fork server have no process group:
    webdataset then took every worker of every rank for rank 0 of 1, and all ranks trained the same batches."""
    for name in ("RANK", "WORLD_SIZE", "WORKER", "NUM_WORKERS"):
        monkeypatch.delenv(name, raising=False)
    shards, results = expand_shards(str(shard_dir / "shards")), str(tmp_path / "keys")
    mp.start_processes(_keys_this_rank_reads, args=(2, str(tmp_path / "init"), shards, results), nprocs=2, start_method="fork")
    first, second = (json.loads(Path(f"{results}.{rank}").read_text()) for rank in range(2))
    assert len(first) == len(second) == 4 and not set(first) & set(second), (first, second)


def test_the_epoch_reseeds_the_stream_and_workers_do_not_change_the_clips(shard_dir: Path) -> None:
    shards = expand_shards(str(shard_dir / "shards"))
    dataset = ShardClipDataset(shards, ClipSpec(5), (32, 32), seed=1, horizontal_flip=True)

    def epoch_clips(epoch: int, workers: int) -> dict[str, torch.Tensor]:
        loader = EpochLoader(dataset, epoch=lambda: epoch, batch_size=1, num_workers=workers)
        return {batch["key"][0]: batch["video"][0] for batch in loader}

    first, again, second = epoch_clips(0, 0), epoch_clips(0, 2), epoch_clips(1, 0)
    assert sorted(first) == sorted(second) and len(first) == 8
    assert all(torch.equal(first[key], again[key]) for key in first)
    assert any(not torch.equal(first[key], second[key]) for key in first)


def test_a_resumed_stream_restarts_at_a_shard_and_delivers_each_sample_once(shard_dir: Path) -> None:
    shards = expand_shards(str(shard_dir / "shards"))
    dataset = ShardClipDataset(shards, ClipSpec(5), (32, 32), train=False)
    stream = iter(dataset)
    seen = [next(stream)["key"] for _ in range(3)]
    state = dataset.state_dict()
    # shard 1's second sample was read, not delivered: the run restarts at shard 1, passing over its first
    assert state["shard"] == 1 and state["yielded"] == 3 and state["delivered"] == [[1, seen[2]]]
    resumed = ShardClipDataset(shards, ClipSpec(5), (32, 32), train=False)
    resumed.load_state_dict(state)
    rest = [sample["key"] for sample in resumed]
    assert len(rest) == 5 and not set(rest) & set(seen)

    # with a shuffle buffer holding samples of several shards, the restart goes back far enough
    dataset = ShardClipDataset(shards, ClipSpec(5), (32, 32), shuffle_buffer=6)
    stream = iter(dataset)
    seen = [next(stream)["key"] for _ in range(3)]
    resumed = ShardClipDataset(shards, ClipSpec(5), (32, 32), shuffle_buffer=6)
    resumed.load_state_dict(dataset.state_dict())
    everything = {m["__key__"] for m in wds.WebDataset(shards, shardshuffle=False)}
    rest = [sample["key"] for sample in resumed]
    assert sorted(seen + rest) == sorted(everything)

    # stopped again soon after a resume (before it met every key to pass over), then resumed: each sample once
    for taken in (0, 1):  # 0: the state a loader worker holds before its first batch since the resume
        first = ShardClipDataset(shards, ClipSpec(5), (32, 32), shuffle_buffer=6)
        stream = iter(first)
        seen = [next(stream)["key"] for _ in range(3)]
        second = ShardClipDataset(shards, ClipSpec(5), (32, 32), shuffle_buffer=6)
        second.load_state_dict(first.state_dict())
        stream = iter(second)
        seen += [next(stream)["key"] for _ in range(taken)]
        third = ShardClipDataset(shards, ClipSpec(5), (32, 32), shuffle_buffer=6)
        third.load_state_dict(second.state_dict())
        rest = [sample["key"] for sample in third]
        assert sorted(seen + rest) == sorted(everything), f"stopped {taken} samples after the resume"

    # With sample quotas (an index), a worker delivers exactly its quota, so every rank runs the same
    # number of steps; and a run stopped by max_steps mid-epoch, which Lightning resumes as the next
    # epoch, finishes this one.
    counts = shard_counts(shards)
    assert counts == [2, 2, 2, 2]
    dataset = ShardClipDataset(shards, ClipSpec(5), (32, 32), shuffle_buffer=6, counts=counts, batch_size=2)
    stream = iter(dataset)
    seen = [next(stream)["key"] for _ in range(5)]
    resumed = ShardClipDataset(shards, ClipSpec(5), (32, 32), shuffle_buffer=6, counts=counts, batch_size=2)
    resumed.load_state_dict(dataset.state_dict())
    resumed.set_epoch(1)
    rest = [sample["key"] for sample in resumed]
    assert sorted(seen + rest) == sorted(everything), "each sample once"
    assert resumed.state_dict()["epoch"] == 0, "the interrupted epoch was finished, not replaced by epoch 1"


def _copy_cutting_the_last_shard_short(shards: Path, folder: Path) -> Path:
    """Copies ``shard_dir``'s four shards and their index into ``folder``, the last one cut to its first
    300 bytes (a read error); returns that one."""
    folder.mkdir()
    for path in shards.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    damaged = folder / "shard-000003.tar"
    damaged.write_bytes(damaged.read_bytes()[:300])
    return damaged


def test_a_shard_holding_another_number_of_members_than_its_index_says_is_warned_of(
    shard_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A stale index gives quotas the shards cannot fill (the worker reads them again: samples twice in an
    epoch) or leave samples out, and nothing said so. A shard cut short is counted as unreadable instead."""
    folder = _copy_cutting_the_last_shard_short(shard_dir / "shards", tmp_path / "shards").parent
    index = json.loads((folder / "index.json").read_text())
    index["shards"][0]["samples"], index["shards"][1]["samples"] = 4, 1  # each holds 2
    (folder / "index.json").write_text(json.dumps(index))
    shards = expand_shards(str(folder))
    monkeypatch.setattr("vtok.data.streaming._said_stale", set())
    with caplog.at_level("WARNING", logger="vtok.data.streaming"):
        dataset = ShardClipDataset(shards, ClipSpec(5), (32, 32), train=False, counts=shard_counts(shards), batch_size=1)
        keys = [sample["key"] for sample in dataset]
    assert len(keys) == 9 and len(set(keys)) < 9, "the quota the index gives, filled by reading the shards again"
    stale = [r.getMessage() for r in caplog.records if "the index is stale" in r.getMessage()]
    assert [message.split(":")[0] for message in stale] == [
        f"{shards[0]} holds 2 members, index.json says 4",
        f"{shards[1]} holds 2 members, index.json says 1",
    ], "once per shard, though read twice; not the one cut short"


@pytest.mark.parametrize("workers", [0, 2])
def test_a_stream_saves_the_place_of_the_batches_trained_not_of_the_batch_fetched_ahead(
    shard_dir: Path, workers: int
) -> None:
    """Lightning takes batch n + 1 from a stream (no length) before checkpointing after step n."""
    shards = expand_shards(str(shard_dir / "shards"))

    def loader() -> EpochLoader:
        dataset = ShardClipDataset(shards, ClipSpec(5), (32, 32), counts=shard_counts(shards), batch_size=2)
        return EpochLoader(dataset, epoch=lambda: 0, batch_size=2, num_workers=workers, drop_last=True)

    stopped = loader()
    batches = iter(stopped)
    trained, _fetched_ahead = [next(batches)["key"] for _ in range(2)], next(batches)
    for _ in trained:
        stopped.batch_trained()  # as the data module reports each training batch reaching the device
    resumed = loader()
    resumed.load_state_dict(stopped.state_dict())
    rest = [key for batch in resumed for key in batch["key"]]
    assert len(rest) == 4, "the batch fetched ahead was not trained: it comes again"
    assert sorted([key for batch in trained for key in batch] + rest) == sorted(key for batch in loader() for key in batch["key"])


def test_a_stream_restarted_within_an_epoch_gives_new_clips_and_resumes_numbering_its_passes(shard_dir: Path) -> None:
    """Beside a longer image loader, Lightning starts the stream again inside one of its epochs: with the
    trainer's epoch as its seed, the second pass trained the first pass's clips, crops and order again."""
    shards = expand_shards(str(shard_dir / "shards"))

    def loader() -> EpochLoader:
        dataset = ShardClipDataset(shards, ClipSpec(5), (32, 32), seed=1, counts=shard_counts(shards), batch_size=2)
        return EpochLoader(dataset, epoch=lambda: 0, batch_size=2, num_workers=0, drop_last=True)

    def clips(batches: Any) -> list[tuple[str, float]]:
        return [(key, float(video.sum())) for batch in batches for key, video in zip(batch["key"], batch["video"])]

    stream = loader()
    first, second = clips(stream), clips(stream)  # two passes within the trainer's epoch 0
    assert sorted(k for k, _ in first) == sorted(k for k, _ in second) and first != second
    assert not set(first) & set(second), "each clip of the second pass is drawn anew"

    stopped = loader()
    for _ in stopped:
        stopped.batch_trained()  # as the data module reports each training batch reaching the device
    batches = iter(stopped)
    trained = [next(batches) for _ in range(2)]
    for _ in trained:
        stopped.batch_trained()
    resumed = loader()
    resumed.load_state_dict(stopped.state_dict())
    rest = clips(resumed)  # the shuffle buffer refills on resuming: the same clips, in another order
    assert sorted(clips(trained) + rest) == sorted(second), "the resumed pass is the second one, from where it stopped"
    assert len(rest) == 4 and clips(loader()) == first

    at_the_end = loader()  # saved once a pass had ended (a checkpoint at an epoch's last batch): the next pass follows
    for _ in at_the_end:
        at_the_end.batch_trained()
    resumed = loader()
    resumed.load_state_dict(at_the_end.state_dict())
    assert (clips(resumed) or clips(resumed)) == second, "not the finished pass's clips again"


def test_a_loader_restarted_while_a_batch_of_its_last_pass_is_untrained_keeps_its_place() -> None:
    """A loader beside a stream is read ahead with it: when it wraps then, the last batch of its finished
    pass is still untrained, and the new pass's first batch was saved as trained (a resume lost it)."""

    class Keys(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 6

        def __getitem__(self, key: tuple[int, int]) -> tuple[int, int]:
            return key

    def loader() -> TrainedStateLoader:
        return TrainedStateLoader(Keys(), batch_size=2, sampler=EpochSampler(6, seed=3), collate_fn=list)

    images = loader()
    passes = iter(images)
    [next(passes) for _ in range(3)]
    assert next(passes, None) is None  # the pass ends: a combined loader starts the next at once
    images.batch_trained(), images.batch_trained()  # the pass's last batch is still to be trained
    first_of_next = next(iter(images))  # the read-ahead wraps the loader
    images.batch_trained()  # the last batch of the finished pass
    resumed = loader()
    resumed.load_state_dict(images.state_dict())
    assert (next(iter(resumed), None) or next(iter(resumed))) == first_of_next  # after the finished pass, if restored


def test_fit_streams_shards_with_two_workers_through_the_cli(shard_dir: Path, tmp_path: Path) -> None:
    def fit(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "vtok.cli", "fit", "--data.shards", str(shard_dir / "shards"),
             "--trainer.max_steps", "3", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
             "--trainer.default_root_dir", str(tmp_path / "run"),
             "--model.autoencoder.block_out_channels", "[8,16]", "--model.autoencoder.latent_channels", "4",
             "--data.num_frames", "5", "--data.size", "32", *extra],  # fmt: skip
            cwd=ROOT, capture_output=True, text=True, timeout=300,
        )

    result = fit("--data.num_workers", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["vtok"]["batch_step"] == 3
    # a stream's place is each worker's own: another number of workers is refused in one line (it
    # used to hang: torchdata's assertion left the workers running, and they ignore SIGTERM at exit)
    other = fit("--data.num_workers", "1", "--trainer.max_steps", "5", "--ckpt_path", "last")
    assert other.returncode == 2, other.stderr[-3000:]
    assert "saved by 1 processes with 2 loader workers each, and this run has 1 with 1" in other.stderr


def _fit_shards(shards: Path, tmp_path: Path, batch_size: int, num_workers: int = 0, frames: int = 5) -> None:
    vtok_main(["fit", "--data.shards", str(shards), "--data.batch_size", str(batch_size), "--data.num_workers", str(num_workers),
               "--data.num_frames", str(frames), "--data.size", "32", "--trainer.max_steps", "2", "--trainer.logger", "false",
               "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path / "run"),
               "--model.autoencoder.block_out_channels", "[8,16]", "--model.autoencoder.latent_channels", "4"])  # fmt: skip


def test_shards_that_cannot_fill_a_batch_stop_the_run_instead_of_looping_over_empty_epochs(
    shard_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exit_info:  # with the index: known before training
        _fit_shards(shard_dir / "shards", tmp_path, batch_size=16)
    assert exit_info.value.code == 2 and "the shards hold 8 samples, fewer than one batch" in capsys.readouterr().err
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "shard-000000.tar").write_bytes((shard_dir / "shards" / "shard-000000.tar").read_bytes())
    with pytest.raises(SystemExit) as exit_info:  # no index: two empty epochs in a row
        _fit_shards(lone, tmp_path, batch_size=4)
    assert exit_info.value.code == 1 and "gave no training batch" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    with wds.TarWriter(str(broken / "shard-000000.tar")) as writer:
        writer.write({"__key__": "broken", "mp4": b"\x00\x00\x00\x18ftypmp42 not really a video", "json": {"frames": 20}})
    with pytest.raises(SystemExit) as exit_info:  # nothing usable at all: the warning says why
        _fit_shards(broken, tmp_path, batch_size=1)
    message = capsys.readouterr().err
    assert exit_info.value.code == 1 and f"gives a usable clip:\n  {broken}/shard-000000.tar#broken: decord cannot" in message
    with pytest.raises(SystemExit) as exit_info:  # clips longer than every video, with quotas: a worker's error, with why
        _fit_shards(shard_dir / "shards", tmp_path, batch_size=1, num_workers=1, frames=33)
    message = capsys.readouterr().err
    assert exit_info.value.code == 1 and "training stopped: rank 0's loader worker 0 owes 8 more samples" in message
    assert "gives a usable clip:\n  " in message and "too short" in message and "Traceback" not in message, message


def test_shards_that_no_loader_worker_can_fill_a_batch_from_are_an_error_at_setup(
    shard_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Batches are made inside each loader worker from its own shards: 8 samples passed the per-rank check
    for a batch of 4, and 4 workers with 2 samples each then trained nothing (empty epochs until
    EmptyEpochGuard stopped the run, blaming the data)."""

    def setup(batch_size: int, num_workers: int) -> VideoDataModule:
        module = VideoDataModule(shards=str(shard_dir / "shards"), num_frames=5, size=32, batch_size=batch_size,
                                 num_workers=num_workers)
        module.setup("fit")
        return module

    with pytest.raises(ValueError, match="8 samples in 4 shards, but each of the 1 rank.* x 4 loader worker.* no worker's shards"):
        setup(batch_size=4, num_workers=4)
    with caplog.at_level("WARNING", logger="vtok.data.shard_split"):
        setup(batch_size=4, num_workers=1)
        setup(batch_size=2, num_workers=4)
        assert "are trained" not in caplog.text, "every sample trained"
        module = setup(batch_size=3, num_workers=2)  # 4 samples per worker: one batch of 3 each
    assert "6 of the 8 samples an epoch reads from the 4 shards are trained" in caplog.text
    assert sum(len(batch["key"]) for batch in module.train_dataloader()) == 6


def test_shards_train_and_data_val_path_validates_on_files(
    shard_dir: Path, video_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "val").mkdir()
    for path in sorted(video_folder.glob("*.mp4"))[:2]:
        (tmp_path / "val" / path.name).symlink_to(path)
    args = ["fit", "--data.shards", str(shard_dir / "shards"), "--data.val_path", str(tmp_path / "val"),
            "--trainer.max_steps", "4", "--trainer.val_check_interval", "2", "--trainer.check_val_every_n_epoch", "null",
            "--trainer.enable_progress_bar", "false",
            "--trainer.default_root_dir", str(tmp_path / "run"), *csv_logger(tmp_path),
            "--model.autoencoder.block_out_channels", "[8,16]", "--model.autoencoder.latent_channels", "4",
            "--data.num_frames", "5", "--data.size", "32", "--data.batch_size", "2", "--data.num_workers", "0"]  # fmt: skip
    vtok_main(args)
    assert len(metric_column(tmp_path / "run", "val/psnr")) == 2, "validated on the files every 2 steps"
    assert len(metric_column(tmp_path / "run", "train/l1")) == 4, "while training streamed the shards"

    (tmp_path / "empty").mkdir()
    args[args.index(str(tmp_path / "val"))] = str(tmp_path / "empty")
    args[args.index(str(tmp_path / "run"))] = str(tmp_path / "run-2")  # a new run: "run" holds checkpoints
    with pytest.raises(SystemExit):
        vtok_main(args)
    assert "no video files found" in capsys.readouterr().err
    files = VideoDataModule(path=str(video_folder), val_path=str(tmp_path / "empty"), num_frames=5, size=32, num_workers=0)
    with pytest.raises(ValueError, match="no video files found in data.val_path"):
        files.setup("fit")  # was: training without validation, silently


def test_a_worker_whose_only_shard_is_unreadable_fills_its_quota_from_the_others(
    shard_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """4 shards for 4 loader workers: the one whose shard is cut short owned nothing usable and ended the
    run (NoUsableDataError), where 0 or 2 workers skip the shard and count it."""
    damaged = _copy_cutting_the_last_shard_short(shard_dir / "shards", tmp_path / "shards")
    shards = damaged.parent
    module = VideoDataModule(shards=str(shards), num_frames=5, size=32, batch_size=1, num_workers=4)
    module.setup("fit")
    for epoch in range(2):
        batches = [module.on_after_batch_transfer(batch, 0) for batch in module.train_dataloader()]
        assert len(batches) == 8, f"epoch {epoch}: every worker filled its quota"
        assert list(module.skipped_files) == [str(damaged)] and module.pop_epoch_skips() >= 1, "the shard counted"
    # that worker, stopped anywhere, resumes reading the others (WORKER / NUM_WORKERS: webdataset's worker info)
    listed = expand_shards(str(shards))
    owner = next(w for w in range(4) if split_shards(listed, 0, 1, w, 4) == [str(damaged)])
    monkeypatch.setenv("WORKER", str(owner))
    monkeypatch.setenv("NUM_WORKERS", "4")

    def stream() -> ShardClipDataset:
        return ShardClipDataset(listed, ClipSpec(5), (32, 32), counts=shard_counts(listed), batch_size=1, shuffle_buffer=4)

    whole = [sample["key"] for sample in stream()]
    assert len(whole) == 2
    for stop in (1, 2):
        first = stream()
        samples = iter(first)
        given = [next(samples)["key"] for _ in range(stop)]
        resumed = stream()
        resumed.load_state_dict(first.state_dict())
        assert given + [sample["key"] for sample in resumed] == whole


def test_the_untrained_share_warning_names_what_loses_the_samples(caplog: pytest.LogCaptureFixture) -> None:
    """Batches made inside each worker leave remainders (fewer workers or a smaller batch help); ranks
    whose shards hold unequal numbers of samples give as many as the poorest (only smaller shards help)."""
    with caplog.at_level("WARNING", logger="vtok.data.shard_split"):
        check_quotas([3, 3, 3, 3], world=1, workers=2, batch_size=4)
        assert "8 of the 12 samples" in caplog.text and "Lower data.num_workers or data.batch_size" in caplog.text
        caplog.clear()
        check_quotas([10, 2], world=2, workers=1, batch_size=1)
        assert "4 of the 12 samples" in caplog.text and "unequal numbers of samples: write smaller shards" in caplog.text
        caplog.clear()
        check_quotas([10, 2], world=2, workers=1, batch_size=1, warn=False)  # the ranks but one
        assert caplog.text == ""
        # two incremental prepares' shards: epoch 0 trains 95 %, but each epoch deals the shards anew (79 % on average)
        assert sum(map(sum, sample_quotas([16, 5, 5, 16], 2, 2, 2, epoch=0))) == 40
        check_quotas([16, 5, 5, 16], world=2, workers=2, batch_size=2)
        assert "34 of the 42 samples" in caplog.text and "on average over epochs 0-49; the fewest: 38%" in caplog.text


def test_a_zero_filled_shard_is_counted_as_damaged_not_blamed_on_the_index(
    shard_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A shard overwritten with zeros reads as an empty tar, without an error: it was not counted, and the
    warning said the index was stale and to write the shards again."""
    shards = tmp_path / "shards"
    shutil.copytree(shard_dir / "shards", shards)
    zeroed = sorted(shards.glob("*.tar"))[0]
    zeroed.write_bytes(bytes(zeroed.stat().st_size))
    module = VideoDataModule(shards=str(shards), num_frames=5, size=32, batch_size=1, num_workers=0)
    module.setup("fit")
    assert len([module.on_after_batch_transfer(batch, 0) for batch in module.train_dataloader()]) == 8  # the quota refilled
    assert list(module.skipped_files) == [str(zeroed)] and "the shard is damaged" in module.skipped_files[str(zeroed)]
    assert "index is stale" not in caplog.text


def test_a_stream_beside_images_resumed_after_the_images_restarted_ends_its_epoch_as_a_run_never_stopped(
    shard_dir: Path, tmp_path: Path
) -> None:
    """A stream has no length, so Lightning ends its epoch once both loaders have run out, which it kept in its
    iterator alone: resumed after the images' restart, epoch 0 ran until they ran out again (10 batches for 8)
    and the stream's next pass, restarted inside it, was cut off when it ended."""
    images = tmp_path / "images"
    images.mkdir()
    for index in range(5):  # 5 batches of one image against the stream's 8 of one clip
        write_png(torch.full((3, 32, 32), 40 * index, dtype=torch.uint8), str(images / f"{index}.png"))
    flags = ["--trainer.logger", "false", "--trainer.enable_progress_bar", "false", "--trainer.limit_val_batches", "0",
             "--model.autoencoder.block_out_channels", "[8, 16]", "--model.autoencoder.latent_channels", "4",
             "--data.shards", str(shard_dir / "shards"), "--data.synthetic_videos", "0", "--data.num_frames", "5",
             "--data.size", "32", "--data.batch_size", "1", "--data.image_path", str(images), "--data.image_batch_size", "1",
             "--trainer.callbacks+", "tests.helpers.RecordSamples"]  # fmt: skip
    def fit(run: str, steps: int, *extra: str) -> list[dict[str, Any]]:
        vtok_main(["fit", *flags, "--trainer.callbacks.folder", str(tmp_path / run), "--trainer.max_steps", str(steps),
                   "--trainer.default_root_dir", str(tmp_path / run), *extra])  # fmt: skip
        return json.loads((tmp_path / run / "rank0.json").read_text())["rows"]

    straight = fit("straight", 12)
    assert [row["lightning_epoch"] for row in straight] == [0] * 8 + [1] * 4
    for stop in (6, 7):  # the images restarted at batch 5; 7: the stream has one batch left, fetched ahead
        stopped = fit(f"stopped{stop}", stop)
        resumed = fit(f"stopped{stop}", 12, "--ckpt_path", "last")
        assert [(row["lightning_epoch"], row["index"]) for row in stopped + resumed] == [
            (row["lightning_epoch"], row["index"]) for row in straight
        ], f"stopped at {stop}: the resumed run's epochs and clips are the unbroken run's"
