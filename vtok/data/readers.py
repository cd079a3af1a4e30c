"""Video readers: decord first, PyAV where decord has no wheel (it ships for x86-64 Linux only)
and for the files decord reads wrong.

A reader is opened per file (or per shard member held in memory) inside the process that uses
it (a data-loader worker), never shared across a fork. Every failure to open or decode is raised as :class:`VideoDecodeError` with the
path and the reason, so the dataset can skip the file and count it. Both readers give the frames a
player shows: the same stream, upright (see :mod:`vtok.data.pyav_frames`).
"""

from __future__ import annotations

import importlib.util
import io
import logging
import os
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch

from vtok.data.decode_errors import FrameSizeChangeError, VideoDecodeError
from vtok.data.decord_check import decord_disagreement
from vtok.data.pyav_frames import (
    displayed_array,
    displayed_size,
    frames_in_order,
    has_alpha,
    pixel_aspect,
    presented_frames,
    quarter_turns,
    video_stream,
)
from vtok.error_text import first_line

log = logging.getLogger(__name__)

ReaderBackend = Literal["auto", "decord", "pyav"]
ReaderName = Literal["decord", "pyav"]  # the decoder that reads a file right, as a manifest records it
READER_NAMES: tuple[str, ...] = ReaderName.__args__
VideoSource = str | Path | bytes  # a file, or a whole encoded file in memory (a shard member)
# MPEG program and transport streams: decord 0.6 seeks in them by timestamps that start late, and
# returns frames shifted by whole seconds (the clip's tail frozen on the last frame), with no error.
MPEG_STREAM_SUFFIXES = frozenset({".ts", ".m2ts", ".mts", ".mpg", ".mpeg", ".vob"})
# AVI: with B-frames (H.264, or MPEG-4 Part 2 as "xvid"/"divx" write it) decord's seeks land in the
# wrong stretch of the file. PyAV decodes both from the start, correctly; "auto" sends them there.
PYAV_SUFFIXES = MPEG_STREAM_SUFFIXES | {".avi"}
MISSING_FILE = "no such file"  # the reason a missing file is skipped for, as the skip records write it
DECORD_REOPEN_FRAMES = 256  # see DecordReader.read_windows


def _openable(source: VideoSource) -> str | io.BytesIO:
    return io.BytesIO(source) if isinstance(source, bytes) else str(source)


class VideoReader(Protocol):
    """Random access to the frames of one video file."""

    path: str  # what errors call it
    num_frames: int
    fps: float
    height: int
    width: int
    pixel_aspect: float  # width over height of a pixel as shown (1.0: square; see pyav_frames.pixel_aspect)

    def read(self, indices: Sequence[int]) -> torch.Tensor:
        """uint8 frames ``[len(indices), H, W, 3]`` (RGB)."""
        ...

    def read_windows(self, indices: Sequence[int], window: int) -> Iterator[torch.Tensor]:
        """The frames of ``indices`` as :meth:`read` gives them, ``window`` at a time (the last window
        shorter): a long read whose frames at the source's size need not all be in memory at once."""
        ...


def _windows(indices: Sequence[int], window: int) -> list[Sequence[int]]:
    return [indices[start : start + window] for start in range(0, len(indices), window)]


def _pixel_aspect_for_decord(source: VideoSource, name: str) -> float:
    """:func:`~vtok.data.pyav_frames.pixel_aspect` of the stream decord reads, from the container's header (under
    a millisecond); 1.0 where PyAV cannot open what decord does. decord shows the frames turned as the display
    matrix says, so a pixel that is not square is turned too: only then is the first frame decoded for its turns.

    Raises:
        VideoDecodeError: the stream has an alpha channel, which decord drops (PyAV lays it over white).
    """
    import av

    try:
        with av.open(_openable(source)) as container:
            stream = video_stream(container)
            if stream is not None and has_alpha(stream.codec_context.format):
                raise VideoDecodeError(name, "decord drops its alpha channel (PyAV lays it over white)")
            if stream is None or pixel_aspect(stream) == 1.0:
                return 1.0
            first = next(container.decode(stream), None)
            return pixel_aspect(stream, 0 if first is None else quarter_turns(first))
    except VideoDecodeError:
        raise
    except Exception as error:  # av.error.FFmpegError and friends: nothing says the pixels are not square
        log.debug("%s: pixel aspect ratio not read (%s); taken as square", name, first_line(error))
        return 1.0


def _open_decord(source: VideoSource) -> Any:
    """decord's ``VideoReader`` of ``source`` on the CPU, with one decoding thread."""
    import decord

    return decord.VideoReader(_openable(source), ctx=decord.cpu(0), num_threads=1)


