"""A run survives faults: non-finite steps are skipped, SIGTERM checkpoints, resuming is bit-exact."""

from __future__ import annotations

import copy
import io
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.trainer.states import TrainerFn
from torch.utils.data import DataLoader

from tests.helpers import NonFiniteLossOnOneRank, csv_logger, metric_column, tiny_fit_args
from vtok import VideoAutoencoder
from vtok.cli import main
from vtok.losses import AdversarialLoss
from vtok.training import AutoencoderModule
from vtok.training.checkpoint_io import AtomicCheckpointIO
from vtok.data.dataset import VideoClipDataset

ROOT = Path(__file__).resolve().parents[1]


def _poison(monkeypatch: pytest.MonkeyPatch, bad_slots: set[int] | None) -> None:
    """Training clips of the given slots (all slots when None) come back as NaN."""
    original = VideoClipDataset.__getitem__

    def getitem(self, key):  # noqa: ANN001, ANN202
        sample = original(self, key)
        if self.train and (bad_slots is None or sample["index"] in bad_slots):
            sample["video"] = torch.full_like(sample["video"], float("nan"))
        return sample

    monkeypatch.setattr(VideoClipDataset, "__getitem__", getitem)


def test_a_nan_batch_is_skipped_and_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _poison(monkeypatch, {0})  # slot 0 appears in one batch per epoch
    main(tiny_fit_args(tmp_path, 8, *csv_logger(tmp_path), "--trainer.limit_val_batches", "0"))
    skipped = metric_column(tmp_path / "run", "train/skipped_steps")
    assert 1 <= skipped[-1] < 8
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert all(torch.isfinite(v).all() for v in state.values()), "a NaN never reaches the weights"


def test_a_stream_of_nans_stops_the_run_with_a_clear_error(tmp_path: Path, monkeypatch, capsys) -> None:  # noqa: ANN001
    _poison(monkeypatch, None)
    with pytest.raises(SystemExit) as exit_info, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main(tiny_fit_args(tmp_path, 20, "--trainer.logger", "false", "--model.max_nonfinite_steps", "3"))
    assert exit_info.value.code == 1
    order = [str(w.message) for w in caught if "lr_scheduler.step()" in str(w.message)]
    assert not order, f"skipped steps move the schedule on purpose, yet torch's order warning was shown: {order}"
    assert "3 consecutive steps had a non-finite loss or gradient" in capsys.readouterr().err


@pytest.mark.parametrize("lecam_weight, start_step", [(0.1, 0), (0.0, 0), (0.1, 1000)])
def test_one_nan_batch_with_a_discriminator_skips_that_step_only(lecam_weight: float, start_step: int) -> None:
    """LeCAM's running means see every batch, before the start and at weight 0 too (0 · NaN is NaN)."""
    torch.manual_seed(0)
    module = AutoencoderModule(
        VideoAutoencoder(block_out_channels=[8, 16], latent_channels=4, layers_per_block=1),
        adversarial=AdversarialLoss("patch2d", channels=8, layers=1, norm="group", start_step=start_step,
                                    lecam_weight=lecam_weight),
        max_nonfinite_steps=3,
    )  # fmt: skip
    batches = [{"video": torch.rand(1, 3, 5, 16, 16) * 2 - 1} for _ in range(7)]
    batches[1]["video"][0, 0, 0, 0, 0] = float("nan")
    trainer = Trainer(max_steps=6, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, accelerator="cpu")  # fmt: skip
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))
    assert module.skipped_steps == 1 and module.batch_step == 7 and trainer.global_step == 6  # the skip does not count
    assert torch.isfinite(module.adversarial.ema_real) and torch.isfinite(module.adversarial.ema_fake)
    assert all(torch.isfinite(v).all() for v in module.state_dict().values())


def test_accumulated_batches_make_one_optimizer_step(tmp_path: Path) -> None:
    main(tiny_fit_args(tmp_path, 1, "--trainer.logger", "false", "--trainer.limit_val_batches", "0",
                       "--model.accumulate_batches", "2"))  # fmt: skip
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 1 and checkpoint["vtok"]["batch_step"] == 2
    # validating that checkpoint reads the loss weights at 2 trained batches, as training would
    module = AutoencoderModule(VideoAutoencoder(**checkpoint["vtok"]["autoencoder_config"]))
    module.on_load_checkpoint(checkpoint)
    module.trainer = Trainer(logger=False, accelerator="cpu")
    module.trainer.state.fn = TrainerFn.VALIDATING
    assert module.trained_batches == 2


