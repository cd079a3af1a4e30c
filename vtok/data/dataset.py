"""Datasets of clips from video files, with bad files skipped, counted and replaced.

A sample is keyed by ``(epoch, index)`` (see :class:`~vtok.data.sampler.EpochSampler`); all its
random choices come from a generator seeded by ``(seed, epoch, index)``. When the file at
``index`` cannot give a sample, another file is drawn deterministically from the same key, so
batches keep their size and every rank stays in step. The skipped files travel with the sample
(``"skipped"``: one ``path<TAB>reason`` per line) so the main process can warn once per file
and count them, whatever worker found them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from vtok.data.clips import ClipSpec, ClipTooShortError, VideoLength
from vtok.data.errors import UnusableFileError
from vtok.data.readers import ReaderBackend, VideoReader, open_video
from vtok.data.seeding import sample_generator
from vtok.data.transforms import frames_to_clip

SampleKey = int | tuple[int, int]


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
        self._bad: dict[int, str] = {}  # this process's memory of unusable files

    def __len__(self) -> int:
        return len(self.files)

    @abstractmethod
    def load(self, index: int, generator: torch.Generator | None) -> torch.Tensor:
        """The clip ``[3, T, H, W]`` from file ``index``; raises :class:`UnusableFileError`."""

    def __getitem__(self, key: SampleKey) -> dict[str, Any]:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        skipped: list[str] = []
        for attempt in range(self.max_attempts):
            candidate = index if attempt == 0 else self._substitute(epoch, index, attempt)
            if candidate in self._bad:
                continue
            generator = sample_generator(self.seed, epoch, index) if self.train else None
            try:
                video = self.load(candidate, generator)
            except UnusableFileError as error:
                self._bad[candidate] = error.reason
                skipped.append(error.note)
                continue
            return {"video": video, "index": index, "source_index": candidate, "skipped": "\n".join(skipped)}
        raise RuntimeError(
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
                return index, errors
            except UnusableFileError as error:
                errors.append(error)
        reasons = "\n  ".join(str(e) for e in errors[:5])
        more = f"\n  ... and {len(errors) - 5} more" if len(errors) > 5 else ""
        raise ValueError(f"none of the {len(self.files)} files gives a usable sample:\n  {reasons}{more}")


def video_clip(
    reader: VideoReader,
    clip: ClipSpec,
    size: tuple[int, int],
    generator: torch.Generator | None,
    horizontal_flip: bool = False,
    length: VideoLength | None = None,
) -> torch.Tensor:
    """One clip ``[3, T, H, W]`` from an opened video: the one way files and shard members become samples.

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
    frames, fps = reader.num_frames, reader.fps
    if length is not None:
        frames, fps = min(frames, length.frames), length.fps or fps
    try:
        indices = clip.frame_indices(frames, fps, generator)
    except ClipTooShortError as error:
        raise UnusableFileError(reader.path, str(error)) from None
    return frames_to_clip(reader.read(indices), size, generator, horizontal_flip)


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

    def load(self, index: int, generator: torch.Generator | None) -> torch.Tensor:
        reader = open_video(self.files[index], self.backend)  # opened here, inside the worker process
        return video_clip(reader, self.clip, self.size, generator, self.horizontal_flip, self.lengths[index])
