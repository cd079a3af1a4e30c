"""Frames at their times: telling a variable frame rate video from a constant rate one, and choosing the frame
shown at each tick of a constant rate (what ``vtok prepare --reencode`` writes).

Phones lower the frame rate in the dark (30 to 10 fps within one file), and screen recorders write a frame only
when the screen changes. Taken frame after frame at the average rate, such a video runs its fast stretches slow
and its slow ones fast, and ``data.fps`` strides over it give clips with uneven steps in time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

import av
import numpy as np

from vtok.data.pyav_frames import video_stream

T = TypeVar("T")
MAX_GAP = 1.0  # seconds: a longer step between two frames is a cut (a clock jump, files joined), not a held frame


def variable_rate(path: str) -> bool:
    """Whether the frames of ``path``'s video stream are unevenly spaced in time: a step between two of its
    packets' presentation times (sorted, no decoding) strays from their median step by more than half of it.
    A stream whose packets carry no presentation times counts as constant: its frames are taken one for one
    (sorting them first: AVI and B-frames give them in decoding order)."""
    with av.open(path) as container:
        stream = video_stream(container)
        if stream is None:
            return False
        times = sorted(packet.pts for packet in container.demux(stream) if packet.pts is not None and packet.size)
    if len(times) < 3:
        return False
    steps = np.diff(np.asarray(times, dtype=np.float64))
    median = float(np.median(steps))
    return median > 0 and bool(np.any(np.abs(steps - median) > median / 2))


def at_constant_rate(frames: Iterable[tuple[float | None, T]], fps: float) -> Iterator[T]:
    """For each tick of ``fps`` from the first frame's time, the frame of ``frames`` (``(time in seconds, frame)``
    in presentation order) whose time is nearest: frames are repeated where the source slowed and dropped where
    it sped up, so that they stay evenly spaced in time. Frames that are evenly spaced already (to within half a
    tick) each come out once. A frame with no time, one timed before the frame it follows, or one more than
    :data:`MAX_GAP` after it, takes the tick after it (the times after it move with it).

    The same object is given again for a repeated frame; a frame no tick falls nearest to is never given.
    """
    tick = 1.0 / fps
    shift = 0.0  # taken off every time after a cut
    previous: tuple[float, T] | None = None
    ticks = 0  # ticks given so far, counted from the first frame's time
    start = 0.0
    for time, frame in frames:
        time = None if time is None else time - shift
        if previous is None:
            start = time = time if time is not None else 0.0
        elif time is None or time <= previous[0] or time - previous[0] > MAX_GAP:
            cut = previous[0] + tick
            shift += 0.0 if time is None else time - cut
            time = cut
        if previous is not None:
            midpoint = (previous[0] + time) / 2 - start
            while ticks * tick < midpoint:
                yield previous[1]
                ticks += 1
        previous = (time, frame)
    if previous is not None:
        yield previous[1]
        ticks += 1
        while ticks * tick < previous[0] - start + tick / 2:  # a last frame shown longer than one tick
            yield previous[1]
            ticks += 1