def test_a_signal_while_accumulating_stops_after_the_batch_that_steps(tmp_path: Path) -> None:
    """The gradients summed so far are in no checkpoint: a stop after batch 1 of a group of 2 resumed
    with batch 2's gradient alone, and the resumed run ended with other weights than one never stopped."""
    signal_after_batch_1 = ["--trainer.callbacks+", "tests.helpers.SignalOneRank", "--trainer.callbacks.rank", "0",
                            "--trainer.callbacks.at_batch", "1"]  # fmt: skip
    main(tiny_fit_args(tmp_path, 3, "--trainer.logger", "false", "--trainer.limit_val_batches", "0",
                       "--model.accumulate_batches", "2", *signal_after_batch_1))  # fmt: skip
    saved = list((tmp_path / "run" / "checkpoints").glob("last-signal-step=*.ckpt"))
    assert [path.name for path in saved] == ["last-signal-step=1.ckpt"]
    assert not (tmp_path / "run" / "checkpoints" / "last.ckpt").exists(), "no second copy of the step after the signal's"
    checkpoint = torch.load(saved[0], weights_only=True)
    assert (checkpoint["global_step"], checkpoint["vtok"]["batch_step"]) == (1, 2), "stopped at the group's end"


def test_a_signal_at_the_sanity_checks_end_stops_at_the_first_batch_with_a_checkpoint(tmp_path: Path) -> None:
    """Lightning's handler takes SIGTERM until training starts: one at the sanity check's last batch was acted on
    at the end of the first epoch, with no checkpoint (Lightning's SIGTERMException)."""
    at_the_sanity_checks_end = ["--trainer.callbacks+", "tests.helpers.SignalInValidation", "--trainer.callbacks.folder",
                                str(tmp_path / "unused"), "--trainer.callbacks.at_batch", "1",
                                "--trainer.callbacks.sanity_check", "true"]  # fmt: skip
    main(tiny_fit_args(tmp_path, 100, "--trainer.logger", "false", *at_the_sanity_checks_end))
    saved = list((tmp_path / "run" / "checkpoints").glob("last-signal-step=*.ckpt"))
    assert [path.name for path in saved] == ["last-signal-step=1.ckpt"]


