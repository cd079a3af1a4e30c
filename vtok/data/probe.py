"""Verifying one video the way training reads it: the frames it reports must really decode.

A file whose tail is missing (a copy cut short, a crashed recorder) can keep a header that
promises every frame: decord reports them all and fails, or stalls, on the last ones. The probe
opens the file with the training reader, decodes the first, middle and last reported frames, and
when the last fails, bisects for the last frame that decodes, each probe with a fresh reader as
training opens one per sample. That assumes the decodable frames are a prefix, which is what a
cut tail leaves. Damage between the checked frames is only found by decoding every frame
(``every_frame``, :func:`first_undecodable_frame`); the frames before the first bad one are kept.
"""

from __future__ import annotations

import logging

import av

from vtok.data.errors import UnusableFileError
from vtok.data.manifest import VideoInfo
from vtok.data.readers import ReaderBackend, VideoDecodeError, VideoReader, open_video

log = logging.getLogger(__name__)


def _decodes(reader: VideoReader, index: int) -> bool:
    try:
        reader.read([index])
    except VideoDecodeError:
        return False
    return True


def usable_frames(path: str, reported: int, backend: ReaderBackend = "auto") -> int:
    """How many leading frames decode, given that the first does and frame ``reported - 1`` does not.

    Args:
        path: the video.
        reported: the frame count the reader reports.
        backend: the reader, as in :func:`~vtok.data.readers.open_video`.
    """
    good, bad = 1, reported  # frame good - 1 decodes, frame bad - 1 does not
    while bad - good > 1:
        middle = (good + bad) // 2
        try:
            decodes = _decodes(open_video(path, backend), middle - 1)
        except VideoDecodeError:
            decodes = False
        good, bad = (middle, bad) if decodes else (good, middle)
    return good


def first_undecodable_frame(path: str, frames: int, backend: ReaderBackend = "auto", chunk: int = 32) -> int | None:
    """The index of the first of ``frames`` frames that does not decode, reading them all in order.

    Reads ``chunk`` consecutive frames at a time with one reader (sequential reads cost one decode
    per frame); inside a chunk that fails, each frame is read with a fresh reader, as training opens
    one per sample, so a decoder left confused by the failure does not blame good frames.

    Args:
        path: the video.
        frames: how many leading frames to check.
        backend: the reader, as in :func:`~vtok.data.readers.open_video`.
        chunk: frames per read.

    Returns:
        The first bad frame's index, or ``None`` when every frame decodes.
    """
    reader = open_video(path, backend)
    for start in range(0, frames, chunk):
        indices = range(start, min(start + chunk, frames))
        try:
            reader.read(list(indices))
            continue
        except VideoDecodeError:
            pass
        for index in indices:
            try:
                if not _decodes(open_video(path, backend), index):
                    return index
            except VideoDecodeError:
                return index
        reader = open_video(path, backend)  # each frame decodes alone: go on with a fresh reader
    return None


def stream_facts(path: str) -> tuple[str | None, int | None]:
    """The codec's name and the longest run of frames between keyframes (``None`` where unknown).

    PyAV demuxes the packets without decoding them; a damaged tail ends the count early.
    """
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
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
    except (av.error.FFmpegError, IndexError):
        return None, None
    bounds = [*keyframes, count]
    return codec, max((b - a for a, b in zip(bounds, bounds[1:])), default=None)


def probe_video(path: str, backend: ReaderBackend = "auto", min_frames: int = 1, every_frame: bool = False) -> VideoInfo:
    """Verifies that ``path`` gives frames and describes it; the usable count replaces a header's lie.

    Args:
        path: the video file.
        backend: the reader training uses, as in :func:`~vtok.data.readers.open_video`.
        min_frames: fewer decodable frames than this rejects the file (e.g. one clip's span).
        every_frame: decode every frame, not only the first, middle and last; the frames before the
            first that does not decode are kept (one pass of decoding: slower, and complete).

    Raises:
        UnusableFileError: the file cannot be opened, its first or middle frame does not decode,
            or too few frames decode.
    """
    reader = open_video(path, backend)
    reported = frames = reader.num_frames
    try:
        reader.read([0])
    except VideoDecodeError as error:
        raise UnusableFileError(path, f"the first frame does not decode ({error.reason})") from None
    if every_frame:  # one pass finds a cut tail as well as damage inside: no sampled checks needed
        first_bad = first_undecodable_frame(path, reported, backend)
        if first_bad is not None:
            frames = first_bad
            log.info("%s: frame %d of %d does not decode; the %d before it are kept", path, first_bad, reported, frames)
    else:
        if not _decodes(reader, reported - 1):
            frames = usable_frames(path, reported, backend)
            log.info("%s: the header reports %d frames, %d decode", path, reported, frames)
        if not _decodes(reader, frames // 2):
            raise UnusableFileError(path, f"frame {frames // 2} (the middle one) does not decode")
    if frames < min_frames:
        raise UnusableFileError(path, f"too short: {frames} frames decode, at least {min_frames} wanted (--min-frames)")
    codec, keyframe_interval = stream_facts(path)
    fps = reader.fps if reader.fps > 0 else None
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
    )
