"""How every PyAV path of vtok sees a video: the same stream, the same frames, shown upright.

- The stream: FFmpeg's best video stream (``av_find_best_stream``, which decord uses too), never an
  attached picture (cover art, thumbnails); stream 0 may be a one-frame thumbnail.
- The frames: those a player presents. An mp4 trimmed by stream copy keeps the cut frames, marked
  discarded by its edit list; they are neither counted nor returned.
- Upright: a display matrix (phone videos) rotates the frames by quarter turns as players show
  them, so height and width are those of the displayed frames. Other angles and flips are ignored.
- Pixel shape: frames keep their stored pixels; :func:`pixel_aspect` says how wide a pixel is shown (an
  anamorphic DVD's 720x480 frames show as 640x480 or 854x480), and clips are cropped and resized to
  square pixels from it (:func:`vtok.data.transforms.crop_box`), so they are never squeezed.
- One size: a frame whose (displayed) size differs from the first one's raises
  :class:`~vtok.data.decode_errors.FrameSizeChangeError`, never a squeezed or mismatched frame.
- One thread per conversion: from PyAV 19 (the FFmpeg its wheels bundle) a conversion starts a pool of scaling
  threads by default, and a process forked after one (a data-loader worker) hangs at its own first
  conversion, even with threads set to 1 there. vtok never starts that pool: parallelism comes from
  the loader's workers, as with decord's one decoding thread.
"""

from __future__ import annotations

from collections.abc import Iterator

import av
import numpy as np
from PIL import Image

from vtok.data.decode_errors import FrameSizeChangeError
from vtok.data.transparency import over_white


def video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream | None:
    """The stream vtok reads: FFmpeg's best video stream, skipping attached pictures (``None``: none), unless another
    ranks higher by what FFmpeg weighed before it put the default disposition first (:func:`_rank`; decord's FFmpeg
    still picks that way): a mov muxer marks only its first track default, so a one-frame thumbnail or a small
    preview track written first was read instead of the video (and with decord reading the video, the readers
    disagreed and the thumbnail won)."""
    candidates = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not candidates:
        return None
    best = container.streams.best("video")
    if best is None or all(best.index != s.index for s in candidates):
        return max(candidates, key=lambda s: s.frames)  # FFmpeg picked a picture: the longest other stream
    highest = max(candidates, key=_rank)
    return highest if _rank(highest) > _rank(best) else best


def _rank(stream: av.video.stream.VideoStream) -> tuple[int, int, int]:
    """How FFmpeg before 5.1 ranks video streams: a few frames over one (a still), then bit rate, then frames."""
    return min(5, stream.frames), stream.bit_rate or 0, stream.frames


def presented_frames(stream: av.video.stream.VideoStream) -> int:
    """Frames a player presents, without decoding: from the container's index where it lists every
    frame (an mp4's), else the header's count; 0 when the container does not say."""
    entries = stream.index_entries
    if stream.frames and len(entries) == stream.frames:
        return sum(1 for entry in entries if not entry.is_discard)
    return int(stream.frames)


def quarter_turns(frame: av.VideoFrame) -> int:
    """Counter-clockwise quarter turns that show ``frame`` upright (0 without a display matrix)."""
    degrees = frame.rotation
    turns = round(degrees / 90)
    return turns % 4 if abs(degrees - 90 * turns) < 1 else 0


# Sample aspect ratios outside this range are header damage, not anamorphic video (DVD's are 8:9 to 32:27,
# HDV's 4:3, the widest common anamorphic 2:1): such a file is read with square pixels.
PIXEL_ASPECT_RANGE = (0.25, 4.0)


def pixel_aspect(stream: av.video.stream.VideoStream, turns: int = 0) -> float:
    """Width over height of one of ``stream``'s decoded pixels as a player shows it (1.0: square;
    8/9 for an NTSC DVD at 4:3, so its 720x480 frames show as 640x480). ``turns``: the counter-clockwise
    quarter turns the frames are shown with (an odd number swaps the pixel's sides). The container's ratio
    is taken before the codec's, as FFmpeg does; an unset or implausible one counts as square."""
    ratio = stream.sample_aspect_ratio or stream.codec_context.sample_aspect_ratio
    if not ratio or ratio <= 0:
        return 1.0
    aspect = float(ratio) if turns % 2 == 0 else 1.0 / float(ratio)
    low, high = PIXEL_ASPECT_RANGE
    return aspect if low <= aspect <= high else 1.0


def displayed_size(frame: av.VideoFrame) -> tuple[int, int]:
    """``(height, width)`` of the frame as shown."""
    return (frame.width, frame.height) if quarter_turns(frame) % 2 else (frame.height, frame.width)


def has_alpha(pixel_format: av.VideoFormat | None) -> bool:
    """Whether frames of ``pixel_format`` (``None``: unknown) carry an alpha channel (ProRes 4444, PNG or
    QuickTime Animation in MOV)."""
    return pixel_format is not None and any(component.is_alpha for component in pixel_format.components)


def displayed_array(frame: av.VideoFrame, size: tuple[int, int] | None = None) -> np.ndarray:
    """uint8 RGB ``[H, W, 3]`` of the frame as shown, optionally resized (area averaging) to ``size``
    (displayed ``(height, width)``). A frame with an alpha channel is laid over white, as images are (the
    colours under transparent pixels are often junk)."""
    turns = quarter_turns(frame)
    if has_alpha(frame.format):  # laid over white at full size, then resized: the colour under it never shows
        rgba = Image.fromarray(frame.to_ndarray(format="rgba", threads=1), "RGBA")
        frame = av.VideoFrame.from_ndarray(np.asarray(over_white(rgba)), format="rgb24")
    if size is None:
        array = frame.to_ndarray(format="rgb24", threads=1)
    else:  # swscale resizes the coded frame while converting: give it the coded orientation's size
        height, width = size[::-1] if turns % 2 else size
        array = frame.to_ndarray(width=width, height=height, format="rgb24", interpolation="AREA", threads=1)
    return np.ascontiguousarray(np.rot90(array, turns)) if turns else array


def check_size(first: tuple[int, int], frame: av.VideoFrame, index: int, name: str) -> None:
    """Raises :class:`~vtok.data.decode_errors.FrameSizeChangeError` when frame ``index`` is not
    shown at ``first``, the first frame's displayed ``(height, width)``."""
    size = displayed_size(frame)
    if size != first:
        raise FrameSizeChangeError(
            name, f"frame size changes from {first[0]}x{first[1]} to {size[0]}x{size[1]} (HxW) at frame {index}"
        )


def frames_in_order(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, name: str
) -> Iterator[tuple[int, av.VideoFrame]]:
    """``(index, frame)`` of ``stream`` from the first frame on, in presentation order.

    Raises:
        FrameSizeChangeError: a frame's displayed size differs from the first frame's.
    """
    first: tuple[int, int] | None = None
    for index, frame in enumerate(container.decode(stream)):
        first = first or displayed_size(frame)
        check_size(first, frame, index, name)
        yield index, frame
