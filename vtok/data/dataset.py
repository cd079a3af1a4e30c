"""Datasets of clips from video files, with bad files skipped, counted and replaced.

A sample is keyed by ``(epoch, index)`` (see :class:`~vtok.data.sampler.EpochSampler`); all its
random choices come from a generator seeded by ``(seed, epoch, index)``. When the file at
``index`` cannot give a sample, another file is drawn deterministically from the same key, so
batches keep their size and every rank stays in step. The skipped files travel with the sample
(``"skipped"``: one note per line, see :func:`~vtok.data.errors.read_notes`) so the main process
can warn once per file and count them, whatever worker found them; so does the path of a source
smaller than the output size (``"enlarged"``, empty for the others), whose crops are enlarged.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch.utils.data import Dataset

from vtok.data.clips import ClipSpec, ClipTooShortError, VideoLength
from vtok.data.errors import NoUsableDataError, UnusableFileError
from vtok.data.manifest import file_version
from vtok.data.probe import still_image_reason
from vtok.data.readers import ReaderBackend, VideoReader, open_video
from vtok.data.seeding import sample_generator
from vtok.data.transforms import draw_placement, enlarges, place_frames, shown_size

# Frames decoded at the source's size at a time (resizing converts them to float: about 350 MB at 720p).
READ_WINDOW = 32


SampleKey = int | tuple[int, int] | tuple[int, int, bool]  # index, (epoch, index), (epoch, index, repeated)


class SkippingDataset(Dataset, ABC):
    """Base for file datasets whose unusable files are replaced by deterministic substitutes.

    Args:
        files: paths, one sample each.
        size: output ``(height, width)``.
        train: random crops (and flips) when true; centre crops otherwise.
        seed: base seed of every per-sample generator.
        horizontal_flip: random left-right flips in training.
        max_attempts: files tried for one slot before giving up with an error.
    """

    def __init__(
        self,
        files: Sequence[str],
        size: tuple[int, int],
        train: bool = True,
        seed: int = 0,
        horizontal_flip: bool = False,
        max_attempts: int = 16,
    ) -> None:
        if not files:
            raise ValueError("the dataset has no files")
        self.files = list(files)
        self.size = (int(size[0]), int(size[1]))
        self.train = train
        self.seed = seed
        self.horizontal_flip = horizontal_flip
        self.max_attempts = max_attempts
        self._bad: dict[int, str] = {}  # this process's memory of files no clip can come from
        self._known_good: int | None = None  # a file that gave a sample (see first_usable): a held-out stand-in

    def __len__(self) -> int:
        return len(self.files)

    @abstractmethod
    def load(self, index: int, generator: torch.Generator | None) -> tuple[torch.Tensor, tuple[int, int]]:
        """The clip ``[3, T, H, W]`` from file ``index`` and the ``(height, width)`` of the file's
        frames; raises :class:`UnusableFileError`."""

    def __getitem__(self, key: SampleKey) -> dict[str, Any]:
        epoch, index, *repeated = key if isinstance(key, tuple) else (0, key)
        marks = {"repeated": bool(repeated[0])} if repeated else {}  # validation: padding left out of metrics
        skipped: list[str] = []
        for attempt in range(self.max_attempts):
            # held out: the same stand-in at every validation (its clips must compare across epochs); first the file
            # known to be good, so that a held-out set mostly unusable still scores its good files (the stand-in is
            # padding, scored by no one), as vtok evaluate does, instead of stopping after max_attempts random draws
            if attempt == 1 and not self.train and self._known_good is not None:
                candidate = self._known_good
            else:
                candidate = index if attempt == 0 else self._substitute(epoch if self.train else 0, index, attempt)
            if candidate in self._bad:  # known bad: not read again, but still counted as a substitution
                skipped.append(UnusableFileError(self.files[candidate], self._bad[candidate]).note)
                continue
            # a retry draws another clip: a file whose later frames are damaged may be drawn again as its own substitute
            keys = (self.seed, epoch, index) if attempt == 0 else (self.seed, epoch, index, attempt, 1)
            generator = sample_generator(*keys) if self.train else None
            try:
                video, source_size = self.load(candidate, generator)
            except UnusableFileError as error:
                if error.every_clip:
                    self._bad[candidate] = error.reason
                skipped.append(error.note)
                continue
            enlarged = self.files[candidate] if enlarges(*source_size, self.size) else ""
            sample = {"video": video, "index": index, "source_index": candidate, "enlarged": enlarged}
            if "repeated" in marks and candidate != index:  # a held-out stand-in is another file's own clip:
                marks["repeated"] = True  # scored once, as that file, not twice
            return {**sample, "skipped": "\n".join(skipped), **marks}
        raise NoUsableDataError(
            f"{self.max_attempts} files in a row could not give a sample (last: {skipped[-1:] or 'known bad'}); "
            "most of this dataset is unusable: run `vtok prepare` on it to see why"
        )

    def _substitute(self, epoch: int, index: int, attempt: int) -> int:
        generator = sample_generator(self.seed, epoch, index, attempt)
        return int(torch.randint(len(self.files), (), generator=generator))

    def first_usable(self) -> tuple[int, list[UnusableFileError]]:
        """Index of the first file that gives a sample, with the errors of the files before it.

        Raises:
            ValueError: no file gives a sample; the message lists the first reasons.
        """
        errors: list[UnusableFileError] = []
        for index in range(len(self.files)):
            try:
                self.load(index, None)
                self._known_good = index
                return index, errors
            except UnusableFileError as error:
                errors.append(error)
        reasons = "\n  ".join(str(e) for e in errors[:5])
        more = f"\n  ... and {len(errors) - 5} more" if len(errors) > 5 else ""
        head = "the one file gives no" if len(self.files) == 1 else f"none of the {len(self.files)} files gives a"
        raise ValueError(f"{head} usable sample:\n  {reasons}{more}")


@dataclass(frozen=True)
class ClipInfo:
    """Where a clip came from.

    Args:
        path: the video file.
        first_frame: index of the clip's first frame in the file.
        frames: frames in the clip.
        stride: frames of the file per frame of the clip.
        source_fps: the file's frame rate (0 when the container does not say).
        source_size: ``(height, width)`` of the file's frames as shown (square pixels).
        source_version: the file's size and modification time taken before it was read (see
            :func:`vtok.data.manifest.file_version`; empty where not taken): a file still being written when read
            then counts as changed since.
    """

    path: str
    first_frame: int
    frames: int
    stride: int
    source_fps: float
    source_size: tuple[int, int]
    source_version: dict[str, int] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        """The clip's effective frame rate, ``source_fps / stride`` (0 when unknown)."""
        return self.source_fps / self.stride