class DecordReader:
    """decord's ``VideoReader`` on the CPU, one decoding thread (parallelism comes from workers)."""

    def __init__(self, source: VideoSource, name: str | None = None) -> None:
        import decord

        decord.logging.set_level(decord.logging.QUIET)  # vtok reports bad files itself, once each
        self.path = path = name or str(source)
        self._source = source
        try:
            self._reader = _open_decord(source)
            self.num_frames = len(self._reader)
            self.fps = float(self._reader.get_avg_fps())
            first = self._reader[0].shape if self.num_frames else (0, 0, 3)
        except Exception as error:  # decord raises DECORDError (a RuntimeError) and friends
            raise VideoDecodeError(path, f"decord cannot open it ({first_line(error)})") from None
        self.height, self.width = int(first[0]), int(first[1])
        if self.num_frames == 0:
            raise VideoDecodeError(path, "it holds no video frames")
        self.pixel_aspect = _pixel_aspect_for_decord(source, path)  # and refuses what decord cannot read (alpha)

    def read(self, indices: Sequence[int]) -> torch.Tensor:
        try:
            frames = self._reader.get_batch(list(indices)).asnumpy()
        except Exception as error:
            raise VideoDecodeError(self.path, f"decord cannot decode frames ({first_line(error)})") from None
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise VideoDecodeError(self.path, f"decord gave frames of shape {frames.shape}, expected [T, H, W, 3]")
        return torch.from_numpy(np.ascontiguousarray(frames))

    def read_windows(self, indices: Sequence[int], window: int) -> Iterator[torch.Tensor]:
        """decord seeks to each window; its reader is opened again every :data:`DECORD_REOPEN_FRAMES` frames
        read, as decord 0.6 holds on to memory for every frame a reader decoded (about 0.6 MB a 720p frame)
        until the reader is freed."""
        read = 0
        for chunk in _windows(indices, window):
            if read >= DECORD_REOPEN_FRAMES:
                try:
                    self._reader = _open_decord(self._source)
                except Exception as error:  # gone or changed since it was opened
                    raise VideoDecodeError(self.path, f"decord cannot open it again ({first_line(error)})") from None
                read = 0
            yield self.read(chunk)
            read += len(chunk)

    def check_against_pyav(self) -> str | None:
        """Why decord's frames of this file cannot be trusted, or ``None`` when they agree with
        PyAV's (:func:`~vtok.data.decord_check.decord_disagreement`; this moves the reader)."""
        return decord_disagreement(self._reader, self._source, self.path)


class PyAVReader:
    """PyAV decoding from the start of the file up to the last wanted frame (the portable fallback).

    Reads the stream :func:`~vtok.data.pyav_frames.video_stream` picks, counts the frames a player
    presents, and gives them upright; its height and width are those of the first frame as shown.
    """

    def __init__(self, source: VideoSource, name: str | None = None) -> None:
        import av

        self.path = path = name or str(source)
        self._source = source
        try:
            with av.open(_openable(source)) as container:
                stream = video_stream(container)
                if stream is None:
                    raise VideoDecodeError(path, "it has no video stream")
                rate = stream.average_rate or stream.guessed_rate or Fraction(0)
                self.fps = float(rate)
                presented, counted, first, turns = presented_frames(stream), 0, None, 0
                for packet in container.demux(stream):  # the first frame; and the count, where the index has none
                    if first is None:
                        decoded = next(iter(packet.decode()), None)  # no RGB conversion
                        if decoded is not None:
                            first, turns = displayed_size(decoded), quarter_turns(decoded)
                    counted += bool(packet.size and not packet.is_discard)  # frames an edit list cuts are not shown
                    if first is not None and presented:
                        break
                self.num_frames = presented or counted
                self.pixel_aspect = pixel_aspect(stream, turns)
        except VideoDecodeError:
            raise
        except Exception as error:  # av.error.InvalidDataError and friends
            raise VideoDecodeError(path, f"PyAV cannot open it ({first_line(error)})") from None
        if self.num_frames == 0 or first is None:
            raise VideoDecodeError(path, "it holds no video frames")
        self.height, self.width = first

    def read(self, indices: Sequence[int]) -> torch.Tensor:
        import av

        wanted = sorted(set(indices))
        found: dict[int, np.ndarray] = {}
        try:
            with av.open(_openable(self._source)) as container:
                for position, frame in frames_in_order(container, video_stream(container), self.path):
                    if position in wanted:
                        found[position] = displayed_array(frame)
                    if position >= wanted[-1]:
                        break
        except FrameSizeChangeError:
            raise
        except Exception as error:
            raise VideoDecodeError(self.path, f"PyAV cannot decode frames ({first_line(error)})") from None
        missing = [i for i in wanted if i not in found]
        if missing:
            raise VideoDecodeError(self.path, f"frames {missing[:3]}... are not decodable")
        return torch.from_numpy(np.stack([found[i] for i in indices]))

    def read_windows(self, indices: Sequence[int], window: int) -> Iterator[torch.Tensor]:
        """One decoding pass from the start for indices in increasing order (each :meth:`read` decodes from
        the start: a window at a time would decode the file's beginning again for every window)."""
        if any(later < earlier for earlier, later in zip(indices, indices[1:])):
            for chunk in _windows(indices, window):
                yield self.read(chunk)
            return
        import av

        try:
            with av.open(_openable(self._source)) as container:
                frames = frames_in_order(container, video_stream(container), self.path)
                found: dict[int, np.ndarray] = {}
                position = -1
                for chunk in _windows(indices, window):
                    found = {i: frame for i, frame in found.items() if i >= chunk[0]}  # a frame the last window ended on
                    wanted = set(chunk)
                    while position < chunk[-1]:
                        position, frame = next(frames, (None, None))
                        if position is None:
                            missing = [i for i in chunk if i not in found]
                            raise VideoDecodeError(self.path, f"frames {missing[:3]}... are not decodable")
                        if position in wanted:
                            found[position] = displayed_array(frame)
                    yield torch.from_numpy(np.stack([found[i] for i in chunk]))
        except (FrameSizeChangeError, VideoDecodeError):
            raise
        except Exception as error:
            raise VideoDecodeError(self.path, f"PyAV cannot decode frames ({first_line(error)})") from None


