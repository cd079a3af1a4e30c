"""Verifying one video the way training reads it: the frames it reports must really decode.

A file whose tail is missing (a copy cut short, a crashed recorder) can keep a header that
promises every frame: decord reports them all and fails, or stalls, on the last ones. The probe
opens the file with the training reader, decodes the first, middle and last reported frames, and
when the last fails, bisects for the last frame that decodes, each probe with a fresh reader as
training opens one per sample. That assumes the decodable frames are a prefix, which is what a
cut tail leaves. Damage between the checked frames is only found by decoding every frame
(``every_frame``: one strict pass with PyAV, :mod:`vtok.data.strict_decode`, which also finds the
damage FFmpeg notices but would conceal); the frames before the first bad one are kept.

The training reader is decord checked against PyAV (:mod:`vtok.data.decord_check`): files decord
reads wrong are read with PyAV, so the frames counted here are PyAV's; with ``backend="decord"``
they are rejected instead. A file whose frame size changes part-way is rejected.
"""

from __future__ import annotations

import logging

import av

from vtok.data.decord_check import CHECK_VERSION
from vtok.data.errors import UnusableFileError
from vtok.data.manifest import VideoInfo
from vtok.data.pyav_frames import video_stream
from vtok.data.readers import (
    DecordReader,
    FallbackReader,
    FrameSizeChangeError,
    ReaderBackend,
    VideoDecodeError,
    VideoReader,
    open_video,
    reader_name,
)
from vtok.data.scan_pool import still_working
from vtok.data.strict_decode import strict_pass

log = logging.getLogger(__name__)


class TooFewFramesError(UnusableFileError):
    """A video that decodes, but with fewer frames than ``--min-frames``: a later run with a lower
    ``--min-frames`` accepts it (``vtok prepare`` records ``frames`` with the rejection for that)."""

    def __init__(self, path: str, frames: int, min_frames: int) -> None:
        super().__init__(path, f"too short: {frames} frames decode, at least {min_frames} wanted (--min-frames)")
        self.frames = frames


def _decodes(reader: VideoReader, index: int) -> bool:
    """Whether frame ``index`` decodes; a frame size change is not a bad frame but a bad file: it raises."""
    try:
        reader.read([index])
    except FrameSizeChangeError:
        raise
    except VideoDecodeError:
        return False
    return True


def usable_frames(path: str, reported: int, backend: ReaderBackend = "auto") -> int:
    """How many leading frames decode, given that the first does and frame ``reported - 1`` does not.

    Args:
        path: the video.
        reported: the frame count the reader reports.
        backend: the reader, as in :func:`~vtok.data.readers.open_video`.

    Raises:
        FrameSizeChangeError: the frame size changes part-way.
    """
    good, bad = 1, reported  # frame good - 1 decodes, frame bad - 1 does not
    while bad - good > 1:
        still_working()  # each step may decode from the file's start (vtok prepare's deadline)
        middle = (good + bad) // 2
        try:
            reader = open_video(path, backend)
        except FrameSizeChangeError:
            raise
        except VideoDecodeError:
            reader = None
        decodes = reader is not None and _decodes(reader, middle - 1)
        good, bad = (middle, bad) if decodes else (good, middle)
    return good


STILL_IMAGE_CODECS = frozenset(
    {"png", "apng", "mjpeg", "jpeg2000", "jpegls", "jpegxl", "webp", "gif", "bmp", "tiff", "qoi", "targa", "sgi", "exr", "ppm", "pam"}
)  # one frame in one of these is a picture FFmpeg's image demuxer opened, whatever the file's suffix


def _still_image(codec: str) -> str:
    return f"a still image ({codec}) named as a video; images train through data.image_path"


def still_image_reason(path: str) -> str | None:
    """Why a file of one frame is no video, where FFmpeg opened it as a picture (a PNG or JPEG listed as a
    video): said instead of "too short"; ``None`` for a one-frame video."""
    codec, _ = stream_facts(path)
    return _still_image(codec) if codec in STILL_IMAGE_CODECS else None