def verified_extent(reader: VideoReader, length: VideoLength | None) -> tuple[int, float]:
    """Frames and frame rate to cut clips from: the header's, bounded by what a manifest verified."""
    if length is None:
        return reader.num_frames, reader.fps
    return min(reader.num_frames, length.frames), length.fps or reader.fps


def video_clip_with_info(
    reader: VideoReader,
    clip: ClipSpec,
    size: tuple[int, int],
    generator: torch.Generator | None,
    horizontal_flip: bool = False,
    length: VideoLength | None = None,
) -> tuple[torch.Tensor, ClipInfo]:
    """One clip ``[3, T, H, W]`` from an opened video, and where it came from: the one way files
    and shard members become samples.

    Args:
        reader: the opened video.
        clip: number of frames and stride or target fps.
        size: output ``(height, width)``.
        generator: draws the clip start, crop and flip; ``None`` gives the centred clip.
        horizontal_flip: random left-right flips (with a generator).
        length: frames verified by ``vtok prepare`` (and the fps it recorded): clips stay within
            them whatever the file's header claims.

    Raises:
        UnusableFileError: the video is too short for one clip, or its frames do not decode.
    """
    frames, fps = verified_extent(reader, length)
    try:
        indices = clip.frame_indices(frames, fps, generator)
    except ClipTooShortError as error:
        reason = frames == 1 and still_image_reason(str(reader.path))  # what it is, before how short it is
        raise UnusableFileError(reader.path, reason or str(error)) from None
    try:
        video, source_size = _placed_frames(reader, indices, size, generator, horizontal_flip)
    except UnusableFileError as error:  # these frames: another clip of the file may decode
        raise UnusableFileError(error.path, error.reason, every_clip=False) from None
    return video, ClipInfo(str(reader.path), indices[0], len(indices), clip.stride(fps), fps, source_size)


