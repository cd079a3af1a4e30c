"""Clips streamed from WebDataset tar shards: sequential reads instead of millions of random files.

Each rank and loader worker reads its own shards (the policy is in :mod:`vtok.data.shard_split`),
decodes every ``.mp4`` member in memory and turns it into a sample with the same code as the
file dataset (:func:`~vtok.data.dataset.video_clip_with_info`): the same clip sampling within the verified
frames of the member's ``.json``, the same transforms. A member that does not decode, or a shard
that cannot be read, is skipped and travels as a note with the next sample (``"skipped"``), so the
data module warns once and counts it, as for files. A shard read through whose member count is not the
one its index gives is warned of: a stale index makes an epoch repeat samples or leave some out (a local shard
cut short, which tar reads to the cut without an error, is counted as unusable instead).

Randomness: a sample's clip, crop and flip come from a generator seeded by (seed, epoch, the
sample's key), so they do not depend on which worker reads it; the shuffle buffer is seeded by
(seed, epoch, rank, worker). The epoch reaches the dataset through :class:`EpochLoader`.

Resuming: the shuffle buffer keeps no state, so the dataset's state is, per worker, the first shard
that still had samples waiting (read, not yet delivered) and the keys of the samples it has
delivered from that shard on. A resumed run restarts each worker at the start of that shard and
passes over those keys: every sample of the epoch is delivered once, and each worker delivers
exactly its quota, so every rank still runs the same number of steps (ranks that ran different
numbers would wait for each other forever). The order after the restart differs from an
uninterrupted run's (the shuffle buffer refills). A resumed stream first finishes the epoch it
saved, even when Lightning numbers the resumed epoch one higher (as it does for a run stopped by
``max_steps``).
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import webdataset as wds
from torch.utils.data import IterableDataset

from vtok.data.clips import ClipSpec, VideoLength
from vtok.data.dataset import video_clip_with_info
from vtok.data.errors import NoUsableDataError, UnusableFileError, read_notes
from vtok.data.readers import PYAV_SUFFIXES, ReaderBackend, open_video_bytes
from vtok.data.sampler import rank_and_world
from vtok.data.seeding import sample_generator
from vtok.data.shard_split import sample_quotas, split_shards
from vtok.data.trained_state import TrainedStateLoader
from vtok.data.transforms import enlarges
from vtok.data.sources import VIDEO_SUFFIXES
from vtok.error_text import first_line


log = logging.getLogger(__name__)

VIDEO_FIELDS = frozenset(suffix.lstrip(".") for suffix in VIDEO_SUFFIXES)


PREALLOCATED_TAIL = 1 << 20  # zero bytes at a tar's end that no tar writer's padding reaches; a preallocated download's does


def _cut_short(shard: str) -> str | None:
    """Why ``shard``, a local ``.tar`` file, is taken for cut short, or None: it lacks a tar file's end (whole
    512-byte blocks, the last two all zeros: every tar writer ends so; a cut in a header, or between two members,
    does not), or it ends in :data:`PREALLOCATED_TAIL` zero bytes (a download client that gives the file its whole
    size first, then fills it in). A compressed tar's end is the compressor's: never taken for cut short."""
    if not shard.endswith(".tar") or not os.path.isfile(shard):
        return None
    with open(shard, "rb") as file:
        size = file.seek(0, os.SEEK_END)
        file.seek(max(size - 1024, 0))
        if size % 512 != 0 or size < 1024 or any(file.read()):
            return "no tar end; a copy not finished?"
        file.seek(max(size - PREALLOCATED_TAIL, 0))
        if size > PREALLOCATED_TAIL and not any(file.read()):
            return "it ends in a megabyte of zeros; a download not finished?"
    return None


class ShardClipDataset(IterableDataset):
    """Clips from WebDataset shards of encoded videos (``<key>.mp4`` + ``<key>.json``).

    Args:
        shards: shard URLs, the same list on every rank (see :func:`~vtok.data.shard_lists.expand_shards`).
        clip: number of frames and stride or target fps.
        size: output ``(height, width)``.
        train: shuffled shards, a shuffle buffer, random clips, crops and flips; otherwise the
            listed order and centred clips.
        seed: seed of every random choice.
        horizontal_flip: random left-right flips in training.
        backend: video reader, as for files.
        shuffle_buffer: samples (still encoded) each worker holds to shuffle across shards.
        counts: samples per shard (see :func:`~vtok.data.shard_lists.shard_counts`); with them every rank delivers the same
            number of full batches of ``batch_size`` (see :mod:`vtok.data.shard_split`).
        batch_size: samples per batch, for those quotas.
    """

    def __init__(
        self,
        shards: Sequence[str],
        clip: ClipSpec,
        size: tuple[int, int],
        train: bool = True,
        seed: int = 0,
        horizontal_flip: bool = False,
        backend: ReaderBackend = "auto",
        shuffle_buffer: int = 64,
        counts: Sequence[int] | None = None,
        batch_size: int = 1,
    ) -> None:
        if not shards:
            raise ValueError("the dataset has no shards")
        if counts is not None and len(counts) != len(shards):
            raise ValueError(f"got {len(counts)} sample counts for {len(shards)} shards")
        self.shards = list(shards)
        self.clip, self.size, self.train, self.seed = clip, (int(size[0]), int(size[1])), train, seed
        self.horizontal_flip, self.backend = horizontal_flip, backend
        self.shuffle_buffer = shuffle_buffer
        self.counts = list(counts) if counts is not None else None
        self._indexed = dict(zip(self.shards, self.counts or []))  # shard -> samples its index gives it
        self.batch_size = batch_size
        self.epoch = 0
        # (rank, ranks) as the main process knows them (set by EpochLoader): loader workers started fresh
        # from vtok's fork server have no process group, and Lightning's own launcher sets no RANK
        self.ranks: tuple[int, int] | None = None
        self._position = {"epoch": 0, "pass": 0, "shard": 0, "yielded": 0}
        self._resume: dict[str, Any] | None = None
        self._waiting: Counter[int] = Counter()
        self._notes: list[str] = []  # skips not yet told: they travel with the next sample
        self._delivered: dict[int, list[str]] = {}  # shard -> keys delivered from it in this pass
        self._pass_over: set[tuple[int, str]] = set()  # (shard, key) a resumed worker delivered before it stopped

    def set_epoch(self, epoch: int) -> None:
        """The epoch seeds the shard order and every sample's randomness (see :class:`EpochLoader`)."""
        self.epoch = epoch

    def state_dict(self) -> dict[str, Any]:
        """This worker's place: epoch, pass over its shards, samples given, the first shard with
        samples read but not yet delivered (waiting in the shuffle buffer), where a resumed run
        starts again, and the keys already delivered from that shard on, which it passes over."""
        restart = min(self._waiting, default=self._position["shard"])
        # (shard, key): other tools' shards may number their keys from 0 in every shard. A resumed worker's
        # keys to pass over that it has not met again yet (a state saved soon after the resume, or keys
        # still in the shuffle buffer) stay in: dropped, the next resume trained them twice, others never.
        # Only the shards from the restart on are gathered: this runs at every batch (torchdata's snapshots),
        # and gathering every key of the pass so far made an epoch's bookkeeping grow with its square
        met = {(shard, key) for shard, keys in self._delivered.items() if shard >= restart for key in keys}
        met |= {(shard, key) for shard, key in self._pass_over if shard >= restart}
        again = [[shard, key] for shard, key in sorted(met)]
        return {**self._position, "shard": restart, "delivered": again}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._resume = dict(state)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        rank, world, worker, workers = wds.utils.pytorch_worker_info()
        if self.ranks is not None:
            rank, world = self.ranks
        # A resumed run first finishes the interrupted epoch, whatever number Lightning gives the
        # next one (a run stopped by max_steps mid-epoch is saved as if the epoch had ended).
        start, self._resume = self._resume or {}, None
        self._pass_over = {(int(shard), str(key)) for shard, key in start.pop("delivered", [])}
        epoch = start.get("epoch", self.epoch)
        mine = split_shards(self.shards, rank, world, worker, workers, epoch, self.seed, self.train)
        quota = None
        if self.counts is not None:
            quota = sample_quotas(self.counts, world, workers, self.batch_size, epoch, self.seed, self.train)[rank][worker]
        self._position = {"epoch": epoch, "pass": 0, "shard": 0, "yielded": 0, "borrowing": False, **start}
        self._notes = []
        if self._position["borrowing"]:  # resumed while filling its quota from the other shards
            mine = self._borrowed(mine, (rank, worker))
        return self._passes(mine, quota, (rank, worker))

    def _borrowed(self, own: list[str], place: tuple[int, int]) -> list[str]:
        """The shards a worker whose own give no usable clip reads instead: all the others, from a place
        that depends on the worker (so that several such workers do not all read the same one first)."""
        mine = set(own)
        others = [shard for shard in self.shards if shard not in mine]
        start = zlib.crc32(repr(place).encode()) % len(others) if others else 0
        return others[start:] + others[:start]

    def _passes(self, shards: list[str], quota: int | None, place: tuple[int, int]) -> Iterator[dict[str, Any]]:
        position = self._position
        while shards and (quota is None or position["yielded"] < quota):
            given, whole_pass = 0, position["shard"] == 0 and not self._pass_over
            for sample in self._samples(shards, place):
                given += 1
                position["yielded"] += 1
                yield sample
                if quota is not None and position["yielded"] >= quota:
                    return
            if given == 0 and whole_pass:
                shards = self._nothing_usable_in(shards, quota, place)
            if quota is None:
                return
            position["pass"] += 1  # short of the quota (corrupt members): read the shards again
            position["shard"] = 0
            self._pass_over = set()

    def _nothing_usable_in(self, shards: list[str], quota: int | None, place: tuple[int, int]) -> list[str]:
        """What a worker reads next when a whole pass over ``shards`` gave no usable clip (one damaged
        shard, or a failed remote read, can be all a worker owns): without a quota, nothing (the other
        workers deliver the epoch); with one, which it must fill or its rank would wait for it, the
        other shards (samples that other workers deliver too, as a re-read pass repeats its own).

        Raises:
            NoUsableDataError: the other shards gave nothing either, or there are none.
        """
        rank, worker = place
        where = f"rank {rank}'s loader worker {worker}"
        borrowed = [] if quota is None or self._position["borrowing"] else self._borrowed(shards, place)
        why = self._why_nothing_was_usable()
        if quota is not None and not borrowed:
            raise NoUsableDataError(
                f"{where} owes {quota - self._position['yielded']} more samples, and no member of any of the "
                f"{len(self.shards)} shards gives a usable clip:{why}"
            )
        listed = f"{shards[:3]}{'...' if len(shards) > 3 else ''}"
        then = "; it reads the other shards to fill its quota" if borrowed else ""
        log.warning("%s: no member of its shards %s gives a usable clip%s:%s", where, listed, then, why)
        self._position["borrowing"] = bool(borrowed)
        return borrowed

    def _why_nothing_was_usable(self) -> str:
        """The first reasons of the members skipped since the last sample delivered (they travel with the
        next sample, and there is none), one per line, and what to do about them."""
        skipped = read_notes("\n".join(self._notes))
        reasons = "".join(f"\n  {path}: {reason}" for path, reason in skipped[:5])
        more = f"\n  ... and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        return (
            f"{reasons or ' (no member was read)'}{more}\nclips longer than the videos need a lower data.num_frames "
            "(or data.fps); damaged members, `vtok prepare` on the data behind the shards"
        )

    def _samples(self, shards: list[str], place: tuple[int, int]) -> Iterator[dict[str, Any]]:
        """Good samples from ``shards`` (from the current one on), each carrying the notes of the
        members skipped before it; the last one is held back until the stream ends, so no note is lost."""
        position = self._position
        notes = self._notes  # kept across passes: a pass that gives no sample hands its notes to the next
        waiting = self._waiting = Counter()  # shard -> samples read from it, not delivered yet
        given = self._delivered = {}  # shard -> keys delivered from it in this pass
        unreadable: set[int] = set()  # shards with a read error: fewer members than the index is no news

        def skip(error: Exception) -> bool:  # webdataset's handler for unreadable shards and members
            reason = first_line(error.args[0] if error.args else error)  # webdataset wraps the cause
            notes.append(UnusableFileError(shards[position["shard"]], f"cannot read the shard ({reason})").note)
            unreadable.add(position["shard"])
            return True

        def members() -> Iterator[dict[str, Any]]:
            for number in range(position["shard"], len(shards)):
                position["shard"] = number
                read = 0
                for member in wds.tarfile_samples([{"url": shards[number]}], handler=skip):
                    waiting[number] += 1
                    read += 1
                    yield {**member, "__shard__": number}
                indexed = self._indexed.get(shards[number])
                if read == 0 and indexed and number not in unreadable:  # tar reads zeros as its end: no error
                    reason = f"no member can be read, index.json lists {indexed}: the shard is damaged (zero-filled?)"
                    notes.append(UnusableFileError(shards[number], reason).note)
                elif number not in unreadable:  # read through, from its start (a resumed worker restarts there too)
                    self._check_index(shards[number], read, notes)

        def delivered(shard: int, key: str | None = None) -> None:  # key None: an unusable member
            waiting[shard] -= 1
            if not waiting[shard]:
                del waiting[shard]
            if key is not None:
                given.setdefault(shard, []).append(key)

        stream: Iterator[dict[str, Any]] = members()
        if self.train and self.shuffle_buffer > 1:
            seed = zlib.crc32(repr((self.seed, position["epoch"], position["pass"], place)).encode())
            stream = wds.shuffle(self.shuffle_buffer, initial=self.shuffle_buffer, seed=seed)(stream)
        held: dict[str, Any] | None = None
        for member in stream:
            if (member["__shard__"], member.get("__key__")) in self._pass_over:  # delivered before the run stopped
                delivered(member["__shard__"], member["__key__"])
                continue
            try:
                sample = {**self._clip(member), "__shard__": member["__shard__"]}
            except UnusableFileError as error:
                notes.append(error.note)
                delivered(member["__shard__"])
                continue
            if held is not None:
                delivered(held.pop("__shard__"), held["key"])  # before the yield: the loader snapshots state while we wait
                yield {**held, "skipped": "\n".join(notes)}
                notes.clear()
            held = sample
        if held is not None:
            delivered(held.pop("__shard__"), held["key"])
            yield {**held, "skipped": "\n".join(notes)}

    def _check_index(self, shard: str, members: int, notes: list[str]) -> None:
        """Warns, once per shard and process (loader workers start afresh each epoch, so with workers once
        per shard, worker and epoch), when a shard read through holds another number of members
        than the index gives it: the quotas come from the index, so the epoch repeats samples (a pass
        short of its quota reads the shards again) or leaves some out. A local shard without a tar end was cut short
        instead (a copy not finished): tar reads a cut header, or none, as its end, so the members lost are no
        error; the shard is counted as unusable, as one that cannot be read."""
        indexed = self._indexed.get(shard)
        if indexed is None or indexed == members:
            return
        cut = _cut_short(shard) if members < indexed else None
        if cut:
            reason = f"ends after {members} of the {indexed} members index.json lists: the file is cut short ({cut}); copy it again"
            notes.append(UnusableFileError(shard, reason).note)
        elif shard not in _said_stale:
            _said_stale.add(shard)
            log.warning(
                "%s holds %d members, index.json says %d: the index is stale, so an epoch repeats samples or leaves "
                "some out; write the shards again (vtok prepare --shards, with a new --out)",
                shard, members, indexed,
            )  # fmt: skip

    def _clip(self, member: dict[str, Any]) -> dict[str, Any]:
        key = member["__key__"]
        name = f"{member.get('__url__', '?')}#{key}"
        fields = sorted(k for k in member if not k.startswith("__"))
        # a video suffix; else the one member beside the metadata: `vtok prepare` names it after its source file,
        # whatever that file's suffix (a manifest may list .flv or .3gp files, which training from it reads)
        others = [k for k in fields if k != "json"]
        field = next((k for k in fields if k in VIDEO_FIELDS), others[0] if len(others) == 1 else None)
        if field is None:
            raise UnusableFileError(name, f"no video member (it has {fields})")
        try:
            length = VideoLength.from_record(json.loads(member["json"])) if "json" in member else None
        except (ValueError, TypeError, AttributeError) as error:
            raise UnusableFileError(name, f"its .json is not a metadata record ({error})") from None
        if self.backend == "auto" and f".{field}" not in PYAV_SUFFIXES and (length is None or length.reader is None):
            _say_members_are_checked_at_every_read(name)  # (formats that always go to PyAV are not checked)
        reader = open_video_bytes(member[field], name, self.backend, f".{field}", length.reader if length else None)
        generator = None
        if self.train:
            generator = sample_generator(self.seed, self._position["epoch"], zlib.crc32(key.encode()), self._position["pass"])
        video, info = video_clip_with_info(reader, self.clip, self.size, generator, self.horizontal_flip, length)
        return {"video": video, "key": key, "enlarged": name if enlarges(*info.source_size, self.size) else ""}


