"""The LightningDataModule: video clips (and optionally images) for training and validation."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningDataModule
from torchdata.stateful_dataloader import StatefulDataLoader

from vtok.data.clips import ClipSpec, VideoLength
from vtok.data.dataset import SkippingDataset, VideoClipDataset
from vtok.data.batches import video_parts
from vtok.data.errors import DataSetupError, read_notes
from vtok.data.fork_server import fork_server_context
from vtok.data.held_out_split import held_out_files
from vtok.data.images import ImageDataset
from vtok.data.pass_numbers import NEXT_PASSES_KEY, next_passes, number_resumed_passes
from vtok.data.readers import ReaderBackend
from vtok.data.overlap import warn_about_overlap, warn_about_sharded_overlap
from vtok.data.sampler import EpochSampler
from vtok.data.sources import IMAGE_SUFFIXES, RealPaths, list_clip_records, list_files, no_videos_found, unique_records
from vtok.data.shard_split import check_quotas, warn_about_shard_split
from vtok.data.small_sources import warn_about_small_sources
from vtok.data.shard_lists import expand_shards, shard_counts, shard_index
from vtok.data.streaming import EpochLoader, ShardClipDataset
from vtok.data.synthetic import default_sample_dir, write_sample_clips
from vtok.data.trained_state import TrainedStateLoader
from vtok.data.validation_files import VALIDATION_KEY, say_if_validation_changed, validation_record
from vtok.data.worker_signals import kill_loader_workers_at_exit, loader_worker_init

log = logging.getLogger(__name__)


def _named(setting: str, lister: Callable[..., list], *args: Any) -> list:
    """``lister(*args)``, with a source that does not exist reported under the setting that names it."""
    try:
        return lister(*args)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{setting}: {error}") from None


class VideoDataModule(LightningDataModule):
    """Clips from a folder, a glob or a manifest of videos, or streamed from WebDataset shards;
    images in a loader of their own.

    Batches are dicts: ``video`` float ``[B, 3, T, H, W]`` in ``[-1, 1]``, ``index`` (the
    sample's slot), ``source_index`` (the file that filled it), ``skipped`` (unusable files met
    while filling it) and ``enlarged`` (the source's path when it was smaller than ``size``, else
    empty); ``skipped`` and ``enlarged`` are taken off in :meth:`on_after_batch_transfer`. Validation
    and test batches also have ``repeated`` (true for a rank's padding, scored by no one). Streamed
    batches have ``key`` (the shard member) instead of the two indices. With ``image_path`` set,
    training batches are ``{"videos": ..., "images": ...}``.

    Streaming (``shards``): each rank and worker reads its own shards (policy in
    :mod:`vtok.data.shard_split`); the epoch reaches the stream through
    :class:`~vtok.data.streaming.EpochLoader`, whose workers are started afresh every epoch;
    a resumed run restarts each worker at the start of the first shard it had not finished
    delivering (shuffle buffers keep no state), so resumption is exact to the shard.

    Args:
        path: training videos: a folder, a glob pattern, or a CSV/JSONL/TXT manifest of paths.
            A manifest written by ``vtok prepare`` also gives each file's verified frame count
            and fps: clips never reach past those frames, and the file's header is not trusted.
            Unset, ``synthetic_videos`` generated sample clips are used instead.
        shards: training videos streamed from WebDataset tar shards instead of ``path``: a folder
            of ``.tar`` files (``vtok prepare --shards`` writes ``D/shards``), a brace pattern, or
            any URL or ``pipe:`` WebDataset opens. Validation then uses ``val_path`` (if set).
        shard_index: the ``index.json`` with the shards' sample counts (default: beside local
            shards); with it every rank delivers the same number of batches per epoch.
        shuffle_buffer: streamed samples each worker holds to shuffle across shards.
        val_path: validation videos; unset, ``val_fraction`` of ``path``'s files are held out.
        test_path: videos ``vtok test`` scores (a folder, glob or manifest, like ``val_path``): held out
            from training and from the choices validation guided. Only ``vtok test`` reads it.
        image_path: training images (1-frame clips), batched separately from the videos.
        val_fraction: share of files held out for validation when ``val_path`` is unset.
        num_frames: frames per clip (``1 + k·t`` for temporal compression ``t``).
        frame_stride: take every n-th frame (ignored when ``fps`` is set).
        fps: target frame rate; sets the stride per video from its own frame rate.
        size: output ``height`` and ``width`` (one number for a square).
        horizontal_flip: random left-right flips in training.
        batch_size: videos per training batch (per device).
        val_batch_size: videos per validation batch (default ``batch_size``).
        image_batch_size: images per batch (default ``batch_size``).
        num_workers: decoding processes per loader.
        seed: seed of clip positions, crops, flips, shuffling and file substitution.
        backend: video reader: ``"auto"`` (decord, with PyAV for the files decord cannot read and for
            ``.ts``/``.mpg`` streams), ``"decord"`` or ``"pyav"``.
        synthetic_videos: number of generated sample clips to use when ``path`` is unset.
        synthetic_dir: where generated clips are written (default: the user cache folder).
    """

    def __init__(
        self,
        path: str | None = None,
        shards: str | None = None,
        shard_index: str | None = None,
        shuffle_buffer: int = 64,
        val_path: str | None = None,
        test_path: str | None = None,
        image_path: str | None = None,
        val_fraction: float = 0.1,
        num_frames: int = 17,
        frame_stride: int = 1,
        fps: float | None = None,
        size: int | list[int] = 256,
        horizontal_flip: bool = False,
        batch_size: int = 1,
        val_batch_size: int | None = None,
        image_batch_size: int | None = None,
        num_workers: int = 2,
        seed: int = 0,
        backend: ReaderBackend = "auto",
        synthetic_videos: int = 0,
        synthetic_dir: str | None = None,
    ) -> None:
        super().__init__()
        sizes = [size] if isinstance(size, int) else list(size)
        if len(sizes) not in (1, 2) or min(sizes) < 1:
            raise ValueError(f"size must be one positive number or [height, width], got {size}")
        self.size = (sizes[0], sizes[-1])
        self.clip = ClipSpec(num_frames, frame_stride, fps)
        if not 0 <= val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if path is not None and shards is not None:
            raise ValueError("set data.path (video files) or data.shards (WebDataset shards), not both")
        if path is None and shards is None and synthetic_videos < 1:
            raise ValueError(
                "set data.path to your videos, data.shards to WebDataset shards, "
                "or data.synthetic_videos to train on generated clips"
                + ("; images (data.image_path) train beside videos, not alone" if image_path else "")
            )
        self.path, self.val_path, self.test_path, self.image_path = path, val_path, test_path, image_path
        if shuffle_buffer < 0:
            raise ValueError(f"shuffle_buffer must be 0 (no shuffling) or more, got {shuffle_buffer}")
        self.shards, self.shard_index, self.shuffle_buffer = shards, shard_index, shuffle_buffer
        batch_sizes = {"batch_size": batch_size, "val_batch_size": val_batch_size, "image_batch_size": image_batch_size}
        for name, count in batch_sizes.items():
            if count is not None and count < 1:
                raise ValueError(f"data.{name} must be at least 1, got {count}")
        if num_workers < 0:
            raise ValueError(f"data.num_workers must be 0 (decode in the training process) or more, got {num_workers}")
        self.val_fraction = val_fraction
        self.horizontal_flip = horizontal_flip
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.image_batch_size = image_batch_size or batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.backend: ReaderBackend = backend
        self.synthetic_videos = synthetic_videos
        self.synthetic_dir = synthetic_dir
        self.skipped_files: dict[str, str] = {}  # path -> reason, every unusable file met so far
        self.skips_this_epoch: Counter[str] = Counter()
        self.enlarged_this_epoch = 0  # training samples from sources smaller than data.size
        self._said_enlarged = False
        self._training_loaders: list[TrainedStateLoader] = []
        self._next_passes: list[int | None] | None = None  # from a checkpoint, for the next training loaders
        self.datasets: dict[str, SkippingDataset] = {}
        self._validation: tuple[list[str], dict[str, Any]] | None = None  # the validation files and their record

    @property
    def num_frames(self) -> int:
        return self.clip.num_frames

    def _synthetic_folder(self) -> Path:
        return Path(self.synthetic_dir or default_sample_dir()).expanduser() / (
            f"{self.synthetic_videos}x{self._synthetic_frames()}f_{self._synthetic_size()[0]}x"
            f"{self._synthetic_size()[1]}_seed{self.seed}"
        )

    def _synthetic_frames(self) -> int:
        return self.clip.span(24.0) + 8  # room for the random clip start to vary

    def _synthetic_size(self) -> tuple[int, int]:
        return round(self.size[0] * 1.25), round(self.size[1] * 1.25)  # room for random crops

    def prepare_data(self) -> None:
        """Writes the generated sample clips once per machine (Lightning runs this on local rank 0)."""
        if self.path is None and self.shards is None:
            folder = self._synthetic_folder()
            write_sample_clips(folder, self.synthetic_videos, self._synthetic_frames(), *self._synthetic_size(), seed=self.seed)

    def _split(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        records = _named("data.path", list_clip_records, self.path if self.path is not None else self._synthetic_folder())
        if not records:
            raise no_videos_found(self.path)
        if self.val_path is not None:
            held_out = self._held_out_records("data.val_path", self.val_path)
            warn_about_overlap("data.val_path", held_out, records)
            return records, held_out
        return self._split_by_fraction(records)

    def _split_by_fraction(
        self, records: list[dict[str, Any]], say: bool = True
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """``records`` split into training and validation by ``data.val_fraction`` (the same split every time, and
        each file's side its own: see :func:`held_out_files`; ``say``: warn when one file leaves none to hold out)."""
        # files are held out, not lines: a manifest that repeats a file (to weight it, or spelt another way:
        # relative and absolute, through a symlink) never has it in both splits
        real = RealPaths()
        files = [real(record["path"]) for record in records]
        paths = list(dict.fromkeys(files))
        if self.val_fraction > 0 and len(paths) == 1 and say:
            log.warning(
                "data.path lists one file: none is held out for validation (data.val_fraction=%g), so no "
                "validation runs; pass data.val_path to validate", self.val_fraction,
            )  # fmt: skip
        val_files = held_out_files(paths, self.val_fraction, self.seed, self.path or self._synthetic_folder())
        train = [record for record, file in zip(records, files) if file not in val_files]
        val = {file: r for r, file in zip(records, files) if file in val_files}  # each once: validation clips are fixed
        return train, sorted(val.values(), key=lambda record: record["path"])

    @staticmethod
    def _held_out_records(setting: str, path: str) -> list[dict[str, Any]]:
        """The files of ``data.val_path`` or ``data.test_path``, each once (as ``vtok evaluate`` scores them); none is an
        error (never train on without the validation that was asked for, nor score an empty test set)."""
        records = unique_records(_named(setting, list_clip_records, path))
        if not records:
            raise no_videos_found(path, setting)
        return records

    def _clips(self, records: list[dict[str, Any]], train: bool) -> VideoClipDataset:
        """Clips from the files of ``records``; a manifest's verified frame counts and fps bound the clips."""
        return VideoClipDataset(
            [record["path"] for record in records],
            self.clip,
            size=self.size,
            backend=self.backend,
            lengths=[VideoLength.from_record(record) for record in records],
            train=train,
            seed=self.seed,
            horizontal_flip=self.horizontal_flip,
        )

    def setup(self, stage: str | None = None) -> None:
        """Lists and splits the files, and fails here, before training, when none is usable."""
        if self.datasets:
            return
        try:
            if stage == "test":  # `vtok test` reads its own files only
                self._setup_test()
            else:
                self._setup_training(stage)
            self._probe_datasets()
            if stage != "test":  # after the probe: a list of missing files is that, not too few for a batch
                self._check_one_batch()
        except (ValueError, FileNotFoundError) as error:
            self.datasets.clear()  # nothing half set up for a later call to take as done
            raise DataSetupError(str(error)) from error

    def state_dict(self) -> dict[str, Any]:
        """What a resume checks and restores (:mod:`vtok.data.validation_files`, :mod:`vtok.data.pass_numbers`)."""
        files, source = getattr(self.datasets.get("val"), "files", None), self.val_path or self.path or self._synthetic_folder()
        if files and (self._validation is None or self._validation[0] is not files):  # once a set: each save took 2 s a 1M set
            self._validation = (files, validation_record(files, str(source)))
        record = {VALIDATION_KEY: self._validation[1]} if files else {}
        return {**record, NEXT_PASSES_KEY: next_passes(self._training_loaders)} if self._training_loaders else record

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        say_if_validation_changed(state_dict.get(VALIDATION_KEY), self.state_dict().get(VALIDATION_KEY))
        self._next_passes = state_dict.get(NEXT_PASSES_KEY)

    def _setup_training(self, stage: str | None) -> None:
        """The training datasets (videos, images) and the validation one."""
        if self.shards is not None:
            self.datasets["train"] = self._stream()
            if self.val_path is not None:
                held_out = self._held_out_records("data.val_path", self.val_path)
                warn_about_sharded_overlap("data.val_path", held_out, self.datasets["train"].shards, self.shard_index)
                self.datasets["val"] = self._clips(held_out, train=False)
            elif stage in (None, "fit"):  # a stream holds nothing out: say so, as a split that holds out none does
                log.warning("data.shards without data.val_path: no validation runs; pass data.val_path to validate")
        else:
            train_records, val_records = self._split()
            self._warn_about_upscaling(train_records + val_records)
            self.datasets["train"] = self._clips(train_records, train=True)
            if val_records:
                self.datasets["val"] = self._clips(val_records, train=False)
        if stage == "validate" and "val" not in self.datasets:  # Lightning would score nothing and exit 0
            raise ValueError(
                "vtok validate has no validation files: pass data.val_path, or hold some of data.path out with "
                "data.val_fraction above 0 (data.path must then list more than one file)"
            )
        if self.image_path is not None and stage in (None, "fit"):  # validate reads no image
            image_files = _named("data.image_path", list_files, self.image_path, IMAGE_SUFFIXES)
            if not image_files:
                raise ValueError(f"no image files found in {self.image_path!r}")
            self.datasets["images"] = ImageDataset(
                image_files, size=self.size, train=True, seed=self.seed, horizontal_flip=self.horizontal_flip
            )

    def _probe_datasets(self) -> None:
        """Finds each dataset's first usable file (an error when none is), recording the unusable ones before it."""
        for name, dataset in self.datasets.items():
            if isinstance(dataset, ShardClipDataset):
                continue  # a stream is checked as it is read: unusable members are skipped and counted
            try:
                _, errors = dataset.first_usable()
            except ValueError as error:  # no file of the split is usable
                if name == "train" and self.path is not None and Path(self.path).suffix.lower() == ".txt":
                    raise ValueError(f"data.path {self.path} is read as a list of videos, one path a line: {error}") from None
                if name != "val" or self.val_path:
                    raise
                raise ValueError(
                    f"the validation files, held out from data.path by data.val_fraction: {error}; "
                    "pass data.val_path, or run `vtok prepare` on the data to drop unusable files"
                ) from None
            for error in errors:
                self._record(error.path, error.reason, count=False, probe=True)
            log.info("%s: %d file%s", name, len(dataset), "" if len(dataset) == 1 else "s")

    def _setup_test(self) -> None:
        if self.test_path is None:
            raise ValueError(
                "vtok test scores data.test_path, videos held out from training and validation: pass "
                "--data.test_path (a folder, glob or manifest); vtok validate scores the validation files"
            )
        records = self._held_out_records("data.test_path", self.test_path)
        if self.shards is not None:
            warn_about_sharded_overlap("data.test_path", records, expand_shards(self.shards), self.shard_index)
        elif self.path is not None:  # generated clips are never among a test folder's files
            trained = _named("data.path", list_clip_records, self.path)
            if self.val_path is None:  # the files validation held out were never trained on
                trained = self._split_by_fraction(trained, say=False)[0]
            warn_about_overlap("data.test_path", records, trained)
        self._warn_about_upscaling(records)
        self.datasets["test"] = self._clips(records, train=False)

    def _warn_about_upscaling(self, records: list[dict[str, Any]]) -> None:
        if warn_about_small_sources(records, self.size):
            self._said_enlarged = True  # the files read later are counted, not said again

    def _check_one_batch(self) -> None:
        """Raises ``ValueError`` when a rank's share of the training clips (or, for shards with an index,
        of the samples) is smaller than one batch, or no loader worker of a rank holds one: no batch would be made."""
        world = self.trainer.world_size if self.trainer is not None else 1
        train = self.datasets["train"]
        if isinstance(train, ShardClipDataset):
            if train.counts is None:
                return  # unknown until read: EmptyEpochGuard stops a run whose epoch gives no batch
            total, what = sum(train.counts), f"the shards hold {sum(train.counts)} samples"
        else:
            total, what = len(train), f"the training split has {len(train)} files"
            if self.val_path is None and "val" in self.datasets:
                what += f" ({len(self.datasets['val'])} more held out by data.val_fraction={self.val_fraction})"
        if -(-total // world) < self.batch_size:
            raise ValueError(
                f"{what}, fewer than one batch of data.batch_size={self.batch_size} per rank on {world} rank(s): "
                "no training batch would be made. Lower data.batch_size or add data"
            )
        if isinstance(train, ShardClipDataset):  # batches are made inside each loader worker: it may fill none
            warn = self.trainer is None or self.trainer.is_global_zero  # one warning, not one per rank
            check_quotas(train.counts, world, max(self.num_workers, 1), self.batch_size, self.seed, warn)
        images = len(self.datasets["images"]) if "images" in self.datasets else None
        if images is not None and -(-images // world) < self.image_batch_size:
            raise ValueError(
                f"data.image_path has {images} images, fewer than one batch of data.image_batch_size="
                f"{self.image_batch_size} per rank on {world} rank(s). Lower data.image_batch_size or add images"
            )

    def _stream(self) -> ShardClipDataset:
        shards = expand_shards(self.shards)
        counts = shard_counts(shards, self.shard_index)
        world = self.trainer.world_size if self.trainer is not None else 1
        indexed = shard_index(shards, self.shard_index) is not None
        warn_about_shard_split(len(shards), counts is not None, indexed, world, max(self.num_workers, 1))
        log.info("train: %d shards%s", len(shards), f", {sum(counts)} samples" if counts else "")
        return ShardClipDataset(
            shards,
            self.clip,
            self.size,
            train=True,
            seed=self.seed,
            horizontal_flip=self.horizontal_flip,
            backend=self.backend,
            shuffle_buffer=self.shuffle_buffer,
            counts=counts,
            batch_size=self.batch_size,
        )

    def _current_epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def _loader(self, name: str, batch_size: int, shuffle: bool) -> StatefulDataLoader:
        dataset = self.datasets[name]
        workers = {"num_workers": self.num_workers, "worker_init_fn": loader_worker_init()}
        if self.num_workers > 0:
            kill_loader_workers_at_exit()  # the workers ignore SIGTERM: see vtok.data.worker_signals
            workers["multiprocessing_context"] = fork_server_context()  # not a fork of this process: see fork_server
        if isinstance(dataset, ShardClipDataset):
            return EpochLoader(
                dataset,
                epoch=self._current_epoch,
                batch_size=batch_size,
                **workers,
                drop_last=True,
                pin_memory=torch.cuda.is_available(),
                generator=torch.Generator().manual_seed(self.seed),  # as below: a pass's start leaves the global RNG alone
            )
        return TrainedStateLoader(
            dataset,
            track_trained=shuffle,  # training: saves the place of the batches trained (see on_after_batch_transfer)
            batch_size=batch_size,
            sampler=EpochSampler(len(dataset), shuffle=shuffle, seed=self.seed, mark_repeats=not shuffle),
            **workers,
            drop_last=shuffle,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
            # Its own generator, so creating the iterator does not draw from the global RNG.
            generator=torch.Generator().manual_seed(self.seed),
        )

    def train_dataloader(self) -> Any:
        passes = self._next_passes if self._next_passes is not None else next_passes(self._training_loaders)  # of loaders replaced
        self._training_loaders = [self._loader("train", self.batch_size, shuffle=True)]
        if "images" in self.datasets:
            self._training_loaders.append(self._loader("images", self.image_batch_size, shuffle=True))
        number_resumed_passes(self._training_loaders, passes)
        self._next_passes = None
        videos, *images = self._training_loaders
        return {"videos": videos, "images": images[0]} if images else videos

    def val_dataloader(self) -> Any:
        return self._loader("val", self.val_batch_size, shuffle=False) if "val" in self.datasets else []

    def test_dataloader(self) -> Any:
        return self._loader("test", self.val_batch_size, shuffle=False)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Takes the skipped-file notes off every batch: one warning per file, counted per epoch; and
        tells the training loaders that a batch is being trained (so a checkpoint saves their place
        after it, whatever Lightning fetched ahead)."""
        if self.trainer is not None and self.trainer.training:
            for loader in self._training_loaders:
                loader.batch_trained()
        for part in video_parts(batch).values():
            training = self.trainer is None or self.trainer.training  # held-out skips stay out of the training count
            for notes in part.pop("skipped", []):
                for path, reason in read_notes(notes):
                    self._record(path, reason, count=training)
            for path in filter(None, part.pop("enlarged", [])):
                self._record_enlarged(path)
        return batch

    def end_training_epoch(self, rest_skipped: bool = False) -> None:
        """Called by the training module at the end of every training epoch (``rest_skipped``: the rest of one
        resumed after its last batch, not trained): see :meth:`vtok.data.sampler.EpochSampler.skip_unread_epoch_end`."""
        for loader in self._training_loaders:
            skip = getattr(getattr(loader, "sampler", None), "skip_unread_epoch_end", None)
            if skip is not None:
                skip(rest_skipped)

    def _record_enlarged(self, path: str) -> None:
        """Counts a training sample whose source is smaller than ``data.size`` (logged each epoch as
        ``data/enlarged_samples``); warns at the first such source, training or validation, since a
        folder's sizes are known only as its files are read."""
        if self.trainer is not None and self.trainer.training:
            self.enlarged_this_epoch += 1
        if not self._said_enlarged:
            self._said_enlarged = True
            log.warning(
                "%s is smaller than data.size %s: its crops are enlarged to it (blurrier than the rest); "
                "training samples from such sources are counted in data/enlarged_samples. Lower data.size "
                "or leave them out",
                path, list(self.size),
            )  # fmt: skip

    def pop_epoch_enlarged(self) -> int:
        """Training samples cut from sources smaller than ``data.size`` since the last call."""
        count, self.enlarged_this_epoch = self.enlarged_this_epoch, 0
        return count

    def _record(self, path: str, reason: str, count: bool = True, probe: bool = False) -> None:
        """Remembers an unusable file and warns once. ``count=False`` leaves it out of the training epoch's
        count (held-out batches, and the probe at setup); ``probe=True`` for the probe, which every rank runs
        on the same files, so only the first rank warns of those."""
        if count:
            self.skips_this_epoch[path] += 1
        if path not in self.skipped_files:
            self.skipped_files[path] = reason
            if not probe or self.trainer is None or self.trainer.global_rank == 0:
                log.warning("skipping unusable file %s: %s", path, reason)

    def pop_epoch_skips(self) -> int:
        """Times an unusable file was passed over since the last call (the per-epoch total): once per
        substituted slot, once more for each unusable substitute tried; for shards, the members skipped."""
        total = sum(self.skips_this_epoch.values())
        self.skips_this_epoch.clear()
        return total