def _placed_frames(
    reader: VideoReader, indices: Sequence[int], size: tuple[int, int], generator: torch.Generator | None, horizontal_flip: bool
) -> tuple[torch.Tensor, tuple[int, int]]:
    """The clip ``[3, T, h, w]`` of the frames at ``indices`` and their size at the source as shown
    (:func:`~vtok.data.transforms.shown_size`: an anamorphic source's pixels are made square). A long clip (a
    whole video) is decoded and resized :data:`READ_WINDOW` frames at a time into the output: its frames
    at the source's size were all held at once before (about 6 MB a frame at 720p, 90 GB for 10 minutes)."""
    video: torch.Tensor | None = None
    filled = 0
    for frames in reader.read_windows(indices, READ_WINDOW):
        if video is None:
            stored = (int(frames.shape[1]), int(frames.shape[2]))
            source_size = shown_size(*stored, reader.pixel_aspect)
            placement = draw_placement(*stored, size, generator, horizontal_flip, reader.pixel_aspect)
            if len(frames) == len(indices):  # a training clip: one window
                return place_frames(frames, size, placement), source_size
            video = torch.empty(3, len(indices), *size)
        video[:, filled : filled + len(frames)] = place_frames(frames, size, placement)
        filled += len(frames)
    assert video is not None and filled == len(indices), "a reader gave other frames than asked for"
    return video, source_size


class VideoClipDataset(SkippingDataset):
    """Clips of ``clip.num_frames`` frames from video files, decoded with decord (or PyAV).

    Args:
        files: video paths.
        clip: number of frames and stride or target fps.
        size: output ``(height, width)``.
        backend: ``"auto"`` (decord when installed), ``"decord"`` or ``"pyav"``.
        lengths: per file, the verified frame count and fps from a manifest (``None`` where
            unknown); clips never reach past them.
        **kwargs: see :class:`SkippingDataset`.
    """

    def __init__(
        self,
        files: Sequence[str],
        clip: ClipSpec,
        size: tuple[int, int],
        backend: ReaderBackend = "auto",
        lengths: Sequence[VideoLength | None] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(files, size, **kwargs)
        if lengths is not None and len(lengths) != len(self.files):
            raise ValueError(f"got {len(lengths)} lengths for {len(self.files)} files")
        self.clip = clip
        self.backend = backend
        self.lengths = list(lengths) if lengths is not None else [None] * len(self.files)

    def clip_for(self, reader: VideoReader, length: VideoLength | None) -> ClipSpec:
        """The clip to cut from one opened video (``length``: what a manifest verified of it)."""
        return self.clip

    def load_with_info(self, index: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, ClipInfo]:
        """The clip ``[3, T, H, W]`` from file ``index`` and where it came from; raises :class:`UnusableFileError`."""
        length = self.lengths[index]  # opened here, inside the worker process; with the reader prepare verified
        version = file_version(self.files[index])  # before the read, not after it (a file still being copied)
        reader = open_video(self.files[index], self.backend, length.reader if length is not None else None)
        clip = self.clip_for(reader, length)
        video, info = video_clip_with_info(reader, clip, self.size, generator, self.horizontal_flip, length)
        return video, replace(info, source_version=version)

    def load(self, index: int, generator: torch.Generator | None) -> tuple[torch.Tensor, tuple[int, int]]:
        video, info = self.load_with_info(index, generator)
        return video, info.source_size


class WholeVideoDataset(VideoClipDataset):
    """Each video whole: as many frames as give ``1 + k·multiple`` at the stride or fps, from its first frame.

    Args:
        files: video paths.
        size: output ``(height, width)`` (largest centred crop of that aspect ratio, resized).
        multiple: the clip length is ``1 + k·multiple`` (a causal model's temporal factor).
        frame_stride: take every ``frame_stride``-th frame (ignored when ``fps`` is set).
        fps: target frame rate.
        backend: the video reader.
        lengths: per file, the frames and rate a manifest verified (``None``: trust the header); a
            whole video is then those frames, not the header's count.
    """

    def __init__(
        self,
        files: Sequence[str],
        size: tuple[int, int],
        multiple: int = 1,
        frame_stride: int = 1,
        fps: float | None = None,
        backend: ReaderBackend = "auto",
        lengths: Sequence[VideoLength | None] | None = None,
    ) -> None:
        super().__init__(files, ClipSpec(1, frame_stride, fps), size, backend=backend, lengths=lengths, train=False)
        self.multiple = multiple

    def clip_for(self, reader: VideoReader, length: VideoLength | None) -> ClipSpec:
        frames, fps = verified_extent(reader, length)
        try:
            return self.clip.longest(frames, fps, self.multiple)
        except ClipTooShortError as error:
            raise UnusableFileError(reader.path, str(error)) from None
