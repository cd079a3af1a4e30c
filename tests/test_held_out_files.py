"""The files validation and ``vtok test`` score: each once, as ``vtok evaluate`` scores them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vtok.data.datamodule import VideoDataModule


def test_a_video_a_manifest_lists_twice_or_spells_two_ways_is_scored_once(
    video_folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """data.val_path and data.test_path were scored line by line: a video listed three times weighed three times in
    val/psnr and test/psnr, where vtok evaluate (and a data.val_fraction split) took it once."""
    first, second = sorted(video_folder.glob("*.mp4"))[:2]
    (tmp_path / "linked").symlink_to(video_folder)
    lines = [str(first), str(first), str(tmp_path / "linked" / first.name), str(second)]
    manifest = tmp_path / "held_out.jsonl"
    manifest.write_text("".join(json.dumps({"path": line}) + "\n" for line in lines))
    settings = {"path": str(video_folder), "num_frames": 9, "size": 32, "batch_size": 1, "num_workers": 0}
    with caplog.at_level("INFO"):
        validation = VideoDataModule(**settings, val_path=str(manifest))
        validation.setup("validate")
        test = VideoDataModule(**settings, test_path=str(manifest))
        test.setup("test")
    for module, split in ((validation, "val"), (test, "test")):
        assert module.datasets[split].files == [str(first), str(second)]
    assert caplog.text.count("2 paths lead to a video listed before them: each video is taken once") == 2