PASS_EPOCH_KEY = "vtok_pass_epoch"  # in an EpochLoader's saved state: the epoch of the stream's pass in progress
_said_unchecked = False
_said_stale: set[str] = set()  # shards whose index count was found wrong, said once per process


def _say_members_are_checked_at_every_read(name: str) -> None:
    """Warns once per process (a stream's workers start afresh each epoch, so once per worker and
    epoch): a member whose metadata records no reader has decord checked against PyAV at every read
    (each member is read once per epoch, so no answer is remembered), a few clip reads' worth of
    decoding each time."""
    global _said_unchecked
    if not _said_unchecked:
        _said_unchecked = True
        log.warning(
            "%s: the shard's metadata records no reader, so decord is checked against PyAV at every read of such a "
            "member (slower loading); shards written by `vtok prepare --shards` record it",
            name,
        )


class EpochLoader(TrainedStateLoader):
    """A :class:`StatefulDataLoader` over a :class:`ShardClipDataset` that gives it the epoch.

    Lightning calls ``set_epoch`` on a loader's sampler, and an iterable dataset has none; so the
    loader numbers the stream's passes itself, as :class:`~vtok.data.sampler.EpochSampler` does: the
    first pass takes the trainer's epoch (``epoch()``) or the number a resume gives (:meth:`start_passes_at`),
    each later pass the next number, also when Lightning starts a pass twice in one of its epochs (a stream
    beside a longer image loader is restarted inside the epoch: with the trainer's epoch it gave the same
    clips, crops and order again).
    The number of the pass in progress is saved with the loader's place, so a resumed run numbers its
    passes as a run never stopped. Workers must not be persistent: they hold a copy of the dataset
    made when they start, so fresh ones each pass see the new epoch. Its saved state is the one of the
    last batch trained, not of a batch Lightning fetched ahead
    (see :class:`~vtok.data.trained_state.TrainedStateLoader`).

    Args:
        dataset: the stream.
        epoch: returns the trainer's epoch, which numbers the first pass (and the next one after resuming
            from a checkpoint of a vtok that did not save the pass's number).
        **kwargs: see :class:`TrainedStateLoader` (``persistent_workers`` must stay false).
    """

    def __init__(self, dataset: ShardClipDataset, epoch: Callable[[], int], **kwargs: Any) -> None:
        if kwargs.get("persistent_workers"):
            raise ValueError("EpochLoader needs persistent_workers=False: persistent workers never see a new epoch")
        super().__init__(dataset, **kwargs)
        self._epoch = epoch
        self._pass_epoch: int | None = None  # the epoch of the pass in progress
        self._first_pass: int | None = None  # the first pass's epoch, when not the trainer's (start_passes_at)
        self._restored_epoch: int | None = None  # a resumed pass's epoch, for the next iterator

    def __iter__(self) -> Any:
        if self._restored_epoch is not None:
            epoch, self._restored_epoch = self._restored_epoch, None
        else:
            epoch = self.next_pass()
        self._pass_epoch = epoch
        self.dataset.set_epoch(epoch)
        self.dataset.ranks = rank_and_world()  # here, in the process the process group belongs to
        return super().__iter__()

    def _place(self) -> dict[str, Any]:
        return {PASS_EPOCH_KEY: self._pass_epoch}

    def next_pass(self) -> int:
        """The epoch of the next pass: the one after the pass last started, else the one given to
        :meth:`start_passes_at`, else the trainer's."""
        if self._pass_epoch is not None:
            return self._pass_epoch + 1
        return self._first_pass if self._first_pass is not None else self._epoch()

    def start_passes_at(self, epoch: int) -> None:
        self._first_pass, self._pass_epoch = epoch, None

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        restored = state.pop(PASS_EPOCH_KEY, None)
        finished = bool(state.get("_iterator_finished", False))  # saved after its pass ended: the next one follows
        self._restored_epoch = None if restored is None else restored + finished
        super().load_state_dict(state)
