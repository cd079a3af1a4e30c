"""Video readers: decord first, PyAV where decord has no wheel (it ships for x86-64 Linux only).

A reader is opened per file (or per shard member held in memory) inside the process that uses
it (a data-loader worker), never shared across a fork. Every failure to open or decode is raised as :class:`VideoDecodeError` with the
path and the reason, so the dataset can skip the file and count it.
"""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import torch

from vtok.data.errors import UnusableFileError
from vtok.error_text import first_line

ReaderBackend = Literal["auto", "decord", "pyav"]
VideoSource = str | Path | bytes  # a file, or a whole encoded file in memory (a shard member)
# MPEG program and transport streams: decord 0.6 seeks in them by timestamps that start late, and
# returns frames shifted by whole seconds (the clip's tail frozen on the last frame), with no error.
# PyAV decodes them from the start, correctly; "auto" sends them there.
MPEG_STREAM_SUFFIXES = frozenset({".ts", ".m2ts", ".mts", ".mpg", ".mpeg", ".vob"})


def _openable(source: VideoSource) -> str | io.BytesIO:
    return io.BytesIO(source) if isinstance(source, bytes) else str(source)


class VideoDecodeError(UnusableFileError):
    """A video file that cannot be opened or decoded."""


class VideoReader(Protocol):
    """Random access to the frames of one video file."""

    path: str  # what errors call it
    num_frames: int
    fps: float
    height: int
    width: int

    def read(self, indices: Sequence[int]) -> torch.Tensor:
        """uint8 frames ``[len(indices), H, W, 3]`` (RGB)."""
        ...


class DecordReader:
    """decord's ``VideoReader`` on the CPU, one decoding thread (parallelism comes from workers)."""

    def __init__(self, source: VideoSource, name: str | None = None) -> None:
        import decord

        decord.logging.set_level(decord.logging.QUIET)  # vtok reports bad files itself, once each
        self.path = path = name or str(source)
        try:
            self._reader = decord.VideoReader(_openable(source), ctx=decord.cpu(0), num_threads=1)
            self.num_frames = len(self._reader)
            self.fps = float(self._reader.get_avg_fps())
            first = self._reader[0].shape if self.num_frames else (0, 0, 3)
        except Exception as error:  # decord raises DECORDError (a RuntimeError) and friends
            raise VideoDecodeError(path, f"decord cannot open it ({first_line(error)})") from None
        self.height, self.width = int(first[0]), int(first[1])
        if self.num_frames == 0:
            raise VideoDecodeError(path, "it holds no video frames")

    def read(self, indices: Sequence[int]) -> torch.Tensor:
        try:
            frames = self._reader.get_batch(list(indices)).asnumpy()
        except Exception as error:
            raise VideoDecodeError(self.path, f"decord cannot decode frames ({first_line(error)})") from None
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise VideoDecodeError(self.path, f"decord gave frames of shape {frames.shape}, expected [T, H, W, 3]")
        return torch.from_numpy(np.ascontiguousarray(frames))


class PyAVReader:
    """PyAV decoding from the start of the file up to the last wanted frame (the portable fallback)."""

    def __init__(self, source: VideoSource, name: str | None = None) -> None:
        import av

        self.path = path = name or str(source)
        self._source = source
        try:
            with av.open(_openable(source)) as container:
                if not container.streams.video:
                    raise VideoDecodeError(path, "it has no video stream")
                stream = container.streams.video[0]
                rate = stream.average_rate or stream.guessed_rate or Fraction(0)
                self.fps = float(rate)
                self.height, self.width = int(stream.height), int(stream.width)
                self.num_frames = int(stream.frames) or _count_frames(container)
        except VideoDecodeError:
            raise
        except Exception as error:  # av.error.InvalidDataError and friends
            raise VideoDecodeError(path, f"PyAV cannot open it ({first_line(error)})") from None
        if self.num_frames == 0:
            raise VideoDecodeError(path, "it holds no video frames")

    def read(self, indices: Sequence[int]) -> torch.Tensor:
        import av

        wanted = sorted(set(indices))
        found: dict[int, np.ndarray] = {}
        try:
            with av.open(_openable(self._source)) as container:
                for position, frame in enumerate(container.decode(video=0)):
                    if position in wanted:
                        found[position] = frame.to_ndarray(format="rgb24")
                    if position >= wanted[-1]:
                        break
        except Exception as error:
            raise VideoDecodeError(self.path, f"PyAV cannot decode frames ({first_line(error)})") from None
        missing = [i for i in wanted if i not in found]
        if missing:
            raise VideoDecodeError(self.path, f"frames {missing[:3]}... are not decodable")
        return torch.from_numpy(np.stack([found[i] for i in indices]))


