"""Finding the damage FFmpeg would hide: one strict pass over every frame of a video, with PyAV.

By default FFmpeg's decoders conceal corrupted data: a damaged stretch decodes without an error,
as frames with smeared or misplaced blocks, until the next keyframe. With ``err_detect=explode``
the decoder raises at the first packet it finds corrupt instead. Not every corruption can be
detected (bytes that happen to parse as valid data decode as a valid, wrong picture), so this finds
most damage, not all of it.

The pass decodes on slice threads only, so an error surfaces at the packet that carries it. The
first damaged frame is the earliest, in presentation order, of the frames whose packets had not
been decoded when the error came: B-frames shown before a damaged P-frame but decoded after it
refer to it. When packets carry no timestamps, the frames returned before the error are kept.
"""

from __future__ import annotations

from typing import NamedTuple

import av

from vtok.data.decode_errors import VideoDecodeError
from vtok.data.pyav_frames import check_size, displayed_size, video_stream
from vtok.data.scan_pool import still_working
from vtok.error_text import first_line


class StrictPass(NamedTuple):
    """What a strict pass found.

    Args:
        clean: the leading frames that decode without an error (all of them when ``damage`` is None).
        damage: the decoder's error, in words, or ``None``.
    """

    clean: int
    damage: str | None


def strict_pass(path: str) -> StrictPass:
    """Decodes every frame of ``path`` in order with ``err_detect=explode`` (the stream and frame
    order of :mod:`vtok.data.pyav_frames`).

    Raises:
        VideoDecodeError: PyAV cannot open the file or finds no video stream.
        FrameSizeChangeError: the frame size changes part-way.
    """
    try:
        container = av.open(path)
    except av.error.FFmpegError as error:
        raise VideoDecodeError(path, f"PyAV cannot open it ({first_line(error)})") from None
    with container:
        stream = video_stream(container)
        if stream is None:
            raise VideoDecodeError(path, "it has no video stream")
        stream.codec_context.options = {"err_detect": "explode"}
        stream.thread_type = "SLICE"
        packets = container.demux(stream)
        sent: list[int | None] = []  # timestamps of the shown frames' packets decoded so far, in decode order
        shown = 0  # frames the decoder returned
        first: tuple[int, int] | None = None
        try:
            for packet in packets:
                if packet.size and not packet.is_discard:  # an edit list's discarded frames are not shown
                    sent.append(packet.pts)
                for frame in packet.decode():  # the last, empty packet flushes the decoder
                    still_working()  # decoding every frame of a long video is not a stall (vtok prepare's deadline)
                    first = first or displayed_size(frame)
                    check_size(first, frame, shown, path)
                    shown += 1
        except av.error.FFmpegError as error:
            damage = error.strerror or first_line(error)
        else:
            return StrictPass(shown, None)
        # The packet that failed (the last one sent) and those after it hold the damaged frame and
        # every frame that refers to it; the frames shown before the earliest of those are clean.
        later = sent[-1:]
        try:
            later += [p.pts for p in packets if p.size and not p.is_discard]
        except av.error.FFmpegError:
            pass  # the rest is unreadable too
        if not later or None in later or None in sent:
            return StrictPass(shown, damage)  # no timestamps to tell: keep what was returned
        return StrictPass(max(shown, sum(1 for pts in sent[:-1] if pts < min(later))), damage)
