"""A picture listed as a video (a PNG called .mp4, a JPEG called .mov) is skipped in training and evaluation
as what it is, as ``vtok prepare`` says: it was "too short: ... the video has 1", which sent people looking
for a truncated video."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from vtok.data import ClipSpec, VideoClipDataset, write_video
from vtok.data.errors import UnusableFileError
from vtok.data.synthetic import synthetic_clip


def test_a_picture_listed_as_a_video_is_skipped_as_a_still_image(tmp_path: Path) -> None:
    picture = Image.fromarray(synthetic_clip(1, 40, 64, seed=3)[0].numpy())
    picture.save(tmp_path / "still.mp4", format="PNG")
    picture.save(tmp_path / "photo.mov", format="JPEG")
    write_video(tmp_path / "one_frame.mp4", synthetic_clip(1, 40, 64, seed=3))  # a video, however short
    files = [str(tmp_path / name) for name in ("still.mp4", "photo.mov", "one_frame.mp4")]
    dataset = VideoClipDataset(files, ClipSpec(9), size=(32, 32), train=False)
    reasons = []
    for index in range(len(files)):
        with pytest.raises(UnusableFileError) as caught:
            dataset.load(index, None)
        reasons.append(caught.value.reason)
    assert reasons[:2] == [
        "a still image (png) named as a video; images train through data.image_path",
        "a still image (mjpeg) named as a video; images train through data.image_path",
    ]
    assert reasons[2].startswith("too short: a clip of 9 frames"), reasons[2]
