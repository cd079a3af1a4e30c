"""Two CPU ranks launched by accelerate (gloo): the README's command, the adversarial objective on,
no find_unused_parameters, identical weights, disjoint data shares, one checkpoint per save, resume."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from lightning.fabric.plugins.environments.lightning import find_free_network_port

from tests.helpers import TINY_DATA, TINY_MODEL, csv_logger, metric_column, tiny_fit_args
from vtok.data.synthetic import write_sample_clips
from vtok.training.rank_states import take_rank_state

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def readme_launch_prefix() -> list[str]:
    """The single-node CPU launch command exactly as the README shows it (up to `train.py`)."""
    match = re.search(r"^(accelerate launch --multi_gpu --num_processes 2 train\.py) fit", README, re.MULTILINE)
    assert match, "README.md must show the two-process accelerate command the tests run"
    return match.group(1).split()


FILE_DATA = [
    "--data.synthetic_videos", "10", "--data.val_fraction", "0.2",  # 8 training clips: 4 per rank
    "--data.horizontal_flip", "true",
]  # fmt: skip


def _launcher() -> list[str]:
    command = readme_launch_prefix()
    command[0] = shutil.which("accelerate") or command[0]
    return command


def _launch_options() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "RANK", "WORLD_SIZE", "LOCAL_"))}
    env["PYTHONPATH"] = str(ROOT)
    return {"cwd": ROOT, "env": env, "capture_output": True, "text": True, "timeout": 600}


def _fit_arguments(tmp_path: Path, steps: int, *extra: str, data: list[str] = FILE_DATA) -> list[str]:
    return [
        "fit", *TINY_MODEL, *TINY_DATA, *data, "--data.synthetic_dir", str(tmp_path / "clips"),
        "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.max_steps", str(steps),
        "--trainer.logger", "false", "--trainer.enable_progress_bar", "false", "--trainer.limit_val_batches", "0",
        "--model.adversarial.discriminator", "patch3d", "--model.adversarial.channels", "8",
        "--model.adversarial.start_step", "1", "--model.ema_decay", "0.9",
        "--trainer.callbacks+", "ModelCheckpoint", "--trainer.callbacks.every_n_train_steps", "2",
        "--trainer.callbacks.save_top_k", "-1", "--trainer.callbacks.filename", "{step}",
        "--trainer.callbacks+", "tests.helpers.RecordSamples", "--trainer.callbacks.folder", str(tmp_path / "record"),
        *extra,
    ]  # fmt: skip


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (the ranks start sessions of their own, out of reach of a process group)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _run(command: list[str]) -> subprocess.CompletedProcess:
    """``subprocess.run`` with :func:`_launch_options`; a launch still running at the timeout has every
    process of it print its threads' stacks (vtok's SIGUSR2) before it is killed, so a hang says where."""
    options = _launch_options()
    timeout = options.pop("timeout")
    options.pop("capture_output")
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **options) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            below = _descendants(process.pid)
            for pid in below:
                os.kill(pid, signal.SIGUSR2)
            time.sleep(5)
            for pid in [process.pid, *below]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            pytest.fail(f"the launch hung for {timeout} s; the stacks of its processes:\n{stderr[-30000:]}")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _launch(tmp_path: Path, steps: int, *extra: str, data: list[str] = FILE_DATA) -> subprocess.CompletedProcess:
    return _run([*_launcher(), *_fit_arguments(tmp_path, steps, *extra, data=data)])


def _records(tmp_path: Path, ranks: int = 2) -> list[dict]:
    return [json.loads((tmp_path / "record" / f"rank{r}.json").read_text()) for r in range(ranks)]


def test_two_ranks_train_in_step_on_disjoint_shares_and_resume(tmp_path: Path) -> None:
    counts = tmp_path / "counts"
    result = _launch(tmp_path, 4, "--trainer.callbacks+", "tests.helpers.CountBroadcasts", "--trainer.callbacks.folder", str(counts))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert "find_unused_parameters=True" not in result.stderr
    # Lightning's training loop broadcast rank 0's SIGTERM flag at every batch and read it on the host (each batch
    # waited for the GPU to finish the one before); vtok's StopOnSignal owns the signal and turns that off
    assert [json.loads((counts / f"rank{rank}.json").read_text()) for rank in (0, 1)] == [{"batches": 4, "broadcasts": 0}] * 2
    first, second = _records(tmp_path)
    assert first["world"] == second["world"] == 2
    assert first["weights"] == second["weights"], "both ranks end with identical weights"
    assert first["rows"][0]["rng"] != second["rows"][0]["rng"], "each rank draws its own noise"
    for epoch in {row["epoch"] for row in first["rows"]}:
        shares = [{i for row in record["rows"] if row["epoch"] == epoch for i in row["index"]} for record in (first, second)]
        assert not shares[0] & shares[1], f"epoch {epoch}: ranks shared clips"
        assert shares[0] | shares[1] == set(range(8)), f"epoch {epoch}: clips missed"
    checkpoints = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert checkpoints == ["last.ckpt", "step=2.ckpt", "step=4.ckpt"], "one file per save, not one per rank"
    # each rank moves its LeCAM anchors on its own batches (DDP broadcasts no buffers here): each rank's are saved,
    # and each rank takes its own back (only rank 0's were saved, so rank 1 resumed from rank 0's)
    saved = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    anchors = [state["buffers"]["adversarial.ema_real"] for state in saved["vtok_rank_states"]["states"]]
    assert len(anchors) == 2 and anchors[0] != anchors[1] and saved["state_dict"]["adversarial.ema_real"] == anchors[0]
    take_rank_state(saved, 1, 2)
    assert saved["state_dict"]["adversarial.ema_real"] == anchors[1]

    resumed = _launch(tmp_path, 6, "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    first, second = _records(tmp_path)
    assert [row["step"] for row in first["rows"]] == [5, 6], "the resumed run continues from its step"
    assert first["weights"] == second["weights"]
    # ... and trains from it: DDP's broadcast at the wrap and the first forward had replaced it by rank 0's
    assert [record["rows"][0]["anchor"] for record in (first, second)] == [float(anchors[0]), float(anchors[1])]
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 6


def test_a_signal_to_one_rank_stops_both_at_the_same_batch_with_one_checkpoint(tmp_path: Path) -> None:
    """SIGTERM reaches rank 1 alone after its 5th batch; the ranks agree every 4 batches, so both
    stop after the 8th, write one checkpoint together and exit with 0."""
    signal_rank_1 = ["--trainer.callbacks+", "tests.helpers.SignalOneRank", "--trainer.callbacks.rank", "1",
                     "--trainer.callbacks.at_batch", "5"]  # fmt: skip
    result = _launch(tmp_path, 100, *signal_rank_1)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    first, second = _records(tmp_path)
    assert [row["step"] for row in first["rows"]] == [row["step"] for row in second["rows"]] == list(range(1, 9))
    assert first["weights"] == second["weights"]
    signalled = list((tmp_path / "run" / "checkpoints").glob("last-signal-step=*.ckpt"))
    assert [p.name for p in signalled] == ["last-signal-step=8.ckpt"]


def test_a_signal_to_one_rank_during_validation_stops_both_there(tmp_path: Path) -> None:
    """SIGTERM reaches rank 1 alone at the first validation's 2nd batch (5 a rank); the ranks agree every 4 batches
    there too, so both stop after the 4th with one checkpoint of the step the validation followed, and exit with 0."""
    validation = tmp_path / "validations"
    flags = ["--data.synthetic_videos", "40", "--data.val_fraction", "0.5", "--trainer.limit_val_batches", "1.0",
             "--trainer.num_sanity_val_steps", "0", "--trainer.check_val_every_n_epoch", "null",
             "--trainer.val_check_interval", "2", "--trainer.callbacks+", "tests.helpers.SignalInValidation",
             "--trainer.callbacks.folder", str(validation), "--trainer.callbacks.rank", "1",
             "--trainer.callbacks.at_batch", "2"]  # fmt: skip
    result = _launch(tmp_path, 100, *flags)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert [json.loads((validation / f"rank{r}.json").read_text()) for r in (0, 1)] == [[4], [4]]
    signalled = list((tmp_path / "run" / "checkpoints").glob("last-signal-step=*.ckpt"))
    assert [p.name for p in signalled] == ["last-signal-step=2.ckpt"]


@pytest.mark.parametrize("command", ["validate", "test"])
def test_a_signal_to_one_rank_ends_a_two_rank_scoring_on_both_with_no_scores(tmp_path: Path, command: str) -> None:
    """Lightning's SIGTERM handler broadcasts from rank 0 inside the handler: a signal to rank 1 alone during vtok
    validate or test left the ranks in crossed collectives, hung. Now they agree every 4 batches, as in a fit:
    both stop after the 4th of their 5 (test: 10) batches, say there are no scores, and exit with 143."""
    from vtok.cli import main

    held_out = ["--data.synthetic_videos", "40", "--data.val_fraction", "0.5"]  # 20 files: 5 batches of 2 a rank
    main(tiny_fit_args(tmp_path, 1, "--trainer.logger", "false", "--trainer.limit_val_batches", "0", *held_out))
    run, validation = tmp_path / "run", tmp_path / "validations"
    signal_rank_1 = ["--trainer.callbacks+", "tests.helpers.SignalInValidation", "--trainer.callbacks.folder",
                     str(validation), "--trainer.callbacks.rank", "1", "--trainer.callbacks.at_batch", "2"]  # fmt: skip
    scored = ["--trainer.limit_val_batches", "1.0"] if command == "validate" else ["--data.test_path", str(tmp_path / "clips")]
    result = _run([*_launcher(), command, "--config", str(run / "config.yaml"), "--ckpt_path", "last",
                   "--trainer.logger", "false", *scored, *signal_rank_1])  # fmt: skip
    assert result.returncode != 0 and result.stderr.count(f"{command} stopped by SIGTERM before its end: no scores") == 2
    assert [json.loads((validation / f"rank{r}.json").read_text()) for r in (0, 1)] == [[4], [4]]


def test_a_loss_non_finite_on_one_rank_skips_the_step_on_every_rank(tmp_path: Path) -> None:
    """The gradients are all-reduced, the loss is not: rank 1 alone skipped its step, the weights split and
    the ranks' collectives stopped matching (rank 1 hung at the end)."""
    inf_on_rank_1 = ["--trainer.callbacks+", "tests.helpers.NonFiniteLossOnOneRank", "--trainer.callbacks.rank", "1",
                     "--trainer.callbacks.at_batch", "1"]  # fmt: skip
    result = _launch(tmp_path, 3, *inf_on_rank_1)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert result.stderr.count("step 1: non-finite loss or gradient, step skipped") == 2, "said by both ranks"
    first, second = _records(tmp_path)
    assert len(first["rows"]) == len(second["rows"]) == 4, "4 batches for 3 steps on both ranks"
    assert first["weights"] == second["weights"]