def test_a_fit_stopped_by_sigterm_before_training_says_nothing_was_saved(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """SIGTERM at the sanity check's first batch of two: Lightning's handler ends the fit there, before vtok's is set."""
    at_the_first_sanity_batch = ["--trainer.callbacks+", "tests.helpers.SignalInValidation", "--trainer.callbacks.folder",
                                 str(tmp_path / "unused"), "--trainer.callbacks.at_batch", "1",
                                 "--trainer.callbacks.sanity_check", "true"]  # fmt: skip
    held_out = ["--data.synthetic_videos", "12", "--data.val_fraction", "0.5"]  # 3 held-out batches
    main(tiny_fit_args(tmp_path, 100, "--trainer.logger", "false", *held_out, *at_the_first_sanity_batch))
    assert "stopped by SIGTERM before training began: nothing trained, no checkpoint written" in caplog.text
    assert not list((tmp_path / "run" / "checkpoints").glob("*.ckpt"))


def test_a_validate_stopped_by_sigterm_says_so_and_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Lightning ends a validate or test at SIGTERM with exit status 0 and no word: a pipeline went on as if its scores
    were there."""
    held_out = ["--data.synthetic_videos", "12", "--data.val_fraction", "0.5"]  # 3 held-out batches
    main(tiny_fit_args(tmp_path, 1, "--trainer.logger", "false", *held_out))
    run = tmp_path / "run"
    at_the_first_batch = ["--trainer.callbacks+", "tests.helpers.SignalInValidation", "--trainer.callbacks.folder",
                          str(tmp_path / "validations"), "--trainer.callbacks.at_batch", "1"]  # fmt: skip
    with pytest.raises(SystemExit) as stopped:
        main(["validate", "--config", str(run / "config.yaml"), "--ckpt_path", str(run / "checkpoints" / "last.ckpt"),
              *at_the_first_batch])  # fmt: skip
    assert stopped.value.code == 128 + signal.SIGTERM
    assert "vtok: error: validate stopped by SIGTERM before its end: no scores" in capsys.readouterr().err
    assert json.loads((tmp_path / "validations" / "rank0.json").read_text()) == [1]
    with pytest.raises(SystemExit) as stopped:
        main(["test", "--config", str(run / "config.yaml"), "--ckpt_path", str(run / "checkpoints" / "last.ckpt"),
              "--data.test_path", str(tmp_path / "clips"), *at_the_first_batch])  # fmt: skip
    assert stopped.value.code == 128 + signal.SIGTERM
    assert "vtok: error: test stopped by SIGTERM before its end: no scores" in capsys.readouterr().err


def _weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint, weights_only=True)["state_dict"]


@pytest.mark.parametrize("workers, resumed_workers", [(0, 0), (2, 2), (2, 0)])
def test_resume_reaches_the_same_weights_as_an_unbroken_run(tmp_path: Path, workers: int, resumed_workers: int) -> None:
    """Also with another number of loader workers after the stop (torchdata restores a place only into
    as many workers as saved it; vtok's sampler takes it over)."""
    everything = [
        "--trainer.logger", "false", "--trainer.limit_val_batches", "0", "--data.horizontal_flip", "true",
        "--model.adversarial.discriminator", "patch2d", "--model.adversarial.channels", "8",
        "--model.adversarial.start_step", "2", "--model.ema_decay", "0.9",
        "--model.optimizer.warmup_steps", "4", "--model.optimizer.schedule", "cosine",
        "--model.optimizer.decay_steps", "6",
        "--trainer.callbacks+", "ModelCheckpoint", "--trainer.callbacks.every_n_train_steps", "3",
        "--trainer.callbacks.save_top_k", "-1", "--trainer.callbacks.filename", "{step}",
    ]  # fmt: skip
    main(tiny_fit_args(tmp_path, 6, *everything, "--data.num_workers", str(workers), run="straight"))
    main(tiny_fit_args(tmp_path, 3, *everything, "--data.num_workers", str(workers), run="stopped"))
    stopped = tmp_path / "stopped" / "checkpoints" / "step=3.ckpt"
    resume = ["--data.num_workers", str(resumed_workers), "--ckpt_path", str(stopped)]
    main(tiny_fit_args(tmp_path, 6, *everything, *resume, run="stopped"))
    straight = _weights(tmp_path / "straight" / "checkpoints" / "step=6.ckpt")
    resumed = _weights(tmp_path / "stopped" / "checkpoints" / "step=6.ckpt")
    assert straight.keys() == resumed.keys()
    assert any(k.startswith("ema.") for k in straight) and any(k.startswith("adversarial.") for k in straight)
    different = [k for k in straight if not torch.equal(straight[k], resumed[k])]
    assert not different, f"resumed weights differ: {different[:5]}"
    assert not torch.equal(straight["autoencoder.encoder.conv_in.weight"],
                           _weights(stopped)["autoencoder.encoder.conv_in.weight"])  # fmt: skip


def test_sigterm_to_the_process_group_leaves_a_loadable_checkpoint_and_exits_zero(tmp_path: Path) -> None:
    env = {**os.environ, "WANDB_SILENT": "true"}
    arguments = tiny_fit_args(tmp_path, 100000, "--trainer.logger", "false", "--data.num_workers", "2")
    process = subprocess.Popen(
        [sys.executable, "-m", "vtok.cli", *arguments], start_new_session=True,
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    first_picture = tmp_path / "run" / "reconstructions" / "step_0000000.png"
    deadline = time.monotonic() + 300
    while not first_picture.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.5)
    assert first_picture.exists(), "training never started"
    os.killpg(process.pid, signal.SIGUSR2)  # where is it? every process prints its threads' stacks and goes on
    time.sleep(2)
    # as `timeout`, `kill -- -PGID` or a scheduler stop a job: the loader workers get it too
    os.killpg(process.pid, signal.SIGTERM)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output[-3000:]
    assert "Current thread" in output and "most recent call first" in output, output[-3000:]
    checkpoints = list((tmp_path / "run" / "checkpoints").glob("last-signal-step=*.ckpt"))
    assert len(checkpoints) == 1, output[-3000:]
    checkpoint = torch.load(checkpoints[0], weights_only=True)
    model = VideoAutoencoder(**checkpoint["vtok"]["autoencoder_config"])
    prefix = "autoencoder."
    model.load_state_dict({k[len(prefix):]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)})
    assert not list((tmp_path / "run" / "checkpoints").glob(".*partial")), "no half-written files"


def test_ctrl_c_in_a_fit_says_what_is_lost_and_how_to_go_on(tmp_path: Path) -> None:
    """Lightning ends a fit on Ctrl-C at once, without a checkpoint, and said only "Detected KeyboardInterrupt":
    nothing about the steps lost since the newest checkpoint, how to resume, or that SIGTERM saves first."""
    arguments = tiny_fit_args(tmp_path, 100000, "--trainer.logger", "false", "--data.num_workers", "2")
    process = subprocess.Popen(
        [sys.executable, "-m", "vtok.cli", *arguments], start_new_session=True,
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    checkpoints = tmp_path / "run" / "checkpoints"
    deadline = time.monotonic() + 300
    while not (checkpoints / "last.ckpt").exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.5)
    assert (checkpoints / "last.ckpt").exists(), "no checkpoint written"
    os.killpg(process.pid, signal.SIGINT)  # as a terminal sends Ctrl-C: the loader workers get it too
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 1, output[-3000:]  # Lightning's
    said = next(line for line in output.splitlines() if "interrupted at step" in line)
    assert f"steps since {checkpoints / 'last.ckpt'} (written" in said, said
    assert f"go on with `vtok fit --config {tmp_path / 'run' / 'config.yaml'} --ckpt_path last`" in said, said
    assert f"send SIGTERM instead (kill {process.pid})" in said, said
    assert "Traceback" not in output, output[-3000:]



class _InterruptedDestructor:
    def __del__(self) -> None:
        raise KeyboardInterrupt  # a Ctrl-C that lands while a destructor runs


class _FailingDestructor:
    def __del__(self) -> None:
        raise ValueError("a real error in a destructor")


def test_a_ctrl_c_inside_a_destructor_is_not_reported_as_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C landing in decord's VideoReader.__del__ was printed by Python ("Exception ignored in ...", a traceback)
    above vtok's one line about the interrupted run (seen once in the test above: a race); other errors still show."""
    from vtok.console import quiet_third_party_noise

    reported: list = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)
    quiet_third_party_noise()
    _InterruptedDestructor()  # collected at once
    _FailingDestructor()
    assert [type(unraisable.exc_value) for unraisable in reported] == [ValueError]

