"""What vtok reads from the launcher's environment (torchrun and accelerate, SLURM, Lightning's own launch):
devices, nodes, the run folder every rank and restart shares, whether the job was restarted, and the layouts
it refuses in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers import tiny_fit_args
from vtok.cli import VtokCLI, main
from vtok.launch import detect_launch
from vtok.usage_error import UsageError

def test_launch_environment_sets_devices_and_nodes(monkeypatch: pytest.MonkeyPatch) -> None:
    assert detect_launch() is None  # a process started by hand (conftest.py clears the launcher's variables)
    monkeypatch.setenv("WORLD_SIZE", "16")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job42")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    launch = detect_launch()
    assert (launch.launcher, launch.devices, launch.num_nodes, launch.run_id, launch.restart_count) == (
        "torchelastic", 8, 2, "job42", 1,
    )


def test_a_slurm_job_of_several_tasks_run_without_srun_says_it_will_wait(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """`python train.py` in an sbatch script of --ntasks 2: the process waited for a rank nothing started,
    silent until the process group's timeout (30 minutes)."""
    for name, value in (("SLURM_NTASKS", "2"), ("SLURM_NNODES", "1"), ("SLURM_NTASKS_PER_NODE", "2"), ("SLURM_JOB_NAME", "train")):
        monkeypatch.setenv(name, value)
    with caplog.at_level("WARNING", logger="vtok.launch"):
        assert detect_launch().devices == 2
    assert "this process was not started by srun: it will wait for 1 more ranks" in caplog.text
    caplog.clear()
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "2")  # as srun sets it for each task it starts
    with caplog.at_level("WARNING", logger="vtok.launch"):
        assert detect_launch().devices == 2
    assert not caplog.text


def test_a_slurm_job_of_one_task_is_a_launch_named_by_its_job_and_knows_it_was_requeued(monkeypatch: pytest.MonkeyPatch) -> None:
    """One task was not read at all: a requeued job claimed a new runs/<date-time> and trained from step 0."""
    for name, value in (("SLURM_NTASKS", "1"), ("SLURM_JOB_NAME", "train"), ("SLURM_JOB_ID", "901"), ("SLURM_RESTART_COUNT", "2")):
        monkeypatch.setenv(name, value)
    launch = detect_launch()
    assert (launch.launcher, launch.devices, launch.num_nodes, launch.run_id, launch.restart_count) == ("slurm", 1, 1, "901", 2)
    monkeypatch.setenv("SLURM_JOB_NAME", "bash")  # an interactive shell in an allocation, as Lightning sees it
    assert detect_launch() is None


def test_a_torchrun_inside_a_requeued_slurm_job_counts_the_requeue_as_a_restart_in_the_jobs_folder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its run folder was named by torchrun's run id, a new uuid at every start of a one-node launch (`none` under
    accelerate, refused): the requeued job trained from step 0 in a new folder."""
    for name, value in (("WORLD_SIZE", "8"), ("LOCAL_WORLD_SIZE", "8"), ("TORCHELASTIC_RUN_ID", "a-new-uuid"),
                        ("TORCHELASTIC_RESTART_COUNT", "0"), ("SLURM_NTASKS", "1"), ("SLURM_RESTART_COUNT", "1"),
                        ("SLURM_JOB_ID", "4242"), ("SLURM_JOB_NAME", "train")):  # fmt: skip
        monkeypatch.setenv(name, value)
    assert (detect_launch().restart_count, detect_launch().run_id) == (1, "4242")
    monkeypatch.setenv("SLURM_JOB_NAME", "bash")  # torchrun typed in a shell of an allocation: not the job's run
    assert detect_launch().run_id == "a-new-uuid"


def test_devices_1_as_the_command_line_and_config_yaml_give_it_is_the_launchs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`devices: 1` from a YAML file took the launch's devices, the string '1' (a flag, or the config.yaml of a
    `--trainer.devices 1` run) was refused as disagreeing with it."""
    for name, value in (("WORLD_SIZE", "2"), ("LOCAL_WORLD_SIZE", "2"), ("RANK", "0"), ("LOCAL_RANK", "0"),
                        ("TORCHELASTIC_RUN_ID", "x"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29511")):  # fmt: skip
        monkeypatch.setenv(name, value)
    cli = VtokCLI(tiny_fit_args(tmp_path, 1, "--trainer.logger", "false", "--trainer.devices", "1")[1:], run=False)
    assert cli.trainer.num_devices == 2


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"WORLD_SIZE": "12", "LOCAL_WORLD_SIZE": "8", "TORCHELASTIC_RUN_ID": "x"}, "12 processes, 8 on this node"),
        ({"SLURM_NTASKS": "2", "SLURM_NNODES": "1", "SLURM_JOB_NAME": "train"}, "submit it with --ntasks-per-node=2"),
    ],
)
def test_layouts_lightning_cannot_run_are_one_line(monkeypatch: pytest.MonkeyPatch, variables: dict, message: str) -> None:
    """They ended in Lightning's traceback, naming settings (devices=8, num_nodes=1) the user never set."""
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(UsageError, match=message):
        detect_launch()


