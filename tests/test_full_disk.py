"""A disk that refuses a command's writes (full, over quota, read-only, a file size limit): one line, and nothing
recorded about the data that a later run, with room, would keep."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers import small_frame_export, tiny_fit_args
from vtok.cli import main
from vtok.commands.prepare import main as prepare
from vtok.data import write_sample_clips
from vtok.data.manifest import read_jsonl

ROOT = Path(__file__).resolve().parents[1]

_UNDER_A_FILE_SIZE_LIMIT = textwrap.dedent(
    """
    import resource, signal, sys
    from vtok.cli import main
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG, as ENOSPC would) instead of killing
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    main(sys.argv[2:])
    """
)


def test_reencoded_copies_the_disk_cannot_take_stop_the_run_and_are_done_by_the_next(tmp_path: Path) -> None:
    """Each copy that did not fit was recorded in rejected.jsonl as 're-encoding failed (No space left on device)' with
    its file's version, and the run exited 0: the rerun, with room, said '3 already done' and never took the videos."""
    write_sample_clips(tmp_path / "clips", count=3, frames=20, height=40, width=64, seed=1)
    command = ["prepare", "--data", str(tmp_path / "clips"), "--out", str(tmp_path / "out"), "--reencode", "--workers", "0",
               "--no-progress"]  # fmt: skip
    full = subprocess.run([sys.executable, "-c", _UNDER_A_FILE_SIZE_LIMIT, "4000", *command], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert full.returncode == 1, full.stderr[-2000:]
    [line] = [line for line in full.stderr.splitlines() if line.startswith("vtok prepare: error:")]
    assert line.startswith("vtok prepare: error: File too large (") and "run the same command again" in line, line
    assert "Traceback" not in full.stderr
    assert read_jsonl(tmp_path / "out" / "rejected.jsonl") == []
    summary = prepare(command[1:])
    assert (summary.known, summary.accepted, summary.rejected) == (0, 3, [])


def test_a_checkpoint_the_disk_cannot_take_stops_the_fit_with_one_line(tmp_path: Path) -> None:
    """The checkpoint writer's own message was good, but it came at the end of three chained tracebacks (95 lines)."""
    command = tiny_fit_args(tmp_path, 1, "--trainer.logger", "false")
    full = subprocess.run([sys.executable, "-c", _UNDER_A_FILE_SIZE_LIMIT, "200000", *command], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert full.returncode == 1, full.stderr[-2000:]
    assert "vtok: training stopped: could not write the checkpoint" in full.stderr, full.stderr[-2000:]
    assert "Traceback" not in full.stderr, full.stderr[-3000:]
    assert not list((tmp_path / "run" / "checkpoints").glob("*.ckpt")), "and no partial checkpoint is left"


def test_an_evaluation_the_disk_cannot_take_leaves_the_earlier_one_whole(tmp_path: Path) -> None:
    """metrics.json was rewritten in place and cut at the disk's last block (not JSON, and its list of the earlier
    run's pictures lost), beside the earlier run's per_video.csv and report.md."""
    write_sample_clips(tmp_path / "clips", count=3, frames=9, height=32, width=32)
    model = small_frame_export(tmp_path / "export")
    command = ["evaluate", "--model", str(model), "--data", str(tmp_path / "clips"), "--out", str(tmp_path / "out"),
               "--device", "cpu", "--frames", "9", "--size", "32", "--workers", "0", "--pictures", "0"]  # fmt: skip
    main(command)
    earlier = {path.name: path.read_bytes() for path in (tmp_path / "out").iterdir() if path.is_file()}
    limit = str(len(earlier["metrics.json"]) // 2)
    full = subprocess.run([sys.executable, "-c", _UNDER_A_FILE_SIZE_LIMIT, limit, *command, "--max-videos", "1"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert full.returncode == 1 and "vtok evaluate: error: File too large" in full.stderr, full.stderr[-2000:]
    assert {path.name: path.read_bytes() for path in (tmp_path / "out").iterdir() if path.is_file()} == earlier


def test_a_resume_does_not_go_back_past_a_periodic_save_that_last_ckpt_missed(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Lightning writes step=N.ckpt, then last.ckpt: a disk that filled between them left last.ckpt at the save before,
    and --ckpt_path last went on from there without a word (the interval trained again, step=N.ckpt written over)."""
    config = tmp_path / "every2.yaml"
    config.write_text(
        "trainer:\n  callbacks:\n    - class_path: lightning.pytorch.callbacks.ModelCheckpoint\n      init_args:\n"
        "        filename: '{step}'\n        every_n_train_steps: 2\n        save_last: true\n        save_top_k: -1\n"
    )
    main(tiny_fit_args(tmp_path, 4, "--trainer.logger", "false", config=config))
    checkpoints = tmp_path / "run" / "checkpoints"
    shutil.copy(checkpoints / "step=2.ckpt", checkpoints / "last.ckpt")  # as the save at step 4 left it
    written = (checkpoints / "step=4.ckpt").stat().st_mtime
    os.utime(checkpoints / "last.ckpt", (written - 60, written - 60))
    with pytest.raises(SystemExit) as stopped:
        main(tiny_fit_args(tmp_path, 6, "--trainer.logger", "false", "--ckpt_path", "last", config=config))
    assert stopped.value.code == 2
    assert f"is at step 2, but {checkpoints / 'step=4.ckpt'}, written after it, is at step 4" in capsys.readouterr().err
    os.utime(checkpoints / "step=4.ckpt", (written - 120, written - 120))  # written before last.ckpt: as every save leaves it
    main(tiny_fit_args(tmp_path, 6, "--trainer.logger", "false", "--ckpt_path", "last", config=config))


def test_an_export_the_disk_cannot_take_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    """safetensors' writer raises its own SafetensorError (no OSError), '... I/O error: File too large (os error 27)':
    it ended vtok export in a traceback."""
    main(tiny_fit_args(tmp_path, 1, "--trainer.logger", "false"))
    command = ["export", "--ckpt", str(tmp_path / "run" / "checkpoints" / "last.ckpt"), "--out", str(tmp_path / "export")]
    full = subprocess.run([sys.executable, "-c", _UNDER_A_FILE_SIZE_LIMIT, "3000", *command], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert full.returncode == 1 and "Traceback" not in full.stderr, full.stderr[-2000:]
    assert full.stderr.strip().splitlines()[-1].startswith("vtok export: error: File too large: raise the file size limit")
    assert not (tmp_path / "export").exists()