def decord_available() -> bool:
    return importlib.util.find_spec("decord") is not None


# Per process: why decord cannot be trusted with a file (None: it can), so that a data-loader worker
# checks each file once, not once per sample. Keyed by path, size and modification time (shard
# members: name and size); forgotten wholesale when full.
_decord_verdicts: dict[tuple[str, int, int], str | None] = {}
_VERDICTS_KEPT = 100_000


def _decord_verdict(reader: DecordReader) -> str | None:
    if isinstance(reader._source, bytes):
        key = (reader.path, len(reader._source), 0)
    else:
        try:
            stat = os.stat(reader._source)
        except OSError:  # gone since decord opened it: check, without remembering
            return reader.check_against_pyav()
        key = (str(reader._source), stat.st_size, stat.st_mtime_ns)
    if key not in _decord_verdicts:
        if len(_decord_verdicts) >= _VERDICTS_KEPT:
            _decord_verdicts.clear()
        try:
            _decord_verdicts[key] = reader.check_against_pyav()
        except Exception as error:  # PyAV cannot open what decord reads: nothing to compare with
            log.debug("%s: decord's frames not checked (%s)", reader.path, first_line(error))
            _decord_verdicts[key] = None
    return _decord_verdicts[key]


class FallbackReader:
    """decord, with PyAV taking over a file (or a read) that decord fails on or reads wrong.

    decord mis-decodes some valid files (for instance, some narrow frame widths come back with
    four channels) and reads others wrong without an error (edit lists, B-frames in AVI or MPEG-4
    Part 2, see :mod:`vtok.data.decord_check`): its frames are checked against PyAV's once per file
    and process, and PyAV reads the files where they differ. A file is only unusable when neither
    decoder can read it.

    Args:
        source: the file, or its bytes.
        name: what errors call it.
        checked: decord is known to read this file right (``vtok prepare`` checked it and recorded
            ``reader: decord``): the check is not run again.

    Attributes:
        decord_mismatch: why PyAV, not decord, reads this file (``None``: decord reads it).
    """

    def __init__(self, source: VideoSource, name: str | None = None, checked: bool = False) -> None:
        self.path = name or str(source)
        self._source = source
        self.decord_mismatch: str | None = None
        self._primary: VideoReader | None = None
        self._pyav: PyAVReader | None = None  # opened once, where PyAV reads this file
        try:
            primary = DecordReader(source, self.path)
            self.decord_mismatch = None if checked else _decord_verdict(primary)
            if self.decord_mismatch is None:
                self._primary = probe = primary
            else:
                log.debug("%s: read with PyAV: %s", self.path, self.decord_mismatch)
        except VideoDecodeError as decord_error:
            self.decord_mismatch = decord_error.reason
        if self._primary is None:
            probe = self._pyav = self._open_pyav(self.decord_mismatch)
        self.num_frames, self.fps = probe.num_frames, probe.fps
        self.height, self.width, self.pixel_aspect = probe.height, probe.width, probe.pixel_aspect

    def _open_pyav(self, decord_failure: str | None) -> PyAVReader:
        """PyAV's reader of this file; an error says why decord did not read it either."""
        try:
            return PyAVReader(self._source, self.path)
        except FrameSizeChangeError:
            raise
        except VideoDecodeError as pyav_error:
            raise VideoDecodeError(self.path, f"{decord_failure}; {pyav_error.reason}") from None

    def read(self, indices: Sequence[int]) -> torch.Tensor:
        windows = self.read_windows(indices, max(len(indices), 1))  # one window: the fallback is read_windows'
        try:
            return next(windows)
        finally:
            windows.close()

    def read_windows(self, indices: Sequence[int], window: int) -> Iterator[torch.Tensor]:
        done, decord_failure = 0, None
        if self._primary is not None:
            try:
                for frames in self._primary.read_windows(indices, window):
                    yield frames
                    done += len(frames)
                return
            except VideoDecodeError as decord_error:  # PyAV reads the rest, in one pass
                decord_failure, self._primary = decord_error.reason, None
                self._pyav = self._open_pyav(decord_failure)
        assert self._pyav is not None  # set whenever decord is not the reader
        try:
            yield from self._pyav.read_windows(indices[done:], window)
        except FrameSizeChangeError:
            raise
        except VideoDecodeError as pyav_error:
            if decord_failure is None:
                raise
            raise VideoDecodeError(self.path, f"{decord_failure}; {pyav_error.reason}") from None


