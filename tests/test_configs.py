"""Every YAML under configs/ parses and instantiates; invalid settings fail before training, naming the fix."""

from __future__ import annotations

import filecmp
import shutil
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint

from vtok import VideoAutoencoder
from vtok.cli import VtokCLI, _is_checkpoint, main
from vtok.presets import CONFIG_DIR, DEFAULT_CONFIG
from vtok.data.datamodule import VideoDataModule
from vtok.losses.adversarial import AdversarialLoss
from vtok.losses.perceptual import load_lpips_vgg
from vtok.training import AutoencoderModule
from vtok.usage_error import UsageError
from tests.helpers import csv_logger, metric_column, tiny_fit_args

ROOT = Path(__file__).resolve().parents[1]
PRESETS = sorted(p for p in CONFIG_DIR.glob("*.yaml"))


def test_the_packaged_default_is_the_readable_one() -> None:
    assert DEFAULT_CONFIG.is_file()
    assert filecmp.cmp(ROOT / "configs" / "default.yaml", DEFAULT_CONFIG, shallow=False)
    assert {p.name for p in PRESETS} >= {"default.yaml", "kl_4x8x8.yaml", "kl_8x16x16.yaml"}


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_every_preset_parses_and_instantiates(preset: Path, tmp_path: Path, vgg_weights: Path) -> None:
    cli = VtokCLI(
        args=["--config", str(preset), "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path)],
        run=False,
    )
    assert isinstance(cli.model, AutoencoderModule) and isinstance(cli.datamodule, VideoDataModule)
    autoencoder = cli.model.autoencoder
    assert isinstance(autoencoder, VideoAutoencoder)
    if preset.stem != "default":
        assert f"_{autoencoder.compression}" in preset.stem, "a preset's name states its compression"
        family = {"ltx": "kl"}.get(preset.stem.split("_")[0], preset.stem.split("_")[0])  # ltx_: LTX-Video's continuous VAE
        assert family == autoencoder.config.bottleneck, "and its bottleneck"
        assert cli.datamodule.num_frames == 17 and cli.datamodule.size == (256, 256)
    autoencoder.compression.check_clip(cli.datamodule.num_frames, *cli.datamodule.size)


def _fit_error(capsys: pytest.CaptureFixture, *overrides: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--trainer.logger", "false", *overrides])
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_invalid_settings_fail_at_parse_time_naming_the_fix(capsys: pytest.CaptureFixture) -> None:
    assert "frames=10 is not 1 + k*4; use 9 or 13" in _fit_error(capsys, "--data.num_frames", "10")
    assert "height=60 is not a multiple of 8; use 56 or 64" in _fit_error(capsys, "--data.size", "60")
    assert "spatial_compression" in _fit_error(capsys, "--model.autoencoder.spatial_compression", "12")
    assert "bf16-mixed" in _fit_error(capsys, "--trainer.precision", "16-mixed")
    assert "vtok's networks are mostly 3D convolutions" in _fit_error(capsys, "--trainer.precision", "transformer-engine")
    message = _fit_error(capsys, "--model.autoencoder.block_out_channels", "[12, 20]")
    assert "set resample_shortcut=false" in message and "Traceback" not in message
    assert "set model.accumulate_batches instead" in _fit_error(capsys, "--trainer.accumulate_grad_batches", "2")
    assert "set model.grad_clip instead" in _fit_error(capsys, "--trainer.gradient_clip_val", "1.0")
    assert "set model.grad_clip (a norm) instead" in _fit_error(capsys, "--trainer.gradient_clip_algorithm", "value")  # was ignored
    assert "use bf16-mixed, or set model.ema_decay null" in _fit_error(capsys, "--trainer.precision", "bf16-true")  # EMA froze
    assert "model.grad_clip must be positive (or null for no clipping), got 0" in _fit_error(capsys, "--model.grad_clip", "0")
    assert "optimizer: lr=-0.001 must be positive" in _fit_error(capsys, "--model.optimizer.lr=-1e-3")
    assert "decoder_noise_channels at least 0 (got -1)" in _fit_error(capsys, "--model.autoencoder.decoder_noise_channels=-1")
    assert "model.continuous_weight (got -1.0)" in _fit_error(capsys, "--model.continuous_weight=-1")
    assert "gives RGB clips (3 channels)" in _fit_error(capsys, "--model.autoencoder.in_channels", "1")
    small = ["--data.num_frames", "5", "--data.size", "32", "--model.adversarial.channels", "8"]
    message = _fit_error(capsys, *small, "--model.adversarial.layers", "5")
    assert "the discriminator cannot take 5x32x32 clips" in message and "lower model.adversarial.layers" in message
    cosine = ["--model.optimizer.schedule", "cosine", "--model.optimizer.warmup_steps", "5"]
    message = _fit_error(capsys, *cosine, "--model.optimizer.decay_steps", "3")
    assert "decay_steps=3 must exceed model.optimizer.warmup_steps=5" in message and "Traceback" not in message
    epochs = ["--trainer.max_steps", "-1", "--trainer.max_epochs", "1", "--model.adversarial.discriminator", "patch3d"]
    message = _fit_error(capsys, *epochs, "--model.disc_optimizer.schedule", "cosine")  # named optimizer.decay_steps
    assert "needs model.disc_optimizer.decay_steps or trainer.max_steps" in message


def test_a_picture_interval_of_zero_is_refused_when_the_config_is_read(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    config = tmp_path / "pictures.yaml"
    config.write_text("trainer:\n  callbacks:\n    - class_path: vtok.training.ReconstructionPictures\n"
                      "      init_args:\n        every_n_steps: 0\n")  # fmt: skip
    message = _fit_error(capsys, "--config", str(config), "--trainer.default_root_dir", str(tmp_path))
    assert "ReconstructionPictures every_n_steps must be at least 1, got 0" in message and "Traceback" not in message


def _copy_of_run(fsq_run: dict[str, Path], folder: Path) -> tuple[Path, bytes]:
    """A copy of the session's tiny FSQ run in ``folder``, and its config.yaml's bytes (to check it is not rewritten)."""
    shutil.copytree(fsq_run["checkpoint"].parents[1], folder)
    return folder, (folder / "config.yaml").read_bytes()


def test_a_saved_config_rerun_with_another_run_folder_writes_only_there(tmp_path: Path, fsq_run: dict[str, Path]) -> None:
    run, written = _copy_of_run(fsq_run, tmp_path / "a")
    saved = yaml.safe_load(written)
    assert not any(c.get("init_args", {}).get("dirpath") for c in saved["trainer"]["callbacks"]), "derived, not saved"
    other = tmp_path / "b"
    main(["fit", "--config", str(run / "config.yaml"), "--trainer.default_root_dir", str(other), "--trainer.max_steps", "3",
          "--ckpt_path", str(run / "checkpoints" / "last.ckpt")])  # fmt: skip
    assert (run / "config.yaml").read_bytes() == written, "the first run's folder is left alone"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == sorted(
        p.name for p in (fsq_run["checkpoint"].parent).iterdir()
    )
    assert torch.load(other / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 3
    assert (other / "config.yaml").is_file()


def test_validate_keeps_the_run_config_and_a_checkpoint_of_another_network_is_one_line(
    capsys: pytest.CaptureFixture, tmp_path: Path, fsq_run: dict[str, Path]
) -> None:
    run, written = _copy_of_run(fsq_run, tmp_path / "run")
    checkpoint = str(run / "checkpoints" / "last.ckpt")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main(["validate", "--config", str(run / "config.yaml"), "--trainer.default_root_dir", str(run), "--ckpt_path", checkpoint])
    assert (run / "config.yaml").read_bytes() == written, "validate rewrote the config that reruns and resumes use"
    moved = [str(w.message) for w in caught if "dirpath has changed" in str(w.message)]
    assert not moved, f"a checkpoint copied from another folder warned of best-k scores no vtok callback keeps: {moved}"
    with pytest.raises(SystemExit) as exit_info:  # the default network (KL, wider) instead of the run's FSQ one
        main(["validate", "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path / "other"),
              "--data.synthetic_dir", str(tmp_path / "clips"), "--ckpt_path", checkpoint])  # fmt: skip
    message = capsys.readouterr().err
    assert exit_info.value.code == 2 and "holds another network than the config describes: model.autoencoder." in message
    assert f"--config {run / 'config.yaml'}, without flags that change model.autoencoder" in message and "Traceback" not in message
    with pytest.raises(SystemExit) as exit_info:  # resuming in the run's folder without its config: refused before
        main(["fit", "--trainer.logger", "false", "--trainer.default_root_dir", str(run), "--ckpt_path", checkpoint,
              "--data.synthetic_dir", str(tmp_path / "clips")])  # fmt: skip
    assert exit_info.value.code == 2 and "holds another network" in capsys.readouterr().err
    assert (run / "config.yaml").read_bytes() == written, "a refused resume overwrote the run's config with the wrong network"


def test_a_resume_that_adds_or_drops_the_ema_copy_or_the_discriminator_is_refused_before_writing(
    capsys: pytest.CaptureFixture, tmp_path: Path, fsq_run: dict[str, Path]
) -> None:
    """They failed at loading, after config.yaml was overwritten: the advice (the run's own config) failed too."""
    from vtok.resume_checks import _check_trained_parts

    run, written = _copy_of_run(fsq_run, tmp_path / "run")
    resume = ["fit", "--config", str(run / "config.yaml"), "--trainer.default_root_dir", str(run), "--ckpt_path", "last",
              "--trainer.max_steps", "3"]
    for flags, expected in ((["--model.ema_decay", "null"], "trained with an EMA copy, and model.ema_decay=None drops it"),
                            (["--model.adversarial.channels", "8"], "trained without a discriminator, and model.adversarial adds it")):  # fmt: skip
        with pytest.raises(SystemExit) as exit_info:
            main([*resume, *flags])
        message = capsys.readouterr().err
        assert exit_info.value.code == 2 and expected in message and f"--model.init_from {run}" in message, message
        assert (run / "config.yaml").read_bytes() == written, "a refused resume rewrote the run's config"
    with pytest.raises(SystemExit):  # so is a validate (it failed at loading, advising the config it was given)
        main(["validate", "--config", str(run / "config.yaml"), "--ckpt_path", "last", "--model.ema_decay", "null"])
    assert "model.ema_decay=None drops it: scoring a checkpoint loads every part it trained" in capsys.readouterr().err
    main(tiny_fit_args(tmp_path, 1, "--trainer.logger", "false", "--model.adversarial.channels", "8",
                       "--model.adversarial.layers", "2", run="gan"))  # fmt: skip
    gan = tmp_path / "gan"
    written = (gan / "config.yaml").read_bytes()
    with pytest.raises(SystemExit) as exit_info:  # jsonargparse writes the class as vtok.losses.AdversarialLoss
        main(["fit", "--config", str(gan / "config.yaml"), "--ckpt_path", "last", "--model.adversarial.channels", "16"])
    message = capsys.readouterr().err
    assert exit_info.value.code == 2 and "holds another discriminator than model.adversarial builds" in message, message
    assert "channels=16, layers=2" in message and (gan / "config.yaml").read_bytes() == written
    saved = {f"adversarial.{key}": value for key, value in AdversarialLoss(channels=8, layers=2).state_dict().items()}
    given = {"ema_decay": None, "adversarial": {"class_path": "vtok.losses.AdversarialLoss"}}
    for arguments, refused in (({"channels": 8, "layers": 2}, False), ({"channels": 8, "layers": 2, "norm": "group"}, True),
                               ({"channels": 8, "layers": 2, "weight": 0.5, "start_step": 9}, False)):  # fmt: skip
        given["adversarial"]["init_args"] = arguments
        if refused:
            with pytest.raises(UsageError, match="holds another discriminator than model.adversarial builds"):
                _check_trained_parts("run/checkpoints/last.ckpt", saved, given)
        else:
            _check_trained_parts("run/checkpoints/last.ckpt", saved, given)  # its weight, start, ... may change


def test_missing_lpips_weights_stop_fit_at_setup(capsys: pytest.CaptureFixture, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    message = _fit_error(capsys, "--model.loss.perceptual_weight", "0.1", "--trainer.default_root_dir", str(tmp_path))
    assert "vgg16-397923af.pth" in message and "perceptual_weight 0" in message and "Traceback" not in message


def test_missing_data_is_a_one_line_error(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    message = _fit_error(capsys, "--data.path", str(tmp_path / "nowhere"), "--trainer.default_root_dir", str(tmp_path))
    assert message.startswith("vtok: error:") and "nowhere" in message and "Traceback" not in message


def test_importing_from_the_repository_root_shadows_nothing() -> None:
    code = "import vtok, lightning, diffusers; from diffusers import AutoencoderKL; print(vtok.__file__)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).is_relative_to(ROOT / "vtok")
    for shadowing in ("tokenizers", "data", "vae"):
        assert not (ROOT / shadowing / "__init__.py").exists()


def test_checkpoint_and_data_mistakes_are_one_line_errors(
    capsys: pytest.CaptureFixture, tmp_path: Path, video_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = ("--trainer.default_root_dir", str(tmp_path))
    assert "no such file" in _fit_error(capsys, "--ckpt_path", str(tmp_path / "nowhere.ckpt"), *root)
    (tmp_path / "notes.ckpt").write_text("not a checkpoint")
    message = _fit_error(capsys, "--ckpt_path", str(tmp_path / "notes.ckpt"), *root)
    assert "notes.ckpt is not a torch checkpoint" in message and "weights_only" not in message, message
    assert "is a folder" in _fit_error(capsys, "--ckpt_path", str(tmp_path), *root)
    torch.save({"weights": torch.zeros(1)}, tmp_path / "foreign.ckpt")
    assert "not a Lightning training checkpoint" in _fit_error(capsys, "--ckpt_path", str(tmp_path / "foreign.ckpt"), *root)
    assert "data.batch_size must be at least 1" in _fit_error(capsys, "--data.batch_size", "0", *root)
    assert "height=-64 must be positive" in _fit_error(capsys, "--data.size", "-64", *root)
    message = _fit_error(capsys, "--data.size", "[]", *root)
    assert "data.size must be one positive number or [height, width], got []" in message and "Traceback" not in message
    message = _fit_error(capsys, "--data.path", str(video_folder), "--data.batch_size", "8", "--data.size", "32", *root)
    assert "the training split has 6 files (2 more held out by data.val_fraction" in message, message
    (tmp_path / "torn.jsonl").write_text(json.dumps({"path": str(next(video_folder.glob("*.mp4")))}) + '\n{"path": \n')
    message = _fit_error(capsys, "--data.path", str(tmp_path / "torn.jsonl"), *root)
    assert "torn.jsonl, line 2, is not valid JSON" in message
    built = []
    monkeypatch.setattr("vtok.cli.VtokCLI.instantiate_trainer", lambda self, **kwargs: built.append(1))
    with pytest.raises(SystemExit) as exit_info:
        main(["validate", "--trainer.logger", "false", *root])
    assert exit_info.value.code == 2 and "vtok validate needs --ckpt_path" in capsys.readouterr().err
    assert not built, "refused before the Trainer is built (it prints its devices first)"
    monkeypatch.undo()
    with pytest.raises(SystemExit) as exit_info:
        main(["validate", "--trainer.logger", "false", *root, "--ckpt_path", "best"])
    assert exit_info.value.code == 2 and "give a checkpoint file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # a run trained without validation: its config scored nothing, exit 0
        main(["validate", "--trainer.logger", "false", *root, "--trainer.limit_val_batches", "0", "--ckpt_path", "last"])
    assert exit_info.value.code == 2 and "--trainer.limit_val_batches 1.0" in capsys.readouterr().err


def test_a_damaged_lpips_file_is_named_in_one_line(capsys: pytest.CaptureFixture, tmp_path: Path, vgg_weights: Path) -> None:
    (tmp_path / "cut").write_bytes(vgg_weights.read_bytes()[:4096])  # a download cut short
    (tmp_path / "cut").replace(vgg_weights)  # a new file: the session's one, linked here, stays whole
    message = _fit_error(capsys, "--model.loss.perceptual_weight", "0.1", "--trainer.default_root_dir", str(tmp_path))
    assert f"{vgg_weights} is not torchvision's VGG16 weights" in message and "curl" in message
    assert "Union" not in message and "Traceback" not in message


def test_launcher_settings_that_cannot_work_are_refused_before_training(
    capsys: pytest.CaptureFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {"WORLD_SIZE": "16", "LOCAL_WORLD_SIZE": "8", "TORCHELASTIC_RUN_ID": "none"}.items():
        monkeypatch.setenv(name, value)  # a 2-node x 8-GPU torchrun launch, as each rank sees it
    root = ("--trainer.default_root_dir", str(tmp_path))
    assert "trainer.devices=4 disagrees with the torchelastic launch (8)" in _fit_error(capsys, "--trainer.devices", "4", *root)
    assert "trainer.num_nodes=3 disagrees" in _fit_error(capsys, "--trainer.num_nodes", "3", *root)
    assert "FSDP is not supported" in _fit_error(capsys, "--trainer.strategy", "fsdp", *root)
    assert "a multi-process run needs --trainer.default_root_dir" in _fit_error(capsys)  # no run id to name it by
    monkeypatch.delenv("WORLD_SIZE")
    fsdp = "lightning.pytorch.strategies.FSDPStrategy"
    assert "FSDP is not supported" in _fit_error(capsys, "--trainer.strategy", fsdp, *root), "nor launched, nor by class"


def test_a_wrong_perceptual_backbone_file_is_never_advised_to_be_overwritten(tmp_path: Path) -> None:
    wrong = tmp_path / "config.json"  # e.g. an export's config, passed by mistake
    wrong.write_text("{}")
    with pytest.raises(ValueError) as error:
        load_lpips_vgg(wrong)
    assert f"curl -L -o {wrong}" not in str(error.value) and "model.loss.perceptual_backbone" in str(error.value)


def test_a_resume_goes_on_in_its_run_with_the_flags_given_and_a_rerun_starts_a_new_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)  # runs/<date-time> lands here
    arguments = tiny_fit_args(tmp_path, 2, "--trainer.logger", "false", "--data.frame_stride", "2")
    at = arguments.index("--trainer.default_root_dir")
    main(arguments[:at] + arguments[at + 2 :])  # no run folder given: vtok makes one
    (run,) = (tmp_path / "runs").iterdir()
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["trainer"]["default_root_dir"] is None and saved["ckpt_path"] is None, "derived, not saved"
    assert saved["trainer"]["precision"] is None, "fp32 on this CPU; a rerun on a GPU derives bf16"
    clip = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["vtok"]["clip"]
    assert clip == {"num_frames": 5, "size": [32, 32], "frame_stride": 2, "fps": None}, "what evaluate defaults to"

    # resume: no run folder given, it is the checkpoint's; a flag given to resume with wins over the checkpoint's
    config = run / "config.yaml"
    main(["fit", "--config", str(config), "--ckpt_path", str(run / "checkpoints" / "last.ckpt"), "--trainer.max_steps", "3",
          "--model.grad_clip", "0.5", "--model.optimizer.lr", "0.001"])  # fmt: skip
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [run.name]
    resumed = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["global_step"] == 3 and resumed["hyper_parameters"]["grad_clip"] == 0.5
    assert "model.grad_clip=0.5, where the checkpoint trained with 1.0" in caplog.text
    # so does a new learning rate, laid over the optimizer state that brought back the old one
    assert "model.optimizer.lr=0.001, where the checkpoint trained with 0.0002" in caplog.text
    assert "model.optimizer: learning rate 0.0003 from step 2 on, where the checkpoint's settings give 6e-05" in caplog.text  # warm-up
    groups = resumed["optimizer_states"][0]["param_groups"]
    assert [(group["initial_lr"], group["lr"]) for group in groups] == [(0.001, pytest.approx(0.001 * 4 / 10))], "warm-up step 3 of 10"
    assert resumed["optimizer_states"][0]["state"][0]["step"] == 3, "Adam's moments and step count came back"
    assert yaml.safe_load(config.read_text())["ckpt_path"] is None, "a rerun of config.yaml must not resume"

    # a fresh run into a folder with checkpoints is refused; the same config without a folder gets its own
    message = _fit_error(capsys, "--config", str(config), "--trainer.default_root_dir", str(run))
    assert "already holds a run's checkpoints" in message and f"--ckpt_path {run / 'checkpoints' / 'last.ckpt'}" in message
    main(["fit", "--config", str(config), "--trainer.max_steps", "1"])
    assert len(list((tmp_path / "runs").iterdir())) == 2
    assert "--trainer.default_root_dir" in _fit_error(capsys, "--ckpt_path", "last")  # a new folder has nothing to resume
    caplog.clear()
    main(["validate", "--config", str(config), "--ckpt_path", "last", "--model.grad_clip", "0.9"])  # config.yaml says where
    assert "where the checkpoint trained with" not in caplog.text, "validate trains nothing: no 'going on with' a setting"
    assert len(list((tmp_path / "runs").iterdir())) == 2
    caplog.clear()  # "last" is resolved to its file, whose settings are compared as a named file's are
    main(["fit", "--config", str(config), "--ckpt_path", "last", "--trainer.max_steps", "4", "--model.grad_clip", "0.25"])
    assert "model.grad_clip=0.25, where the checkpoint trained with 0.5" in caplog.text

    # checkpoints but no last*.ckpt: "last" started a fresh run beside them
    (run / "checkpoints" / "last.ckpt").rename(run / "checkpoints" / "step=4.ckpt")
    message = _fit_error(capsys, "--config", str(config), "--ckpt_path", "last", "--trainer.max_steps", "5")
    assert f"holds checkpoints but no last.ckpt; name the one to resume from (the newest: --ckpt_path {run}" in message
    # a run folder that is a file, or under one: one line before anything is built (was a traceback from the logger)
    (tmp_path / "afile").write_text("")
    for folder in (tmp_path / "afile", tmp_path / "afile" / "sub"):
        assert f"{tmp_path / 'afile'} is a file, not a folder" in _fit_error(capsys, "--trainer.default_root_dir", str(folder))


def test_a_launched_run_resumes_in_its_folder_and_a_requeued_slurm_job_is_not_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_distributed import _fit_as_torchrun_rank

    monkeypatch.chdir(tmp_path)
    arguments = tiny_fit_args(tmp_path, 2, "--trainer.logger", "false")
    at = arguments.index("--trainer.default_root_dir")
    first = _fit_as_torchrun_rank(monkeypatch, tmp_path, 2, restart_count=0, arguments=arguments[:at] + arguments[at + 2 :])
    assert first == [1, 2] and [p.name for p in (tmp_path / "runs").iterdir()] == ["job42"]
    config = tmp_path / "runs" / "job42" / "config.yaml"
    assert yaml.safe_load(config.read_text())["trainer"]["default_root_dir"] is None, "a rerun gets a folder of its own"
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job43")  # a new launch resuming the old run goes on in its folder
    resume = ["fit", "--config", str(config), "--ckpt_path", str(config.parent / "checkpoints" / "last.ckpt"), "--trainer.max_steps", "3"]
    assert _fit_as_torchrun_rank(monkeypatch, tmp_path, 3, restart_count=0, arguments=resume) == [3]
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["job42"]

    # one SLURM task (no launcher), requeued: the same command goes on from its newest checkpoint
    for name in ("WORLD_SIZE", "LOCAL_WORLD_SIZE", "RANK", "LOCAL_RANK", "GROUP_RANK", "TORCHELASTIC_RUN_ID",
                 "TORCHELASTIC_RESTART_COUNT", "SLURM_NTASKS_PER_NODE", "SLURM_NNODES"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    for name, value in (("SLURM_NTASKS", "1"), ("SLURM_JOB_NAME", "train"), ("SLURM_JOB_ID", "job42"), ("SLURM_RESTART_COUNT", "1")):
        monkeypatch.setenv(name, value)
    shutil.copy(config.parent / "checkpoints" / "last.ckpt", config.parent / "hpc_ckpt_1.ckpt")
    main(["fit", "--config", str(config), "--trainer.max_steps", "4"])  # no folder given: the job's, runs/<job id>
    assert torch.load(config.parent / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["job42"], "a requeue started over in a new folder"
    # a new job (not requeued) into a folder holding a requeue checkpoint older than last.ckpt: refused, not resumed
    # from the older step by Lightning (which takes an hpc checkpoint by itself under SLURM)
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(config), "--trainer.default_root_dir", str(config.parent), "--trainer.max_steps", "5"])
    assert torch.load(config.parent / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4
    # a job script that passes --ckpt_path last: the requeue checkpoint when it is the newest
    checkpoints = config.parent / "checkpoints"
    shutil.copy(checkpoints / "last.ckpt", config.parent / "hpc_ckpt_2.ckpt")  # step 4
    shutil.copy(config.parent / "hpc_ckpt_1.ckpt", checkpoints / "last.ckpt")  # step 3, older
    os.utime(checkpoints / "last.ckpt", (1e9, 1e9))
    record = ["--trainer.callbacks+", "tests.helpers.RecordSamples", "--trainer.callbacks.folder", str(tmp_path / "record")]
    main(["fit", "--config", str(config), "--trainer.default_root_dir", str(config.parent), "--trainer.max_steps", "5",
          "--ckpt_path", "last", *record])  # fmt: skip
    assert [row["step"] for row in json.loads((tmp_path / "record" / "rank0.json").read_text())["rows"]] == [5]


def test_checkpointing_off_and_a_missing_accelerator_are_handled(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    main(tiny_fit_args(tmp_path, 1, "--trainer.logger", "false", "--trainer.enable_checkpointing", "false"))
    assert not (tmp_path / "run" / "checkpoints").exists()
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["trainer"]["callbacks"]
    assert any(c["class_path"].endswith("ModelCheckpoint") for c in saved), "a rerun with checkpointing keeps them"
    if not torch.cuda.is_available():
        message = _fit_error(capsys, "--trainer.accelerator", "cuda", "--trainer.default_root_dir", str(tmp_path / "gpu"))
        assert "CUDAAccelerator" in message and "Traceback" not in message


def test_a_preset_is_found_from_any_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """After a plain pip install there is no configs/ folder beside the user: the README's
    ``--config configs/<preset>.yaml`` names the preset shipped in the package."""
    monkeypatch.chdir(tmp_path)
    for given in (["--config", "configs/gq_4x8x8.yaml"], ["--config=gq_4x8x8.yaml"], ["-c", "gq_4x8x8.yaml"]):
        with pytest.raises(SystemExit):
            main(["fit", *given, "--print_config"])
        assert yaml.safe_load(capsys.readouterr().out)["model"]["autoencoder"]["init_args"]["gq_bits"] == 18
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "gq_4x8x8.yaml").write_text("model:\n  grad_clip: 0.5\n")
    with pytest.raises(SystemExit):
        main(["fit", "--config", "configs/gq_4x8x8.yaml", "--print_config"])  # a file of that name here wins
    assert yaml.safe_load(capsys.readouterr().out)["model"]["grad_clip"] == 0.5
    with pytest.raises(SystemExit):  # flags win wherever they are written (the file used to undo a flag before it)
        main(["fit", "--model.grad_clip", "2.0", "--config", "configs/gq_4x8x8.yaml", "--data.batch_size", "3", "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert (printed["model"]["grad_clip"], printed["data"]["batch_size"]) == (2.0, 3)
    with pytest.raises(SystemExit):  # a misspelt preset: one line listing the presets, not an 80-line usage
        main(["fit", "--config", "configs/kl_4x8x9.yaml", "--print_config"])
    error = capsys.readouterr().err
    assert "kl_4x8x9.yaml: no such file here, nor a preset shipped with vtok (presets: default.yaml" in error
    assert "kl_4x8x8.yaml" in error and "usage:" not in error


def test_vtok_test_scores_data_test_path_as_validate_scores_its_files(
    capsys: pytest.CaptureFixture, tmp_path: Path, fsq_run: dict[str, Path], video_folder: Path
) -> None:
    run, written = _copy_of_run(fsq_run, tmp_path / "run")
    given = ["--config", str(run / "config.yaml"), "--ckpt_path", str(run / "checkpoints" / "last.ckpt"),
             "--trainer.default_root_dir", str(run)]  # fmt: skip
    main(["validate", *given, "--data.val_path", str(video_folder), *csv_logger(tmp_path, "validated")])
    main(["test", *given, "--data.test_path", str(video_folder), *csv_logger(tmp_path, "tested")])
    assert (run / "config.yaml").read_bytes() == written, "test rewrote the config that reruns and resumes use"
    for logged in ("validated", "tested"):  # where the fit logs validation: at its last batch's index (of 2), not at 0
        assert metric_column(tmp_path / logged, "step") == [1.0]
        hparams = yaml.safe_load(next((tmp_path / logged).rglob("hparams.yaml")).read_text())
        # the loggers get the whole config, as the fit's do, and the checkpoint scored
        assert hparams["data"]["num_frames"] == 5 and hparams["run"]["resumed_from"] == str(run / "checkpoints" / "last.ckpt")
    assert {p.name for p in (run / "reconstructions").glob("*_step_*.png")} == {"val_step_0000001.png", "test_step_0000001.png"}
    for metric in ("psnr", "ssim", "l1"):
        (tested,) = metric_column(tmp_path / "tested", f"test/{metric}")
        assert tested == pytest.approx(metric_column(tmp_path / "validated", f"val/{metric}")[0], rel=1e-6), metric
    with pytest.raises(SystemExit) as exit_info:
        main(["test", *given, "--trainer.logger", "false"])
    message = capsys.readouterr().err
    assert exit_info.value.code == 2 and "pass --data.test_path" in message and "Traceback" not in message
    with pytest.raises(SystemExit) as exit_info:
        main(["test", "--config", str(run / "config.yaml"), "--data.test_path", str(video_folder)])
    assert exit_info.value.code == 2 and "vtok test needs --ckpt_path" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # a folder without checkpoints: not the untrained network's scores
        main(["test", *given[:2], "--ckpt_path", "last", "--trainer.default_root_dir", str(tmp_path / "empty"),
              "--data.test_path", str(video_folder), "--trainer.logger", "false"])  # fmt: skip
    assert exit_info.value.code == 2 and "holds no last.ckpt to test" in capsys.readouterr().err


def test_a_config_whose_callbacks_list_drops_the_checkpoints_is_warned_of(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = tmp_path / "pictures_only.yaml"
    config.write_text("trainer:\n  callbacks:\n    - class_path: vtok.training.ReconstructionPictures\n")
    with caplog.at_level("WARNING", logger="vtok.cli"):
        main(tiny_fit_args(tmp_path, 1, "--trainer.logger", "false", "--trainer.limit_val_batches", "0", config=config))
    assert "trainer.callbacks names no ModelCheckpoint" in caplog.text and "--trainer.callbacks+=" in caplog.text
    assert not (tmp_path / "run" / "checkpoints" / "last.ckpt").exists(), "what the warning is about"


class KeepBest(ModelCheckpoint):
    """A user's checkpoint callback whose name does not say so."""


def test_a_model_checkpoint_subclass_counts_as_the_run_s_checkpoints() -> None:
    assert _is_checkpoint("tests.test_configs.KeepBest") and _is_checkpoint("lightning.pytorch.callbacks.ModelCheckpoint")
    assert not _is_checkpoint("vtok.training.ReconstructionPictures")


def test_ckpt_path_last_with_a_run_config_finds_a_run_requeued_before_its_first_checkpoint(tmp_path: Path) -> None:
    from vtok.run_folder import resumed_run_folder, run_folder
    from vtok.usage_error import UsageError

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("{}\n")
    config = {"ckpt_path": "last", "config": [str(run / "config.yaml")]}
    assert resumed_run_folder(config) is None, "nothing to resume"
    with pytest.raises(UsageError, match=f"{run} holds no checkpoint yet.*--trainer.default_root_dir {run} "):
        run_folder(config)  # the advice is not to give the config.yaml that was given
    (run / "hpc_ckpt_1.ckpt").write_bytes(b"")  # SLURM's requeue checkpoint only, no checkpoints/ yet
    assert resumed_run_folder(config) == str(run)


def test_runs_started_in_the_same_second_get_a_folder_each(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Two fits started at once (a sweep) wrote into one runs/<date-time>: one config.yaml, one last.ckpt."""
    from vtok.run_folder import claim_new_run_folder

    monkeypatch.setattr("time.strftime", lambda form: "20261127-163343")  # the same second for all of them
    claimed = [claim_new_run_folder(tmp_path / "runs") for _ in range(3)]
    assert [Path(folder).name for folder in claimed] == ["20261127-163343", "20261127-163343-2", "20261127-163343-3"]
    assert all(Path(folder).is_dir() for folder in claimed), "each is made, so no other run can take it"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):  # refused after the folder was claimed: it is not left behind, empty
        main(["validate", "--trainer.logger", "false"])
    assert "vtok validate needs --ckpt_path" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # refused later, when the data module is built
        main(["fit", "--trainer.logger", "false", "--data.path", str(tmp_path / "nowhere")])
    assert "data.path" in capsys.readouterr().err
    assert sorted(path.name for path in (tmp_path / "runs").iterdir()) == [Path(folder).name for folder in claimed]


def test_data_is_probed_before_the_trainer_only_when_it_runs_one_process(tmp_path: Path) -> None:
    """Lightning's own launch of devices=2 sets WORLD_SIZE only when it starts the processes: the early
    probe ran as one rank on rank 0 (its shard quotas checked for one) and was never redone."""
    for devices, probed in ((1, ["fit"]), (2, [])):
        cli = VtokCLI(
            args=["--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path / str(devices)),
                  "--trainer.accelerator", "cpu", "--trainer.devices", str(devices), "--data.synthetic_videos", "4",
                  "--data.synthetic_dir", str(tmp_path / "clips")],
            run=False,
        )  # fmt: skip
        stages: list[str] = []
        cli.datamodule.setup = stages.append  # what the early probe would call
        cli.datamodule.prepare_data = lambda: None
        cli._check_data("fit")
        assert stages == probed, devices