LEFT_RUNNING = """
import torch
from torchdata.stateful_dataloader import StatefulDataLoader
from vtok.data.worker_signals import kill_loader_workers_at_exit, leave_stop_signals_to_main_process

kill_loader_workers_at_exit()
loader = StatefulDataLoader(list(range(64)), batch_size=2, num_workers=2, persistent_workers=True,
                            worker_init_fn=leave_stop_signals_to_main_process)
batches = iter(loader)
next(batches)  # the workers run, and stay referenced when the error ends the process
raise RuntimeError("an error with loader workers running")
"""


def test_an_error_with_loader_workers_running_ends_the_process(tmp_path: Path) -> None:
    """The workers ignore SIGTERM, which is how Python's exit stops daemonic children: without vtok's
    exit hook the process waits for them forever."""
    result = subprocess.run([sys.executable, "-c", LEFT_RUNNING], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 1 and "an error with loader workers running" in result.stderr
    assert "killed by signal" not in result.stderr, "the exit's own kills are not reported as failed workers"


def test_a_failed_checkpoint_save_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk (or a kill) mid-save left a dot-hidden, truncated .partial of up to gigabytes on the full disk."""

    def disk_full(checkpoint: object, handle: io.BufferedWriter) -> None:
        handle.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        AtomicCheckpointIO().save_checkpoint({"state_dict": {}}, tmp_path / "checkpoints" / "step=50.ckpt")
    assert list((tmp_path / "checkpoints").iterdir()) == []


def test_two_accumulated_batches_give_the_gradient_of_the_two_as_one_batch() -> None:
    """The loss of each accumulated batch is divided by their number: without it (found by a mutation review) every
    step's gradient was that many times too large, grad_clip clipped harder than set, and AdamW's scale-free first
    steps hid it from every test."""
    torch.manual_seed(0)
    autoencoder = VideoAutoencoder(block_out_channels=[8, 16], latent_channels=4, layers_per_block=1, bottleneck="fsq",
                                   fsq_levels=[8, 5, 5])  # fmt: skip  (no sampled latents: both runs see the same codes)
    clips = torch.rand(2, 3, 5, 16, 16) * 2 - 1
    norms = []
    for accumulate, batches in ((2, [{"video": clips[:1]}, {"video": clips[1:]}]), (1, [{"video": clips}])):
        module = AutoencoderModule(copy.deepcopy(autoencoder), accumulate_batches=accumulate)
        trainer = Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                          enable_model_summary=False, accelerator="cpu")  # fmt: skip
        trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))
        norms.append(float(trainer.callback_metrics["train/grad_norm"]))
    assert norms[0] > 0 and norms[0] == pytest.approx(norms[1], rel=1e-4)


@pytest.mark.parametrize("at_batch", [0, 1])
def test_a_non_finite_loss_anywhere_in_an_accumulation_group_skips_its_step(at_batch: int) -> None:
    """Only the loss of the group's last batch was checked: an inf loss without gradient (a discriminator
    term overflowing before its start) on an earlier batch was neither skipped nor counted."""
    torch.manual_seed(0)
    module = AutoencoderModule(
        VideoAutoencoder(block_out_channels=[8, 16], latent_channels=4, layers_per_block=1), accumulate_batches=2
    )
    batches = [{"video": torch.rand(1, 3, 5, 16, 16) * 2 - 1} for _ in range(6)]
    trainer = Trainer(max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, accelerator="cpu", callbacks=[NonFiniteLossOnOneRank(0, at_batch)])  # fmt: skip
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))
    assert module.skipped_steps == 1 and module.batch_step == 8 and trainer.global_step == 3  # the skip does not count


@pytest.mark.parametrize(
    "validate, steps, stop", [(["--trainer.check_val_every_n_epoch", "null", "--trainer.val_check_interval", "2"], 8, 4),
                              (["--trainer.check_val_every_n_epoch", "1"], 9, 6)], ids=["mid_epoch", "epoch_end"],
)  # fmt: skip
def test_a_signal_during_validation_stops_there_and_the_resumed_run_goes_on_alike(
    tmp_path: Path, validate: list[str], steps: int, stop: int
) -> None:
    """7 training and 5 held-out clips in batches of 2 (3 batches each), a validation every 2 batches or at each epoch's
    end: SIGTERM at the second validation's second batch. The signal was read only between training batches, so a
    validation longer than a scheduler's grace period (30 s under SLURM and torchrun) ended with SIGKILL and no
    checkpoint. The fit now stops there; the resumed run goes on as one never stopped (that one validation left out)."""

    def fit(run: str, name: str, *extra: str) -> tuple[list, list[int]]:
        record, validations = tmp_path / run / f"record_{name}", tmp_path / run / f"validations_{name}"
        main(tiny_fit_args(
            tmp_path, steps, "--trainer.logger", "false", "--data.synthetic_videos", "12", "--data.val_fraction", "0.5",
            *validate, "--trainer.callbacks+", "tests.helpers.RecordSamples", "--trainer.callbacks.folder", str(record),
            "--trainer.callbacks+", "tests.helpers.SignalInValidation", "--trainer.callbacks.folder", str(validations),
            *extra, run=run,
        ))  # fmt: skip
        rows = json.loads((record / "rank0.json").read_text())["rows"] if (record / "rank0.json").exists() else []
        return [(row["step"], row["index"], row["rng"]) for row in rows], json.loads((validations / "rank0.json").read_text())

    straight, straight_validations = fit("straight", "straight")
    validations = len(straight_validations)
    assert straight_validations == [3] * validations
    _, stopped_validations = fit("resumed", "stopped", "--trainer.callbacks.at_batch", "5")
    assert stopped_validations == [3, 2], "the stop came at the signal's batch"
    checkpoints = tmp_path / "resumed" / "checkpoints"
    assert [path.name for path in checkpoints.glob("last-signal-step=*.ckpt")] == [f"last-signal-step={stop}.ckpt"]
    resumed, resumed_validations = fit("resumed", "resumed", "--ckpt_path", "last")
    assert resumed == straight[stop:], "the same batches and random draws after the stop"
    assert resumed_validations == [3] * (validations - 2), "the later validations whole"
    weights = [torch.load(folder / "last.ckpt", weights_only=True)["state_dict"] for folder in (tmp_path / "straight" / "checkpoints", checkpoints)]
    different = [key for key in weights[0] if not torch.equal(weights[0][key], weights[1][key])]
    assert not different, f"resumed weights differ: {different[:5]}"


def test_a_signal_in_an_epoch_that_validates_writes_its_checkpoint_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Lightning starts a validation after a stop it is asked for in an epoch that validates (and one may be due at
    that batch): the validation found the signal and wrote the same checkpoint again, doubling the time it takes."""
    signal_after_batch_2 = ["--trainer.callbacks+", "tests.helpers.SignalOneRank", "--trainer.callbacks.rank", "0",
                            "--trainer.callbacks.at_batch", "2"]  # fmt: skip
    main(tiny_fit_args(tmp_path, 100, "--trainer.logger", "false", "--trainer.check_val_every_n_epoch", "1",
                       *signal_after_batch_2))  # fmt: skip
    assert caplog.text.count("signal received") == 1, caplog.text
    saved = (tmp_path / "run" / "checkpoints").iterdir()
    assert [path.name for path in saved] == ["last-signal-step=2.ckpt"]
    # and the run ends as training does (ending it by an exception skipped every on_train_end: the last picture)
    assert list((tmp_path / "run" / "reconstructions").glob("step_0000001.*")), "the picture at the end of training"