def test_lightnings_own_launch_of_two_devices_writes_one_run_folder(tmp_path: Path) -> None:
    """trainer.devices 2 without a launcher: Lightning runs the command again for rank 1, which claimed a
    runs/<date-time> of its own and left it empty (a plain `vtok fit` on an 8-GPU machine left 7). Rank 1 reads
    the command line as rank 0 rewrote it (configs first): with a config listing callbacks, as every preset and
    run config.yaml does, it got other callbacks than rank 0, and the ranks' collectives crossed at the save."""
    config = tmp_path / "callbacks.yaml"
    config.write_text(yaml.safe_dump({"trainer": {"callbacks": [
        {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": {"save_last": True, "every_n_train_steps": 1}},
        {"class_path": "vtok.training.ReconstructionPictures", "init_args": {"every_n_steps": 1}},
    ]}}))  # fmt: skip
    command = [sys.executable, str(ROOT / "train.py"), "fit", "--config", str(config), *TINY_MODEL, *TINY_DATA, "--data.synthetic_dir",
               str(tmp_path / "clips"), "--trainer.accelerator", "cpu", "--trainer.devices", "2",
               "--trainer.strategy", "ddp", "--trainer.max_steps", "2", "--trainer.logger", "false",
               "--trainer.enable_progress_bar", "false", "--trainer.limit_val_batches", "0"]  # fmt: skip
    result = subprocess.run(command, **{**_launch_options(), "cwd": tmp_path})
    assert result.returncode == 0, result.stderr[-4000:]
    folders = list((tmp_path / "runs").iterdir())
    assert len(folders) == 1 and (folders[0] / "checkpoints" / "last.ckpt").is_file(), folders


def test_a_run_goes_on_with_another_number_of_ranks_training_each_clip_of_the_epoch_once(tmp_path: Path) -> None:
    from vtok.cli import main

    data = [*FILE_DATA, "--data.batch_size", "1"]  # 8 training clips: an epoch is 4 steps on 2 ranks, 8 on one
    checkpoints = tmp_path / "run" / "checkpoints"
    hops = []
    first = _launch(tmp_path, 1, data=data)  # 2 ranks: 2 clips; last.ckpt written as training ends
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-4000:]
    hops += _records(tmp_path)
    main(_fit_arguments(tmp_path, 2, "--ckpt_path", str(checkpoints / "last.ckpt"), data=data))  # one process: step 2
    hops += _records(tmp_path, ranks=1)
    # 2 ranks again, from the checkpoint written at step 2's end (Lightning completes that batch as it
    # restores): the epoch's 5 clips left, 3 per rank with one repeat as padding, steps 3 to 5
    last = _launch(tmp_path, 5, "--ckpt_path", str(checkpoints / "step=2.ckpt"), data=data)
    assert last.returncode == 0, last.stdout[-2000:] + last.stderr[-4000:]
    hops += _records(tmp_path)
    assert [[row["step"] for row in hop["rows"]] for hop in hops] == [[1], [1], [2], [3, 4, 5], [3, 4, 5]]
    assert {row["epoch"] for hop in hops for row in hop["rows"]} == {0}
    clips = [index for hop in hops for row in hop["rows"] for index in row["index"]]
    assert set(clips) == set(range(8)) and len(clips) == 9, "each clip of the epoch once (and one padding repeat)"
    assert hops[-1]["weights"] == hops[-2]["weights"]
    assert hops[-1]["rows"][0]["rng"] != hops[-2]["rows"][0]["rng"], "the added rank seeds its own noise"


