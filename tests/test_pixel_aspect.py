"""Anamorphic video: pixels that a player shows wider or narrower than tall (DVD, HDV, some broadcast).

Frames keep their stored pixels; the readers say how wide a pixel is shown and clips are cropped and
resized to square pixels from that, so that a circle stays a circle. The ground truth is the stored
frames resized whole: the sources here are stored 64x48 and shown 128x48, the output's shape exactly.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import pytest
import torch

from vtok.data import ClipSpec, synthetic_clip
from vtok.data.dataset import video_clip_with_info
from vtok.data.small_sources import recorded_size
from vtok.data.probe import probe_video
from vtok.data.readers import open_video
from vtok.data.reencode import reencode_video, scaled_size
from vtok.data.transforms import crop_box, place_frames

FRAMES, HEIGHT, WIDTH = 12, 48, 64


def _write(path: Path, aspect: Fraction, rotation: int | None = None) -> Path:
    """64x48 frames whose pixels are shown ``aspect`` wide (the stream's sample aspect ratio)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.codec_context.sample_aspect_ratio = aspect
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for array in synthetic_clip(FRAMES, HEIGHT, WIDTH, seed=3).numpy():
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def wide_pixels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(tmp_path_factory.mktemp("anamorphic") / "sar_2_1.mp4", Fraction(2, 1))


@pytest.mark.parametrize("backend", ["decord", "pyav", "auto"])
def test_clips_of_an_anamorphic_video_hold_the_whole_picture_with_square_pixels(wide_pixels: Path, backend: str) -> None:
    reader = open_video(wide_pixels, backend)
    assert reader.pixel_aspect == 2.0 and (reader.height, reader.width) == (HEIGHT, WIDTH)
    video, info = video_clip_with_info(reader, ClipSpec(FRAMES), (24, 64), None)
    assert info.source_size == (HEIGHT, 2 * WIDTH)  # as shown
    # the output's 8:3 is the shown frame's: the crop is the whole stored frame (squeezed pixels would
    # have given a 64x24 band, a third of the picture cut away and everything twice as narrow)
    whole = place_frames(open_video(wide_pixels, backend).read(range(FRAMES)), (24, 64), ((0, 0, HEIGHT, WIDTH), False))
    assert torch.equal(video, whole)


def test_a_crop_box_spans_what_shows_with_the_outputs_shape() -> None:
    assert crop_box(48, 64, 24, 64, pixel_aspect=2.0) == (0, 0, 48, 64)
    assert crop_box(48, 64, 24, 64) == (12, 0, 24, 64)  # square pixels: a band
    # 720x480 NTSC DVD at 4:3 (pixels 8/9 wide, shown 640x480) into a square output: 480 shown wide = 540 stored
    assert crop_box(480, 720, 256, 256, pixel_aspect=8 / 9) == (0, 90, 480, 540)


def test_a_turned_anamorphic_video_swaps_its_pixels_sides(tmp_path: Path) -> None:
    path = _write(tmp_path / "portrait.mp4", Fraction(2, 1), rotation=90)
    for backend in ("pyav", "decord", "auto"):  # decord turned the frames but not the pixels (found by a review)
        reader = open_video(path, backend)
        assert (reader.height, reader.width, reader.pixel_aspect) == (WIDTH, HEIGHT, 0.5), backend  # shown 64x24


def test_an_implausible_aspect_ratio_counts_as_square(tmp_path: Path) -> None:
    path = _write(tmp_path / "damaged_header.mp4", Fraction(40, 1))
    assert open_video(path, "pyav").pixel_aspect == open_video(path, "decord").pixel_aspect == 1.0


def test_prepare_records_the_pixel_aspect_and_the_manifests_size_is_the_shown_one(
    wide_pixels: Path, carphone: Path, video_folder: Path
) -> None:
    record = probe_video(str(wide_pixels)).to_record()
    assert record["pixel_aspect"] == 2.0 and (record["height"], record["width"]) == (HEIGHT, WIDTH)
    assert recorded_size(record) == (HEIGHT, 2 * WIDTH)
    # the sample video is QCIF with pixels 128:117 wide: 176x144 stored, shown 193x144 (about 4:3)
    qcif = probe_video(str(carphone)).to_record()
    assert qcif["pixel_aspect"] == round(128 / 117, 6) and recorded_size(qcif) == (144, 193)
    square = probe_video(str(next(video_folder.glob("*.mp4")))).to_record()
    assert "pixel_aspect" not in square  # square pixels: nothing recorded


@pytest.mark.parametrize("short_side, shown", [(None, (HEIGHT, 2 * WIDTH)), (24, (24, WIDTH))])
def test_a_reencoded_copy_has_square_pixels_at_the_shown_shape(
    wide_pixels: Path, tmp_path: Path, short_side: int | None, shown: tuple[int, int]
) -> None:
    copy = reencode_video(str(wide_pixels), tmp_path / "copy.mp4", FRAMES, 24.0, short_side=short_side).path
    reader = open_video(copy, "pyav")
    assert (reader.height, reader.width, reader.pixel_aspect) == (*shown, 1.0)
    # the copy's clips show what the source's show (up to the encoder's loss)
    size = (24, 64)
    source = video_clip_with_info(open_video(wide_pixels, "pyav"), ClipSpec(FRAMES), size, None)[0]
    again = video_clip_with_info(reader, ClipSpec(FRAMES), size, None)[0]
    assert float((source - again).abs().mean()) < 0.1  # 0.04-0.06 (resamplers differ); a squeezed copy: 0.18-0.2


@pytest.mark.parametrize(
    "source, short_side, expected",
    [((64, 96), 33, (32, 48)), ((96, 64), 33, (48, 32)), ((51, 67), None, (50, 66)), ((1080, 1920), 360, (360, 640))],
)
def test_a_reencoded_size_keeps_the_aspect_ratio_and_never_enlarges(
    source: tuple[int, int], short_side: int | None, expected: tuple[int, int]
) -> None:
    # both sides rounded to even on their own gave 32x50 for 64x96 at 33 (4 % wider), 52x68 for 51x67 (enlarged)
    assert scaled_size(*source, short_side) == expected