def test_ckpt_path_last_without_a_run_folder_under_a_launcher_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A first launch has a new, empty folder (runs/<run id>): the run started afresh where it was meant to go on."""
    monkeypatch.chdir(tmp_path)
    for name, value in (("WORLD_SIZE", "1"), ("LOCAL_WORLD_SIZE", "1"), ("RANK", "0"), ("LOCAL_RANK", "0"),
                        ("TORCHELASTIC_RUN_ID", "a-new-uuid")):  # fmt: skip  (torchrun's single-node default)
        monkeypatch.setenv(name, value)
    arguments = tiny_fit_args(tmp_path, 1, "--trainer.logger", "false", "--ckpt_path", "last")
    at = arguments.index("--trainer.default_root_dir")
    with pytest.raises(SystemExit):
        main(arguments[:at] + arguments[at + 2 :])
    assert "--ckpt_path last needs the run folder to look in" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_lightnings_own_launch_on_several_nodes_needs_a_run_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Each node claimed its own runs/<date-time>: rank 0's got everything, the others an empty folder."""
    monkeypatch.chdir(tmp_path)
    arguments = tiny_fit_args(tmp_path, 1, "--trainer.logger", "false", "--trainer.num_nodes", "2")
    at = arguments.index("--trainer.default_root_dir")
    with pytest.raises(SystemExit):
        main(arguments[:at] + arguments[at + 2 :])
    assert "trainer.num_nodes=2: a run on several nodes needs --trainer.default_root_dir" in capsys.readouterr().err


