"""Ctrl-C stops a vtok subcommand with one line saying what it kept, not a traceback."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_tokenize import run
from vtok.commands.folder_lock import folder_lock


def test_ctrl_c_during_tokenize_is_one_line_and_a_rerun_goes_on(
    fsq_run: dict[str, Path], video_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """SIGINT (what Ctrl-C sends) printed a KeyboardInterrupt traceback from wherever the run was. Here it
    comes while the run waits for the index lock (held by this test, as by another run into the same --out),
    so it is inside the command, its token files written."""
    two_videos, out = tmp_path / "videos", tmp_path / "tokens"
    two_videos.mkdir()
    for video in sorted(video_folder.glob("*.mp4"))[:2]:
        (two_videos / video.name).symlink_to(video)
    command = [sys.executable, "-m", "vtok.cli", "tokenize", "--model", str(fsq_run["export"]), "--data", str(two_videos),
               "--out", str(out), "--workers", "0"]  # fmt: skip
    with folder_lock(out, ".index.lock"):
        process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 300
        while len(list((out / "tokens").glob("*.safetensors"))) < 2:
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1]
            time.sleep(0.1)
        time.sleep(1.0)  # on to the lock
        process.send_signal(signal.SIGINT)
        errors = process.communicate(timeout=60)[1]
    assert process.returncode == 130, errors
    assert "Traceback" not in errors and "KeyboardInterrupt" not in errors, errors
    assert errors.strip().splitlines()[-1] == (
        "vtok tokenize: interrupted; the token files it wrote are kept: run the same command again to go on"
    )
    run("tokenize", "--model", fsq_run["export"], "--data", two_videos, "--out", out)
    assert "tokenized 0 videos (2 already done" in capsys.readouterr().out
    assert len((out / "index.jsonl").read_text().splitlines()) == 2