def _fit_as_torchrun_rank(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, steps: int, restart_count: int, arguments: list[str] | None = None
) -> list[int]:
    """A tiny ``vtok fit`` (``arguments``, default: with no ``--ckpt_path``), run in this process as the one
    rank of a torchrun launch (a world of one, the environment torchrun gives it); returns the steps it trained."""
    from vtok.cli import main

    torchrun = {
        "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0", "GROUP_RANK": "0",
        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(find_free_network_port()),
        "TORCHELASTIC_RUN_ID": "job42", "TORCHELASTIC_RESTART_COUNT": str(restart_count),
        "OMP_NUM_THREADS": str(torch.get_num_threads()),  # else Lightning's DDP sets it for the rest of the session
    }  # fmt: skip
    for name, value in torchrun.items():
        monkeypatch.setenv(name, value)
    folder = tmp_path / "record"
    record = ["--trainer.callbacks+", "tests.helpers.RecordSamples", "--trainer.callbacks.folder", str(folder)]
    try:  # the default config's ModelCheckpoint has save_last: true
        fit = arguments or tiny_fit_args(tmp_path, steps, "--trainer.logger", "false", "--trainer.limit_val_batches", "0")
        main([*fit, *record])
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()  # Lightning leaves the DDP group to an atexit hook
    return [row["step"] for row in json.loads((folder / "rank0.json").read_text())["rows"]]