def test_the_precision_follows_the_accelerator_asked_for(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """On a GPU machine, accelerator cpu got bf16-mixed: bf16 autocast on the CPU, where fp32 is promised."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    cli = VtokCLI(tiny_fit_args(tmp_path, 1, "--trainer.logger", "false", "--trainer.accelerator", "cpu")[1:], run=False)
    assert cli.trainer.precision == "32-true"


def test_a_second_fit_of_one_slurm_job_is_refused_not_written_over_the_first(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Every fit of a one-task job script went to runs/<job id>: the second was refused with advice about a new
    runs/<date-time> that never comes under a job, and fits without checkpoints wrote over each other's files."""
    monkeypatch.chdir(tmp_path)
    for name, value in (("SLURM_NTASKS", "1"), ("SLURM_JOB_NAME", "sweep"), ("SLURM_JOB_ID", "77")):
        monkeypatch.setenv(name, value)
    arguments = tiny_fit_args(tmp_path, 1, "--trainer.logger", "false")
    at = arguments.index("--trainer.default_root_dir")
    main(arguments[:at] + arguments[at + 2 :])
    job_folder = Path("runs") / "77"
    first = (job_folder / "config.yaml").read_text()
    for settings in ([], ["--trainer.enable_checkpointing", "false"]):
        with pytest.raises(SystemExit):
            main(arguments[:at] + arguments[at + 2 :] + ["--model.grad_clip", "0.25", *settings])
        message = capsys.readouterr().err
        assert f"{job_folder} is this SLURM job's run folder and an earlier vtok fit of the job already wrote into it" in message
        assert "its own --trainer.default_root_dir" in message and "runs/<date-time>" not in message
        assert f"--ckpt_path {job_folder / 'checkpoints' / 'last.ckpt'}" in message
    assert (job_folder / "config.yaml").read_text() == first
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")  # the same job requeued goes on in its folder
    main(arguments[:at] + arguments[at + 2 :] + ["--trainer.max_steps", "2"])
    assert torch.load(job_folder / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2


@pytest.mark.parametrize("job_name", ["zsh", "fish", "my-shell", "sys/dashboard/jupyter", "Jupyter-Lab"])
def test_a_shell_or_notebook_in_an_allocation_is_not_a_launch(monkeypatch: pytest.MonkeyPatch, job_name: str) -> None:
    """`srun --pty zsh` or a Jupyter job was taken for a submitted run: every command typed in it shared runs/<job id>."""
    for name, value in (("SLURM_NTASKS", "1"), ("SLURM_JOB_NAME", job_name), ("SLURM_JOB_ID", "5"), ("SHELL", "/opt/bin/my-shell")):
        monkeypatch.setenv(name, value)
    assert detect_launch() is None
    monkeypatch.setenv("SLURM_JOB_NAME", "train")
    assert detect_launch() is not None


def test_one_slurm_task_is_one_process_whatever_its_tasks_per_node_say(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`--ntasks 1` beside `--ntasks-per-node 4` (SLURM exports both as given) gave devices=4 to one process."""
    for name, value in (("SLURM_NTASKS", "1"), ("SLURM_NTASKS_PER_NODE", "4"), ("SLURM_JOB_NAME", "train"), ("SLURM_JOB_ID", "6")):
        monkeypatch.setenv(name, value)
    assert detect_launch().devices == 1
    with pytest.raises(UsageError, match="submit the job with --ntasks-per-node=2 \\(one task per GPU\\)"):
        VtokCLI(tiny_fit_args(tmp_path, 1, "--trainer.logger", "false", "--trainer.devices", "2")[1:], run=False)


def test_a_requeued_job_whose_run_keeps_no_last_ckpt_goes_on_from_its_newest_checkpoint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With checkpoints but no last*.ckpt (a ModelCheckpoint without save_last), every requeue or restart was refused
    as a fresh run over an old one, advising `--ckpt_path last`, which is refused there too: the job failed for good."""
    monkeypatch.chdir(tmp_path)
    for name, value in (("SLURM_NTASKS", "1"), ("SLURM_JOB_NAME", "train"), ("SLURM_JOB_ID", "78")):
        monkeypatch.setenv(name, value)
    every_step = ["--trainer.callbacks+", "ModelCheckpoint", "--trainer.callbacks.every_n_train_steps", "1",
                  "--trainer.callbacks.save_top_k", "-1", "--trainer.callbacks.filename", "{step}"]  # fmt: skip
    arguments = tiny_fit_args(tmp_path, 2, "--trainer.logger", "false", "--trainer.limit_val_batches", "0", *every_step)
    at = arguments.index("--trainer.default_root_dir")
    main(arguments[:at] + arguments[at + 2 :])
    checkpoints = Path("runs") / "78" / "checkpoints"
    (checkpoints / "last.ckpt").unlink()
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    main(arguments[:at] + arguments[at + 2 :] + ["--trainer.max_steps", "3"])
    assert torch.load(checkpoints / "step=3.ckpt", weights_only=True)["global_step"] == 3
    assert sorted(path.name for path in checkpoints.iterdir()) == ["last.ckpt", "step=1.ckpt", "step=2.ckpt", "step=3.ckpt"]
