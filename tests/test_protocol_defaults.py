"""A model that records no training clip (saved with ``save_pretrained`` from Python): the commands say which
clip shape they take instead of resizing every video to 256x256 without a word."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.test_tokenize import run
from vtok import VideoAutoencoder


def test_a_model_without_a_recorded_clip_names_the_size_it_takes(
    video_folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = VideoAutoencoder(block_out_channels=[8, 16], latent_channels=3, layers_per_block=1, bottleneck="fsq", fsq_levels=[5, 5, 5])
    model.save_pretrained(tmp_path / "from-python")
    video = sorted(video_folder.glob("*.mp4"))[0]
    with caplog.at_level(logging.WARNING, logger="vtok"):
        run("tokenize", "--model", tmp_path / "from-python", "--data", video, "--out", tmp_path / "default-size")
    said = [r.getMessage() for r in caplog.records if "records no training clip" in r.getMessage()]
    assert said == ["the model records no training clip (saved with save_pretrained, or exported by an older vtok): "
                    "taking --size 256; give --size to choose"], caplog.text  # whole videos: no frame count was guessed
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vtok"):
        run("tokenize", "--model", tmp_path / "from-python", "--data", video, "--out", tmp_path / "given", "--size", "32")
    assert "records no training clip" not in caplog.text