def _newest_last_checkpoint_step(tmp_path: Path) -> int:
    """The global step of the newest ``last*.ckpt``: the one ``ckpt_path="last"`` resumes from (a fresh
    start into a folder that already holds ``last.ckpt`` writes ``last-v1.ckpt`` beside it)."""
    newest = max((tmp_path / "run" / "checkpoints").glob("last*.ckpt"), key=lambda path: path.stat().st_mtime)
    return torch.load(newest, weights_only=True)["global_step"]


def test_a_restarted_launch_resumes_from_its_last_checkpoint_and_a_first_start_does_not(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert _fit_as_torchrun_rank(monkeypatch, tmp_path, 2, restart_count=0) == [1, 2]
    assert _newest_last_checkpoint_step(tmp_path) == 2
    with pytest.raises(SystemExit) as exit_info:  # a new job into the old run's folder neither resumes nor mixes runs
        _fit_as_torchrun_rank(monkeypatch, tmp_path, 3, restart_count=0)
    assert exit_info.value.code == 2 and "already holds a run's checkpoints" in capsys.readouterr().err
    assert _newest_last_checkpoint_step(tmp_path) == 2
    checkpoints = tmp_path / "run" / "checkpoints"
    shutil.copy(checkpoints / "last.ckpt", tmp_path / "step2.ckpt")
    restart = _fit_as_torchrun_rank(monkeypatch, tmp_path, 5, restart_count=1)
    assert restart == [3, 4, 5], "a restarted launch continues from its newest last checkpoint"
    assert _newest_last_checkpoint_step(tmp_path) == 5

    # a job started as a resume (or fine-tuning) from a named checkpoint, restarted: from where it stopped
    from_named = tiny_fit_args(tmp_path, 6, "--trainer.logger", "false", "--trainer.limit_val_batches", "0",
                               "--ckpt_path", str(tmp_path / "step2.ckpt"))  # fmt: skip
    assert _fit_as_torchrun_rank(monkeypatch, tmp_path, 6, restart_count=2, arguments=from_named) == [6]
    # SLURM's auto-requeue checkpoint, newer than the last periodic save: that one
    shutil.copy(checkpoints / "last.ckpt", tmp_path / "run" / "hpc_ckpt_1.ckpt")  # step 6
    shutil.copy(tmp_path / "step2.ckpt", checkpoints / "last.ckpt")
    os.utime(checkpoints / "last.ckpt", (1e9, 1e9))
    assert _fit_as_torchrun_rank(monkeypatch, tmp_path, 7, restart_count=3) == [7]


def test_a_launch_rolled_back_and_restarted_before_its_first_save_goes_on_from_the_checkpoint_it_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert _fit_as_torchrun_rank(monkeypatch, tmp_path, 2, restart_count=0) == [1, 2]
    shutil.copy(tmp_path / "run" / "checkpoints" / "last.ckpt", tmp_path / "step2.ckpt")
    assert _fit_as_torchrun_rank(monkeypatch, tmp_path, 5, restart_count=1) == [3, 4, 5]  # last.ckpt: step 5
    rollback = ["--trainer.logger", "false", "--trainer.limit_val_batches", "0", "--ckpt_path", str(tmp_path / "step2.ckpt")]
    # a new job goes back to step 2 and is stopped before it saves anything (here: it saves nothing)
    unsaved = tiny_fit_args(tmp_path, 4, *rollback, "--trainer.enable_checkpointing", "false")
    assert _fit_as_torchrun_rank(monkeypatch, tmp_path, 4, restart_count=0, arguments=unsaved) == [3, 4]
    assert _newest_last_checkpoint_step(tmp_path) == 5, "the abandoned run's last.ckpt is still there"
    restarted = _fit_as_torchrun_rank(monkeypatch, tmp_path, 4, restart_count=1, arguments=tiny_fit_args(tmp_path, 4, *rollback))
    assert restarted == [3, 4], "the restart goes on from step 2, as its job asked, not from the abandoned step 5"
    # once the rolled-back run has saved, its restarts go on from its own newest checkpoint
    later = tiny_fit_args(tmp_path, 6, *rollback)
    assert _fit_as_torchrun_rank(monkeypatch, tmp_path, 6, restart_count=2, arguments=later) == [5, 6]


def test_two_ranks_with_two_workers_read_each_shard_sample_once_per_epoch_and_resume_losing_none(tmp_path: Path) -> None:
    from vtok.cli import main

    write_sample_clips(tmp_path / "videos", count=16, frames=20, height=40, width=64, seed=1)
    main(["prepare", "--data", str(tmp_path / "videos"), "--out", str(tmp_path / "prepared"), "--shards",
          "--shard-samples", "2", "--workers", "0", "--no-progress"])  # fmt: skip
    assert len(list((tmp_path / "prepared" / "shards").glob("*.tar"))) == 8
    data = ["--data.shards", str(tmp_path / "prepared" / "shards"), "--data.num_workers", "2", "--data.batch_size", "2"]
    # 2 ranks x 2 workers x 2 shards of 2 samples, batch 2: 4 steps per epoch, every sample in it. Stopped
    # after step 3 with step 4's batch already fetched (Lightning reads ahead of a stream), each rank at
    # its own place in its own shards.
    stopped = _launch(tmp_path, 3, data=data)
    assert stopped.returncode == 0, stopped.stdout[-2000:] + stopped.stderr[-4000:]
    before = _records(tmp_path)
    resumed = _launch(tmp_path, 9, "--ckpt_path", "last", data=data)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-4000:]
    after = _records(tmp_path)
    assert after[0]["weights"] == after[1]["weights"]

    first_epoch = [key for record in before for row in record["rows"] for key in row["index"]]
    finishing = min(row["epoch"] for row in after[0]["rows"])  # the interrupted epoch, as the resumed run numbers it
    first_epoch += [key for record in after for row in record["rows"] if row["epoch"] == finishing for key in row["index"]]
    assert len(first_epoch) == len(set(first_epoch)) == 16, "the interrupted epoch, finished after resuming, trains each sample once"
    full = [key for record in after for row in record["rows"] if row["epoch"] == finishing + 1 for key in row["index"]]
    assert len(full) == len(set(full)) == 16, "an epoch reads each sample once, on exactly one rank and worker"