def _count_frames(container) -> int:  # noqa: ANN001 - an av container
    return sum(1 for _ in container.demux(video=0) if _.size)


def decord_available() -> bool:
    return importlib.util.find_spec("decord") is not None


class FallbackReader:
    """decord, with PyAV taking over a file (or a read) that decord fails on.

    decord mis-decodes some valid files (for instance, some narrow frame widths come back with
    four channels); a file is only unusable when neither decoder can read it.
    """

    def __init__(self, source: VideoSource, name: str | None = None) -> None:
        self.path = name or str(source)
        self._source = source
        try:
            self._primary: VideoReader | None = DecordReader(source, self.path)
            probe: VideoReader = self._primary
        except VideoDecodeError as decord_error:
            self._primary = None
            try:
                probe = PyAVReader(source, self.path)
            except VideoDecodeError as pyav_error:
                raise VideoDecodeError(self.path, f"{decord_error.reason}; {pyav_error.reason}") from None
        self.num_frames, self.fps = probe.num_frames, probe.fps
        self.height, self.width = probe.height, probe.width

    def read(self, indices: Sequence[int]) -> torch.Tensor:
        if self._primary is not None:
            try:
                return self._primary.read(indices)
            except VideoDecodeError as decord_error:
                self._primary = None
                try:
                    return PyAVReader(self._source, self.path).read(indices)
                except VideoDecodeError as pyav_error:
                    raise VideoDecodeError(self.path, f"{decord_error.reason}; {pyav_error.reason}") from None
        return PyAVReader(self._source, self.path).read(indices)


def open_video(path: str | Path, backend: ReaderBackend = "auto") -> VideoReader:
    """Opens ``path`` with decord, PyAV, or (``"auto"``) decord with PyAV as the fallback, and PyAV
    alone for MPEG program and transport streams (``.ts``, ``.mpg``, ...), which decord mis-seeks.

    Raises:
        VideoDecodeError: the file is missing, empty, not a video, or undecodable.
    """
    path = Path(path)
    if not path.is_file():
        raise VideoDecodeError(path, "no such file")
    if path.stat().st_size == 0:
        raise VideoDecodeError(path, "the file is empty (0 bytes)")
    return _open(path, str(path), backend, path.suffix)


def open_video_bytes(data: bytes, name: str, backend: ReaderBackend = "auto", suffix: str = "") -> VideoReader:
    """Opens a whole encoded video held in memory (e.g. a WebDataset shard member), like :func:`open_video`.

    Args:
        data: the bytes of the file.
        name: what errors call it (e.g. ``shard.tar#key``).
        backend: see :func:`open_video`.
        suffix: the file type the bytes came as (``".mp4"``, ``".ts"``), which picks the reader.

    Raises:
        VideoDecodeError: the bytes are empty, not a video, or undecodable.
    """
    if not data:
        raise VideoDecodeError(name, "the file is empty (0 bytes)")
    return _open(data, name, backend, suffix)


def _open(source: VideoSource, name: str, backend: ReaderBackend, suffix: str) -> VideoReader:
    if backend == "decord":
        return DecordReader(source, name)
    if backend == "auto" and decord_available() and suffix.lower() not in MPEG_STREAM_SUFFIXES:
        return FallbackReader(source, name)
    return PyAVReader(source, name)
