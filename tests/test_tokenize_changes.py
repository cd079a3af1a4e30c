"""A rerun of `vtok tokenize` redoes a video whose file changed since its token file was written."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.test_tokenize import run
from vtok.data import write_video
from vtok.data.synthetic import synthetic_clip


def _two_videos(video_folder: Path, tmp_path: Path) -> tuple[Path, list[Path]]:
    """A folder holding copies of two of the sample videos, and their paths."""
    folder = tmp_path / "videos"
    folder.mkdir()
    for video in sorted(video_folder.glob("*.mp4"))[:2]:
        shutil.copy(video, folder)
    return folder, sorted(folder.glob("*.mp4"))


def test_a_video_changed_since_its_token_file_is_tokenized_again(
    fsq_run: dict[str, Path], video_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Only the token file's existence was checked: a video replaced at the same path kept its old tokens."""
    folder, (changed, kept) = _two_videos(video_folder, tmp_path)
    out = tmp_path / "tokens"
    run("tokenize", "--model", fsq_run["export"], "--data", folder, "--out", out)
    before = {e["path"]: e for e in map(json.loads, (out / "index.jsonl").read_text().splitlines())}
    capsys.readouterr()
    write_video(changed, synthetic_clip(29, 32, 32, seed=9), fps=24)  # longer: 29 frames, where there were 20
    run("tokenize", "--model", fsq_run["export"], "--data", folder, "--out", out)
    said = capsys.readouterr().out
    assert said.startswith("tokenized 1 videos, 1 of them again: changed since their token files (1 already done"), said
    after = {e["path"]: e for e in map(json.loads, (out / "index.jsonl").read_text().splitlines())}
    assert after[str(changed)]["frames"] == 29 and before[str(changed)]["frames"] == 17
    assert after[str(kept)] == before[str(kept)]
    os.utime(changed, ns=(0, 0))  # touched (restored from an archive, say): another modification time is a change too
    run("tokenize", "--model", fsq_run["export"], "--data", folder, "--out", out)
    assert "1 of them again" in capsys.readouterr().out


def test_a_video_changed_into_one_that_cannot_be_tokenized_loses_its_old_tokens(
    fsq_run: dict[str, Path], video_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Cut short since (a partial copy): it was skipped, yet its old token file stayed and the index listed
    it again among the earlier runs' videos, tokens of content no longer at that path."""
    folder, (cut, kept) = _two_videos(video_folder, tmp_path)
    out = tmp_path / "tokens"
    run("tokenize", "--model", fsq_run["export"], "--data", folder, "--out", out)
    cut.write_bytes(cut.read_bytes()[:3000])
    capsys.readouterr()
    run("tokenize", "--model", fsq_run["export"], "--data", folder, "--out", out)
    said = capsys.readouterr().out
    assert "tokenized 0 videos; 1 changed since and now skipped: their old token files removed (1 already done" in said, said
    listed = [json.loads(line)["path"] for line in (out / "index.jsonl").read_text().splitlines()]
    skipped = [json.loads(line)["path"] for line in (out / "skipped.jsonl").read_text().splitlines()]
    assert listed == [str(kept)] and skipped == [str(cut)]
    assert len(list((out / "tokens").glob("*.safetensors"))) == 1