def open_video(path: str | Path, backend: ReaderBackend = "auto", verified: ReaderName | None = None) -> VideoReader:
    """Opens ``path`` with decord, PyAV, or (``"auto"``) decord checked against PyAV and with PyAV as
    the fallback (:class:`FallbackReader`), and PyAV alone for MPEG program and transport streams
    (``.ts``, ``.mpg``, ...) and AVI files, in which decord mis-seeks.

    Args:
        path: the file.
        backend: the reader.
        verified: with ``"auto"``, the reader ``vtok prepare`` found to read this file right (the
            manifest's ``reader``): the file is opened with it and not checked again.

    Raises:
        VideoDecodeError: the file is missing, empty, not a video, or undecodable.
    """
    path = Path(path)
    if not path.is_file():
        dangling = f": dangling symlink to {os.readlink(path)}" if path.is_symlink() else ""
        raise VideoDecodeError(path, f"{MISSING_FILE}{dangling}")
    if path.stat().st_size == 0:
        raise VideoDecodeError(path, "the file is empty (0 bytes)")
    return _open(path, str(path), backend, path.suffix, verified)


def open_video_bytes(
    data: bytes, name: str, backend: ReaderBackend = "auto", suffix: str = "", verified: ReaderName | None = None
) -> VideoReader:
    """Opens a whole encoded video held in memory (e.g. a WebDataset shard member), like :func:`open_video`.

    Args:
        data: the bytes of the file.
        name: what errors call it (e.g. ``shard.tar#key``).
        backend: see :func:`open_video`.
        suffix: the file type the bytes came as (``".mp4"``, ``".ts"``), which picks the reader.
        verified: see :func:`open_video`.

    Raises:
        VideoDecodeError: the bytes are empty, not a video, or undecodable.
    """
    if not data:
        raise VideoDecodeError(name, "the file is empty (0 bytes)")
    return _open(data, name, backend, suffix, verified)


def reader_name(reader: VideoReader) -> ReaderName:
    """Which decoder gives ``reader``'s frames: what ``vtok prepare`` records as ``reader``."""
    if isinstance(reader, FallbackReader):
        return "decord" if reader.decord_mismatch is None else "pyav"
    return "decord" if isinstance(reader, DecordReader) else "pyav"


def _open(source: VideoSource, name: str, backend: ReaderBackend, suffix: str, verified: ReaderName | None) -> VideoReader:
    if backend == "decord":
        if verified == "pyav":  # the check prepare ran found decord's frames wrong: never read them anyway
            raise VideoDecodeError(name, "vtok prepare found that decord reads it wrong (reader: pyav); use backend auto or pyav")
        return DecordReader(source, name)
    if backend == "auto" and decord_available() and suffix.lower() not in PYAV_SUFFIXES and verified != "pyav":
        return FallbackReader(source, name, checked=verified == "decord")
    return PyAVReader(source, name)
