"""Does decord read this file right? Its random access, checked against PyAV decoding in order.

decord 0.6 finds frames through its own index of timestamps and gets some files wrong without an
error: AVI and MPEG-4 Part 2 ("xvid") with B-frames give frames of another stretch after a seek; an
mp4 trimmed by stream copy (an edit list) is counted with the frames its edit list discards, and
read shifted; a second video stream may be read instead of the one FFmpeg calls best; a
quarter-turn display matrix gives 4-channel frames; an open GOP (x264's ``open-gop``, x265's default)
makes every seek past its first such keyframe land a few frames short. Reads that start at frame 0 and
go forwards are right in all these, so the check compares decord's frame count with the container's
index, decord's keyframe positions with those the packets' presentation times give (the whole file),
then reads where decord has to seek (at and just after its first two keyframes past frame 0, see
:func:`check_indices`), each frame alone and then as a short batch, and compares them with the
frames PyAV decodes in order from the start (shown upright, see :mod:`vtok.data.pyav_frames`).

Cost, once per file: PyAV reads every packet of the file once without decoding it (as decord's own
index did when it opened the file), and decodes the frames up to the last one checked, at most
:data:`CHECK_SPAN`, converting only the compared ones to RGB; decord decodes about two frames per
read. A file with a keyframe every 8 frames (``vtok prepare --reencode``) costs about 20 decoded
frames; one with a keyframe every 250 frames (x264's default) up to 300, about three random clip
reads; one with no keyframe within the span only its count and first frame. What happens past the
span, and between keyframes decord places right, is not decoded and compared.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np

from vtok.data.decode_errors import FrameSizeChangeError
from vtok.data.pyav_frames import displayed_array, frames_in_order, presented_frames, video_stream

CHECK_SPAN = 300  # frames from the start within which frames are compared
# The check's version, recorded beside a "decord reads it right" verdict in manifests: 2 compares keyframe
# positions too (open GOPs), so the verdicts of version 1 are not trusted and the file is checked again.
CHECK_VERSION = 2
TOLERANCE = 6.0  # mean |difference| per pixel (0-255): the two RGB conversions differ by 0-2, wrong frames by tens


def check_indices(frames: int, keyframes: Sequence[int]) -> tuple[list[int], list[int]]:
    """The frames read alone (the first, and each of decord's first two keyframes past it within the
    first :data:`CHECK_SPAN` frames with the frame after it: where a seek lands) and those read as one batch
    (the first such keyframe and the frame after it, as a clip that starts there is read)."""
    last = min(frames, CHECK_SPAN) - 1
    keys = [key for key in keyframes if 0 < key <= last][:2]
    pairs = [sorted({key, min(key + 1, last)}) for key in keys]
    return sorted({0, *(index for pair in pairs for index in pair)}), pairs[0] if pairs else []


def decord_disagreement(decord_reader: Any, source: str | Path | bytes, name: str) -> str | None:
    """Why decord's frames of a file cannot be trusted, in words, or ``None`` where they agree with PyAV's.

    Frames that PyAV cannot decode (or a file it cannot open), or that decord cannot read, are not
    compared: a read that fails in decord goes to PyAV anyway (:class:`~vtok.data.readers.FallbackReader`).

    Args:
        decord_reader: the file's open ``decord.VideoReader`` (its position changes).
        source: the same file, or its bytes, for PyAV.
        name: what the reasons call the file.
    """
    frames = len(decord_reader)
    try:
        container = _open(source)
    except av.error.FFmpegError:
        return None  # nothing to compare with
    with container:
        stream = video_stream(container)
        if stream is None:
            return "PyAV finds no video stream apart from pictures"
        presented = presented_frames(stream)
        if presented and presented != frames:
            return f"decord counts {frames} frames where PyAV presents {presented} (an edit list?)"
        misplaced = _misplaced_keyframes(container, stream, list(decord_reader.get_key_indices()))
    if misplaced:
        return misplaced
    with _open(source) as container:  # afresh: the demux above read it to the end
        stream = video_stream(container)
        alone, batch = check_indices(frames, decord_reader.get_key_indices())
        truth: dict[int, np.ndarray] = {}
        try:
            for index, frame in frames_in_order(container, stream, name):
                if index in alone:
                    truth[index] = displayed_array(frame)
                if index >= alone[-1]:
                    break
        except FrameSizeChangeError as error:
            return error.reason
        except av.error.FFmpegError:
            pass  # a damaged stretch: compare the frames before it
    alone = [index for index in reversed(alone) if index in truth]  # backwards, so that each read seeks
    for how, indices in (("alone", alone), ("in a batch", [index for index in batch if index in truth])):
        for index, array in zip(indices, _read(decord_reader, indices, batched=how != "alone")):
            if array.shape != truth[index].shape:
                return f"decord gives frame {index} ({how}) as {array.shape}, PyAV as {truth[index].shape}"
            difference = float(np.abs(array.astype(np.int16) - truth[index]).mean())
            if difference > TOLERANCE:
                return f"decord's frame {index} ({how}) is not PyAV's (mean difference {difference:.0f}/255)"
    return None


def _open(source: str | Path | bytes) -> av.container.InputContainer:
    return av.open(io.BytesIO(source) if isinstance(source, bytes) else str(source))


def _misplaced_keyframes(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, decord_keys: list[int]
) -> str | None:
    """Why decord's keyframe positions (``decord_keys``, the frames its seeks start decoding at) are not where
    the video shows its keyframes, or ``None`` where they are, or where the packets do not say.

    decord numbers keyframes in decoding order. A keyframe with leading pictures (an open GOP: frames
    shown before it but decoded after it, x264's ``open-gop``, x265's default) is shown later than
    decoded, so every seek past it lands a few frames off, or in another stretch: clips of other frames,
    anywhere in the file (the frame comparison below sees only two keyframes, in the first frames). The
    keyframes' shown positions are the ranks of their packets' presentation times, so this reads every
    packet of the file once, decoding none (decord's own index read them all when it opened the file).
    Where demuxing stops early (a damaged tail), the keyframes before that point are compared."""
    times: list[tuple[int, bool]] = []
    try:
        for packet in container.demux(stream):
            if packet.size and not packet.is_discard:
                if packet.pts is None:
                    return None  # an AVI's, say: no presentation times to rank
                times.append((packet.pts, packet.is_keyframe))
    except av.error.FFmpegError:
        pass  # a damaged stretch: compare the keyframes before it
    rank = {pts: index for index, pts in enumerate(sorted(pts for pts, _ in times))}
    shown = sorted(rank[pts] for pts, key in times if key)
    decord = [key for key in decord_keys if key < len(times)]
    if decord == shown:
        return None
    first = next((i for i, (a, b) in enumerate(zip(decord, shown)) if a != b), min(len(decord), len(shown)))
    return (
        f"decord seeks to keyframes at frames {decord[first:first + 3]} that the video shows at {shown[first:first + 3]} "
        "(leading pictures of an open GOP, or packets damaged there): its clips there would be other frames"
    )


def _read(decord_reader: Any, indices: list[int], batched: bool) -> list[np.ndarray]:
    """decord's frames at ``indices``, one read each or one batch; none where decord fails (such reads
    go to PyAV anyway)."""
    try:
        if batched:
            return list(decord_reader.get_batch(indices).asnumpy()) if indices else []
        return [decord_reader[index].asnumpy() for index in indices]
    except Exception:  # decord's DECORDError and friends
        return []