def stream_facts(path: str) -> tuple[str | None, int | None]:
    """The codec's name and the longest run of frames between keyframes (``None`` where unknown).

    PyAV demuxes the packets of the stream training reads without decoding them; a damaged tail
    ends the count early.
    """
    try:
        with av.open(path) as container:
            stream = video_stream(container)
            if stream is None:
                return None, None
            codec = stream.codec_context.name
            keyframes, count = [], 0
            try:
                for packet in container.demux(stream):
                    if packet.size:  # the final empty packet only flushes the decoder
                        if packet.is_keyframe:
                            keyframes.append(count)
                        count += 1
            except av.error.FFmpegError:
                pass
    except av.error.FFmpegError:
        return None, None
    bounds = [*keyframes, count]
    return codec, max((b - a for a, b in zip(bounds, bounds[1:])), default=None)


def _open_checked(path: str, backend: ReaderBackend) -> VideoReader:
    """The training reader; a file decord reads wrong is said so (``auto``: PyAV reads it) or rejected
    (``decord``: nothing would read it right)."""
    reader = open_video(path, backend)
    if isinstance(reader, DecordReader):
        reason = reader.check_against_pyav()
        if reason is not None:
            raise UnusableFileError(path, f"decord reads it wrong: {reason}; the auto or pyav backend reads it right")
    elif isinstance(reader, FallbackReader) and reader.decord_mismatch:
        log.info("%s: read with PyAV, not decord: %s", path, reader.decord_mismatch)
    return reader


def probe_video(path: str, backend: ReaderBackend = "auto", min_frames: int = 1, every_frame: bool = False) -> VideoInfo:
    """Verifies that ``path`` gives frames and describes it; the usable count replaces a header's lie.

    Args:
        path: the video file.
        backend: the reader training uses, as in :func:`~vtok.data.readers.open_video`.
        min_frames: fewer decodable frames than this rejects the file (e.g. one clip's span).
        every_frame: also decode every frame, strictly (:mod:`vtok.data.strict_decode`); the frames
            before the first damaged one are kept (one more pass of decoding: slower, and finds the
            damage the decoder notices, not only where the sampled frames fall).

    Raises:
        UnusableFileError: the file cannot be opened, its first or middle frame does not decode,
            too few frames decode, its frame size changes, it is a still image named as a video, or
            decord (``backend="decord"``) reads it wrong.
    """
    reader = _open_checked(path, backend)
    reported = frames = reader.num_frames
    try:
        reader.read([0])
    except FrameSizeChangeError:
        raise
    except VideoDecodeError as error:
        raise UnusableFileError(path, f"the first frame does not decode ({error.reason})") from None
    if every_frame:
        checked = strict_pass(path)
        if checked.clean == 0:
            raise UnusableFileError(path, f"the first frame is damaged ({checked.damage})")
        if checked.clean < reported:
            frames = checked.clean
            if checked.damage:
                log.info(
                    "%s: frame %d of %d is damaged (%s); the %d before it are kept",
                    path, frames, reported, checked.damage, frames,
                )  # fmt: skip
            else:
                log.info("%s: the reader reports %d frames, PyAV decodes %d", path, reported, frames)
    if not _decodes(reader, frames - 1):
        frames = usable_frames(path, frames, backend)
        log.info("%s: the header reports %d frames, %d decode", path, reported, frames)
    if not _decodes(reader, frames // 2):
        raise UnusableFileError(path, f"frame {frames // 2} (the middle one) does not decode")
    codec, keyframe_interval = stream_facts(path)
    if frames == 1 and codec in STILL_IMAGE_CODECS:  # what it is, before how short it is
        raise UnusableFileError(path, _still_image(codec))
    if frames < min_frames:
        raise TooFewFramesError(path, frames, min_frames)
    fps = reader.fps if reader.fps > 0 else None
    verdict = reader_name(reader) if isinstance(reader, (DecordReader, FallbackReader)) else None  # decord was tried
    return VideoInfo(
        path=path,
        frames=frames,
        fps=reader.fps,
        width=reader.width,
        height=reader.height,
        duration=round(frames / fps, 3) if fps else None,
        codec=codec,
        keyframe_interval=keyframe_interval,
        source=path,
        reported_frames=reported if frames < reported else None,
        pixel_aspect=round(reader.pixel_aspect, 6) if reader.pixel_aspect != 1.0 else None,
        reader=verdict,
        decord_check=CHECK_VERSION if verdict == "decord" else None,
    )