def test_data_too_small_for_the_ranks_is_one_line_per_rank_not_a_traceback(tmp_path: Path) -> None:
    # 8 training clips on 2 ranks: 4 each, fewer than one batch of 5 (checked inside Lightning's launch)
    result = _launch(tmp_path, 2, "--data.batch_size", "5")
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("vtok: error:")]
    assert len(lines) == 2 and "fewer than one batch of data.batch_size=5 per rank on 2 rank(s)" in lines[0], result.stderr[-4000:]
    assert all(line.endswith("Lower data.batch_size or add data") for line in lines), "one line each, not interleaved"
    ranks_traceback = [line for line in result.stderr.splitlines() if "/lightning/" in line or "/vtok/" in line]
    assert not ranks_traceback, result.stderr[-4000:]  # the launcher's own report of a failed child stays


def test_two_ranks_score_each_validation_clip_once_and_count_an_unusable_file_once(
    tmp_path: Path, video_folder: Path
) -> None:
    from vtok.cli import main

    train, val = tmp_path / "train", tmp_path / "val"
    train.mkdir(), val.mkdir()
    for index, video in enumerate(sorted(video_folder.glob("*.mp4"))):
        (train / video.name).symlink_to(video)
        if index < 3:  # 3 clips on 2 ranks: one rank's share is padded with a clip the other scores
            (val / video.name).symlink_to(video)
    (train / "0bad.mp4").write_text("not a video")  # listed first: every rank meets it when probing the data
    run = tmp_path / "run"
    result = _launch(tmp_path, 4, *csv_logger(tmp_path), "--trainer.limit_val_batches", "1.0",
                     "--trainer.check_val_every_n_epoch", "2", "--data.val_batch_size", "1",
                     data=["--data.path", str(train), "--data.val_path", str(val)])  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert metric_column(run, "data/unusable_files") == [1.0, 1.0], "one file, however many ranks met it"
    two_ranks = metric_column(run, "val/psnr")
    assert len(two_ranks) == 1

    saved = run / "config.yaml"  # in the run folder, whatever the logger
    config = yaml.safe_load(saved.read_text())
    assert config["trainer"]["devices"] != 2 and config["trainer"]["strategy"] != "ddp", "the launcher's, not the run's"
    main(["validate", "--config", str(saved), "--ckpt_path", str(run / "checkpoints" / "last.ckpt"),
          *csv_logger(tmp_path, "single")])  # fmt: skip  (one process: the config says nothing of two)
    assert metric_column(tmp_path / "single", "val/psnr") == pytest.approx(two_ranks, abs=1e-4), "each clip counted once"
    tested = _run([*_launcher(), "test", "--config", str(saved), "--ckpt_path", str(run / "checkpoints" / "last.ckpt"),
                   "--data.test_path", str(val), *csv_logger(tmp_path, "tested")])  # fmt: skip
    assert tested.returncode == 0, tested.stderr[-4000:]
    assert metric_column(tmp_path / "tested", "test/psnr") == pytest.approx(two_ranks, abs=1e-4), "test: each clip once too"

    # one validation clip for two ranks: the second rank's share is all padding, it scores nothing
    one = tmp_path / "one_clip"
    one.mkdir()
    (one / "clip.mp4").symlink_to(sorted(val.iterdir())[0])
    checkpoint = ["--ckpt_path", str(run / "checkpoints" / "last.ckpt"), "--data.val_path", str(one)]
    main(["validate", "--config", str(saved), *checkpoint, *csv_logger(tmp_path, "single_one")])
    launched = _run([*_launcher(), "validate", "--config", str(saved), *checkpoint, *csv_logger(tmp_path, "two_one")])
    assert launched.returncode == 0, launched.stderr[-4000:]
    assert metric_column(tmp_path / "two_one", "val/psnr") == pytest.approx(metric_column(tmp_path / "single_one", "val/psnr"), abs=1e-4)



def test_activation_checkpointing_gives_the_same_gradients() -> None:
    from vtok import VideoAutoencoder

    video = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = VideoAutoencoder(latent_channels=4, block_out_channels=[8, 16], layers_per_block=1)
        if checkpointing:
            model.enable_gradient_checkpointing()
        model(video, sample_posterior=False).reconstruction.square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[0], grads[1])


def test_accelerate_configs_parse() -> None:
    from accelerate.commands.config.config_args import load_config_from_file

    for name, processes, machines in (("1node_8gpu", 8, 1), ("2nodes_8gpu", 16, 2)):
        config = load_config_from_file(str(ROOT / "configs" / "accelerate" / f"{name}.yaml"))
        assert (config.num_processes, config.num_machines) == (processes, machines)
        assert f"configs/accelerate/{name}.yaml" in README, "the README shows how to use it"
