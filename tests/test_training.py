"""Training through the real entry points: the loss falls, checkpoints and pictures are written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch import Trainer
from torch.utils.data import DataLoader
from torchvision.io import read_image, write_png

from tests.helpers import csv_logger, metric_column, tiny_fit_args
from vtok import VideoAutoencoder
from vtok.cli import main
from vtok.presets import CONFIG_DIR, DEFAULT_CONFIG, with_packaged_presets
from vtok.evaluation.metrics import psnr_per_video, ssim_per_video
from vtok.training import AutoencoderModule
from vtok.training.pictures import comparison_grid

ROOT = Path(__file__).resolve().parents[1]


def test_fit_lowers_the_loss_and_writes_checkpoints_and_pictures(tmp_path: Path) -> None:
    main(
        tiny_fit_args(tmp_path, 40, *csv_logger(tmp_path), "--trainer.check_val_every_n_epoch", "4",
                      "--model.optimizer.lr", "3e-4")  # fmt: skip
    )
    l1 = metric_column(tmp_path / "run", "train/l1")
    assert len(l1) == 40
    first, last = sum(l1[:10]) / 10, sum(l1[-10:]) / 10
    assert last < 0.9 * first, f"L1 did not fall: {first:.3f} over the first 10 steps, {last:.3f} over the last 10"
    assert metric_column(tmp_path / "run", "val/psnr"), "validation ran and logged PSNR"
    assert all(0 < v <= 1 for v in metric_column(tmp_path / "run", "val/ssim")), "and SSIM, from vtok.evaluation.metrics"
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["vtok"]["autoencoder_config"]["block_out_channels"] == [16, 32]
    assert checkpoint["vtok"]["batch_step"] == 40
    pictures = sorted(p.name for p in (tmp_path / "run" / "reconstructions").iterdir())
    # validation every 4 epochs of 3 batches, pictured at the index of the batch it follows (as its metrics are logged)
    held_out = [f"val_step_{step:07d}.{kind}" for step in (11, 23, 35) for kind in ("mp4", "png")]
    assert pictures == ["step_0000000.mp4", "step_0000000.png", "step_0000039.mp4", "step_0000039.png", *held_out]
    first, last = (read_image(str(tmp_path / "run" / "reconstructions" / f"val_step_{s:07d}.png")) for s in (11, 35))
    assert torch.equal(first[:, :34], last[:, :34]), "the same held-out clip every validation"
    assert not torch.equal(first[:, 34:68], last[:, 34:68]), "as the weights of each time reconstruct it"
    for png in ("step_0000000.png", "step_0000039.png"):  # 2 clips: 5 input frames (32x32, 2 px apart) over their reconstruction
        grid = read_image(str(tmp_path / "run" / "reconstructions" / png)).float()
        assert grid.shape == (3, 4 * 34 + 2, 5 * 34 + 2)
        rows = [grid[:, 2 + 34 * row : 34 + 34 * row] for row in range(4)]
        for inputs, reconstruction in (rows[0], rows[1]), (rows[2], rows[3]):  # ~35-50 apart on 0..255
            assert (inputs - reconstruction).abs().mean() > 5, f"{png} shows no reconstruction under the input"
    assert list((tmp_path / "run").rglob("config.yaml")), "the resolved config is saved with the run"
    hparams = yaml.safe_load(next((tmp_path / "run").rglob("hparams.yaml")).read_text())  # and given to the loggers
    assert hparams["model"]["autoencoder"]["init_args"]["block_out_channels"] == [16, 32] and hparams["data"]["num_frames"] == 5
    assert hparams["trainer"]["max_steps"] == 40 and hparams["ema_decay"] == 0.999, "beside the module's own"


def test_every_loss_on_trains_through_the_discriminator_start(tmp_path: Path, vgg_weights: Path) -> None:
    main(
        tiny_fit_args(
            tmp_path, 30, *csv_logger(tmp_path), "--trainer.check_val_every_n_epoch", "100",
            "--model.optimizer.lr", "3e-4",
            "--model.loss.perceptual_weight", "0.1", "--model.loss.perceptual_frames", "2",
            "--model.adversarial.discriminator", "patch3d", "--model.adversarial.channels", "8",
            "--model.adversarial.start_step", "10", "--model.adversarial.lecam_weight", "0.01",
            "--model.ema_decay", "0.99",
        )  # fmt: skip
    )
    run = tmp_path / "run"
    l1, perceptual = metric_column(run, "train/l1"), metric_column(run, "train/perceptual")
    generator = metric_column(run, "train/adversarial_generator")
    hinge = metric_column(run, "train/discriminator_hinge")
    assert len(l1) == len(perceptual) == len(generator) == 30
    assert all(g == 0 for g in generator[:10]) and all(g != 0 for g in generator[10:]), "adversarial from step 10"
    assert all(h > 0 for h in hinge)
    assert sum(l1[-10:]) < 0.9 * sum(l1[:10]), f"L1 did not fall: {l1[:10]} -> {l1[-10:]}"
    assert metric_column(run, "train/disc_grad_norm")[-1] > 0
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert any(k.startswith("ema.module.") for k in state) and any(k.startswith("adversarial.") for k in state)
    assert not any("perceptual" in k for k in state), "LPIPS weights stay out of the checkpoint"


def test_console_script_trains_with_offline_wandb(tmp_path: Path) -> None:
    vtok = shutil.which("vtok")
    command = [vtok] if vtok else [sys.executable, str(ROOT / "train.py")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    result = subprocess.run(
        [*command, *tiny_fit_args(tmp_path, 4)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = subprocess.run([*command, *tiny_fit_args(tmp_path, 6), "--ckpt_path", "last"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=600)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # a normal run's console holds no library noise a user cannot act on (vtok/console.py)
    for noise in ("wandb: WARNING", "set_vital", "LeafSpec", "litlogger", "exists and is not empty", "logging interval"):
        assert noise not in result.stderr + result.stdout + resumed.stderr + resumed.stdout, noise
    offline = min((tmp_path / "run" / "wandb").glob("offline-run-*"))  # wandb logs offline into the run folder; the
    # resumed launch wrote a second offline run beside the first (wandb 0.31 cannot resume an offline run)
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    assert not (tmp_path / "wandb").exists()
    # the picture wandb holds is the one in the run folder (a float grid once reached it as a black image)
    logged = sorted((offline / "files" / "media" / "images").rglob("*.png"))
    assert logged, "the first batch's picture reached wandb"
    saved = read_image(str(tmp_path / "run" / "reconstructions" / "step_0000000.png"))
    assert torch.equal(read_image(str(logged[0])), saved) and int(saved.max()) > 128


def test_train_py_is_the_same_entry_point() -> None:
    commands = ([sys.executable, "train.py"], [sys.executable, "-m", "vtok.cli"], [sys.executable, "-m", "vtok"])
    started = [subprocess.Popen([*command, "fit", "--print_config"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for command in commands]  # together: each spends seconds importing  # fmt: skip
    printed = []
    for process in started:
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr[-2000:]
        printed.append(stdout)
    assert printed[0] == printed[1] == printed[2]


def test_comparison_grid_puts_each_input_over_its_reconstruction() -> None:
    torch.manual_seed(0)
    video, reconstruction = torch.rand(2, 3, 3, 9, 6, 4) * 2 - 1  # 3 clips of 9 frames of 6x4
    grid = comparison_grid(video, reconstruction, max_videos=2, max_frames=3)
    # frames 0, 4 and 8 of the first 2 clips: rows of input over reconstruction, tiles 2 pixels apart
    assert grid.shape == (3, 4 * 8 + 2, 3 * 6 + 2)
    for row, clip in enumerate([video[0], reconstruction[0], video[1], reconstruction[1]]):
        for column, frame in enumerate([0, 4, 8]):
            tile = grid[:, 2 + 8 * row : 8 + 8 * row, 2 + 6 * column : 6 + 6 * column]
            torch.testing.assert_close(tile, clip[:, frame].add(1).div(2), msg=f"row {row}, column {column}")


def test_images_train_beside_the_videos_in_batches_of_their_own(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for index in range(6):  # 40x48 gradients: resized and cropped to 32x32 like the clips' frames
        ramp = torch.linspace(0, 255, 48).expand(40, 48)
        write_png((torch.stack([ramp, ramp.flip(1), torch.full_like(ramp, 40.0 * index)])).to(torch.uint8), str(images / f"{index}.png"))
    main(
        tiny_fit_args(tmp_path, 6, *csv_logger(tmp_path), "--trainer.check_val_every_n_epoch", "100",
                      "--data.image_path", str(images), "--data.image_batch_size", "3")  # fmt: skip
    )
    run = tmp_path / "run"
    video_l1, image_l1 = metric_column(run, "train/l1"), metric_column(run, "train/images_l1")
    assert len(video_l1) == len(image_l1) == 6, "every step trains on a batch of clips and a batch of images"
    assert all(0 < value < 2 for value in image_l1) and image_l1 != video_l1
    parts = zip(metric_column(run, "train/loss"), metric_column(run, "train/images_loss"), strict=True)
    assert metric_column(run, "train/total_loss") == pytest.approx([videos + images for videos, images in parts])


@pytest.mark.parametrize("save_last", ["true", "link"])
def test_last_ckpt_holds_the_final_step_when_the_run_ends_between_periodic_saves(tmp_path: Path, save_last: str) -> None:
    config = tmp_path / "every5.yaml"
    config.write_text(
        "trainer:\n  callbacks:\n    - class_path: lightning.pytorch.callbacks.ModelCheckpoint\n      init_args:\n"
        f"        filename: '{{step}}'\n        every_n_train_steps: 5\n        save_last: {save_last}\n        save_top_k: -1\n"
    )
    main(tiny_fit_args(tmp_path, 7, "--trainer.logger", "false", config=config))
    folder = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["last.ckpt", "step=5.ckpt"]
    assert torch.load(folder / "step=5.ckpt", weights_only=True)["global_step"] == 5
    assert torch.load(folder / "last.ckpt", weights_only=True)["global_step"] == 7, "steps 6 and 7 were saved nowhere"


def test_a_time_interval_saves_after_the_batches_that_step(tmp_path: Path) -> None:
    """Lightning's manual-optimisation branch saved by every_n_train_steps only: a train_time_interval never
    saved. Each save comes at the end of an accumulation group (mid-way, its summed gradients would be lost)."""
    config = tmp_path / "timed.yaml"
    config.write_text(
        "trainer:\n  callbacks:\n    - class_path: lightning.pytorch.callbacks.ModelCheckpoint\n      init_args:\n"
        "        filename: '{step}'\n        train_time_interval: '0:00:00'\n        save_last: true\n        save_top_k: -1\n"
    )
    main(tiny_fit_args(tmp_path, 3, "--trainer.logger", "false", "--model.accumulate_batches", "2", config=config))
    folder = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["last.ckpt", "step=1.ckpt", "step=2.ckpt", "step=3.ckpt"]
    saved = [torch.load(folder / f"step={step}.ckpt", weights_only=True) for step in (1, 2, 3)]
    assert [state["global_step"] for state in saved] == [1, 2, 3]
    # three batches an epoch (6 training clips, 2 a batch): groups end at batches 2, 3 (the epoch's last) and 5
    assert [state["vtok"]["batch_step"] for state in saved] == [2, 3, 5], "saved where a group ends, not mid-way"


@pytest.mark.parametrize("validation", [[], ["--trainer.limit_val_batches", "0"], ["--data.val_fraction", "0"]],
                         ids=["every_fifth_epoch", "limit_val_batches_0", "none_held_out"])  # fmt: skip
def test_every_n_epochs_saves_at_each_epochs_end(tmp_path: Path, validation: list[str]) -> None:
    """Lightning saves every_n_epochs after a validation when check_val_every_n_epoch is not 1 (default.yaml's 5):
    these two epochs wrote last.ckpt alone, as did any run that never validates."""
    config = tmp_path / "epochs.yaml"
    config.write_text(
        "trainer:\n  callbacks:\n    - class_path: lightning.pytorch.callbacks.ModelCheckpoint\n      init_args:\n"
        "        filename: '{epoch}'\n        every_n_epochs: 1\n        save_last: true\n        save_top_k: -1\n"
    )
    main(tiny_fit_args(tmp_path, -1, "--trainer.logger", "false", "--trainer.max_epochs", "2", *validation, config=config))
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["epoch=0.ckpt", "epoch=1.ckpt", "last.ckpt"]


@pytest.mark.parametrize("ema_decay", [None, 0.5])
def test_validation_scores_in_fp32_under_bf16_autocast(ema_decay: float | None) -> None:
    """With an EMA copy, validation scores the EMA weights (found by a mutation review: scoring the live ones
    passed)."""
    torch.manual_seed(0)
    module = AutoencoderModule(VideoAutoencoder(block_out_channels=[8, 16], latent_channels=4, layers_per_block=1),
                               ema_decay=ema_decay)  # fmt: skip
    if ema_decay is not None:
        with torch.no_grad():
            module.inference_autoencoder.decoder.conv_out.bias.add_(0.3)  # the EMA copy apart from the live weights
    video = torch.rand(2, 3, 5, 32, 32) * 2 - 1
    trainer = Trainer(precision="bf16-mixed", accelerator="cpu", logger=False, enable_progress_bar=False,
                      enable_model_summary=False)  # fmt: skip
    (logged,) = trainer.validate(module, DataLoader([{"video": video}], batch_size=None), verbose=False)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # the network as validation ran it
        reconstruction = module.eval().inference_autoencoder(video, sample_posterior=False).reconstruction
    assert logged["val/ssim"] == pytest.approx(ssim_per_video(reconstruction.float(), video).mean().item(), rel=1e-5)
    assert logged["val/psnr"] == pytest.approx(psnr_per_video(reconstruction.float(), video).mean().item(), rel=1e-5)
    if ema_decay is not None:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            live = module.autoencoder(video, sample_posterior=False).reconstruction
        assert logged["val/psnr"] != pytest.approx(psnr_per_video(live.float(), video).mean().item(), rel=1e-3)


def test_frames_smaller_than_the_ssim_window_validate_without_ssim(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clips = ["--data.size", "8", "--data.synthetic_dir", str(tmp_path / "clips8")]  # 8x8 frames: 1x1 latents
    main(tiny_fit_args(tmp_path, 3, *csv_logger(tmp_path), *clips, "--trainer.check_val_every_n_epoch", "1"))
    assert metric_column(tmp_path / "run", "val/psnr"), "validation ran and scored PSNR"
    assert not metric_column(tmp_path / "run", "val/ssim")
    assert "val/ssim is not logged: frames of 8x8 are smaller than SSIM's 11x11 window" in caplog.text


def test_training_samples_from_sources_smaller_than_the_size_are_counted_each_epoch(
    tmp_path: Path, video_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A folder's frame sizes are known only as its files are read: samples of the 40x64 sources,
    enlarged to 48x48, are counted per epoch, and the first such source is named once."""
    from vtok.data import write_sample_clips

    folder = tmp_path / "videos"
    write_sample_clips(folder, count=4, frames=20, height=64, width=80, seed=2)  # large enough for 48x48
    for video in sorted(video_folder.glob("*.mp4"))[:4]:
        (folder / f"small_{video.name}").symlink_to(video)
    data = ["--data.path", str(folder), "--data.synthetic_videos", "0", "--data.val_fraction", "0",
            "--data.size", "48", "--data.batch_size", "2", "--data.num_workers", "1"]  # fmt: skip
    with caplog.at_level("WARNING", logger="vtok.data.datamodule"):
        main(tiny_fit_args(tmp_path, 8, *csv_logger(tmp_path), *data, "--trainer.limit_val_batches", "0"))
    assert metric_column(tmp_path / "run", "data/enlarged_samples") == [4.0, 4.0], "each small source once per epoch"
    warned = [r.message for r in caplog.records if "smaller than data.size" in r.message]
    assert len(warned) == 1 and "small_" in warned[0], warned


@pytest.mark.parametrize("clips", [8, 9], ids=["epoch_of_whole_batches", "epoch_with_a_leftover_clip"])
def test_a_run_resumed_from_its_final_checkpoint_on_an_epoch_end_trains_every_later_epoch_once(tmp_path: Path, clips: int) -> None:
    """6 or 7 training clips in batches of 2: 6 steps end exactly on epoch 1's last batch, validating
    there. Lightning's first epoch after the resume then skips the loader (its validation already ran);
    the next epoch must start the sampler's next pass, not read the finished one's end again (its
    leftover clip, or nothing: two epochs without a batch stopped the run)."""
    record = ["--trainer.callbacks+", "tests.helpers.RecordSamples", "--trainer.callbacks.folder", str(tmp_path / "record")]
    flags = ["--trainer.logger", "false", "--trainer.check_val_every_n_epoch", "1", "--data.synthetic_videos", str(clips), *record]
    main(tiny_fit_args(tmp_path, 6, *flags))
    first = json.loads((tmp_path / "record" / "rank0.json").read_text())["rows"]
    main(tiny_fit_args(tmp_path, 12, *flags, "--ckpt_path", "last"))
    resumed = json.loads((tmp_path / "record" / "rank0.json").read_text())["rows"]
    epochs: dict[int, list[int]] = {}
    for row in first + resumed:
        epochs.setdefault(row["epoch"], []).extend(row["index"])
    assert [row["step"] for row in first + resumed] == list(range(1, 13)), "each batch once, none lost"
    assert sorted(epochs) == [0, 1, 2, 3], "the sampler's passes follow on, none read twice"
    assert all(len(set(indices)) == len(indices) == 6 for indices in epochs.values()), "3 whole batches of distinct clips"


def test_a_run_stopped_by_max_steps_mid_epoch_resumes_in_that_epoch(tmp_path: Path) -> None:
    """Lightning saved the epoch as completed at a max_steps stop (here after epoch 1's first of three batches):
    the resumed run counted epoch 2 where an unbroken run was in epoch 1, logged that epoch and validated at
    other epochs with check_val_every_n_epoch."""
    flags = ["--trainer.logger", "false", "--trainer.check_val_every_n_epoch", "2"]
    main(tiny_fit_args(tmp_path, 7, *flags, run="straight"))
    main(tiny_fit_args(tmp_path, 4, *flags, run="stopped"))  # batch 1 of epoch 1's three
    main(tiny_fit_args(tmp_path, 7, *flags, "--ckpt_path", "last", run="stopped"))
    straight, resumed = (torch.load(tmp_path / run / "checkpoints" / "last.ckpt", weights_only=True) for run in ("straight", "stopped"))
    assert resumed["epoch"] == straight["epoch"] == 2
    progress = [state["loops"]["fit_loop"]["epoch_progress"] for state in (straight, resumed)]
    assert progress[0] == progress[1], "the resumed run's loop counted its epochs as the unbroken one's"
    different = [key for key in straight["state_dict"] if not torch.equal(straight["state_dict"][key], resumed["state_dict"][key])]
    assert not different, f"resumed weights differ: {different[:5]}"


def _every_n_steps_config(tmp_path: Path, steps: int) -> Path:
    config = tmp_path / f"every{steps}.yaml"
    config.write_text(
        "trainer:\n  callbacks:\n    - class_path: lightning.pytorch.callbacks.ModelCheckpoint\n      init_args:\n"
        f"        filename: '{{step}}'\n        every_n_train_steps: {steps}\n        save_last: true\n        save_top_k: -1\n"
    )
    return config


def test_a_run_resumed_from_a_save_on_an_epochs_last_batch_counts_that_epoch_once(tmp_path: Path) -> None:
    """Three batches an epoch, saved every three steps: step=3.ckpt holds epoch 0 after its last batch. Lightning
    counted epoch 0 twice on the resume (restoring, then at the end of its empty remainder): max_epochs ended an
    epoch early and check_val_every_n_epoch validated at other steps."""
    flags = ["--trainer.logger", "false", "--trainer.max_epochs", "2", "--trainer.check_val_every_n_epoch", "2"]
    config = _every_n_steps_config(tmp_path, 3)
    main(tiny_fit_args(tmp_path, -1, *flags, run="straight", config=config))
    (tmp_path / "resumed" / "checkpoints").mkdir(parents=True)
    saved = shutil.copy(tmp_path / "straight" / "checkpoints" / "step=3.ckpt", tmp_path / "resumed" / "checkpoints")
    main(tiny_fit_args(tmp_path, -1, *flags, "--ckpt_path", str(saved), run="resumed", config=config))
    straight, resumed = (torch.load(tmp_path / run / "checkpoints" / "last.ckpt", weights_only=True) for run in ("straight", "resumed"))
    assert (resumed["global_step"], resumed["epoch"]) == (straight["global_step"], straight["epoch"]) == (6, 1)
    progress = [state["loops"]["fit_loop"]["epoch_progress"] for state in (straight, resumed)]
    assert progress[0] == progress[1]
    assert all(torch.equal(straight["state_dict"][key], resumed["state_dict"][key]) for key in straight["state_dict"])


def test_a_resumed_run_does_not_save_again_before_its_first_step(tmp_path: Path) -> None:
    """With accumulate_batches 2, the first batch after a resume from step=2.ckpt does not step: Lightning saw step 2
    still due and wrote step=2.ckpt and last.ckpt again, a batch on, that batch's gradients in neither."""
    flags = ["--trainer.logger", "false", "--model.accumulate_batches", "2"]
    config = _every_n_steps_config(tmp_path, 2)
    main(tiny_fit_args(tmp_path, 2, *flags, config=config))
    folder = tmp_path / "run" / "checkpoints"
    before = torch.load(folder / "step=2.ckpt", weights_only=False)["vtok"]["batch_step"]
    main(tiny_fit_args(tmp_path, 3, *flags, "--ckpt_path", "last", config=config))
    assert torch.load(folder / "step=2.ckpt", weights_only=False)["vtok"]["batch_step"] == before
    assert sorted(p.name for p in folder.iterdir()) == ["last.ckpt", "step=2.ckpt"]


@pytest.mark.parametrize("source", ["files", "shards"])
def test_a_validation_interval_the_epoch_cannot_hold_is_one_line_naming_the_fix(
    tmp_path: Path, shard_dir: Path, capsys: pytest.CaptureFixture, source: str
) -> None:
    """Lightning checks trainer.val_check_interval against the epoch only once its loaders exist: a count above the
    epoch's batches, or a share of an epoch over shards (no length), ended in its traceback after the run had started."""
    interval, data = ("50", []) if source == "files" else ("0.5", ["--data.shards", str(shard_dir / "shards")])
    with pytest.raises(SystemExit) as stop:
        main(tiny_fit_args(tmp_path, 2, "--trainer.logger", "false", "--trainer.val_check_interval", interval, *data))
    assert stop.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    if source == "files":  # 6 training clips in batches of 2
        assert error.startswith("vtok: error: trainer.val_check_interval=50 batches is more than the 3 training batches")
        assert "--trainer.check_val_every_n_epoch null" in error
    else:
        assert error.startswith("vtok: error: trainer.val_check_interval=0.5 is a share of an epoch")


def test_a_resume_goes_on_in_the_run_folder_it_names_whatever_folder_the_config_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """config.yaml records trainer.default_root_dir as typed: resumed from another working directory (a relative
    folder) or after the run folder moved, --ckpt_path last found nothing there and began afresh, or a checkpoint
    file's run went on writing into the old folder."""
    (tmp_path / "a").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    main(tiny_fit_args(Path("."), 2, "--trainer.logger", "false", run="runs/two"))
    shutil.move(tmp_path / "a" / "runs" / "two", tmp_path / "moved")
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "b")
    moved = tmp_path / "moved"
    flags = ["--trainer.max_steps", "3", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false"]
    main(["fit", "--config", str(moved / "config.yaml"), *flags, "--ckpt_path", "last"])
    assert f"the run is in {moved}, not in trainer.default_root_dir runs/two the config records" in capsys.readouterr().err
    assert torch.load(moved / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 3, "resumed at 2, not afresh"
    assert not (tmp_path / "b" / "runs").exists() and not (tmp_path / "a" / "runs" / "two").exists()
    assert yaml.safe_load((moved / "config.yaml").read_text())["trainer"]["default_root_dir"] == str(moved)


def test_a_folder_another_config_file_gives_a_resume_is_the_one_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a folder typed on the command line was kept: one from a second --config file was taken for the run's
    own outdated record and replaced by the checkpoint's run folder, which the resume then wrote into."""
    monkeypatch.chdir(tmp_path)
    main(tiny_fit_args(Path("."), 2, "--trainer.logger", "false", run="runs/first"))
    other = tmp_path / "continue.yaml"
    other.write_text(yaml.safe_dump({"trainer": {"default_root_dir": "runs/second"}}))
    first = tmp_path / "runs" / "first"
    main(["fit", "--config", str(first / "config.yaml"), "--config", str(other), "--trainer.max_steps", "3",
          "--ckpt_path", str(first / "checkpoints" / "last.ckpt")])  # fmt: skip
    assert torch.load(tmp_path / "runs" / "second" / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 3
    assert torch.load(first / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 2, "the first run untouched"


def test_config_yaml_is_in_the_run_folder_whatever_the_logger(tmp_path: Path) -> None:
    """With a CSV or TensorBoard logger Lightning wrote it into the logger's <run>/version_0/ (version_1/ on
    resume), where --config <run>/config.yaml and vtok's advice look in the run folder."""
    main(tiny_fit_args(tmp_path, 2, *csv_logger(tmp_path)))
    run = tmp_path / "run"
    assert yaml.safe_load((run / "config.yaml").read_text())["trainer"]["max_steps"] == 2
    main(["fit", "--config", str(run / "config.yaml"), "--ckpt_path", "last", "--trainer.max_steps", "3"])
    assert yaml.safe_load((run / "config.yaml").read_text())["trainer"]["max_steps"] == 3
    assert [path.relative_to(run) for path in run.rglob("config.yaml")] == [Path("config.yaml")]


def test_the_command_line_rewritten_twice_is_rewritten_once(tmp_path: Path) -> None:
    """Lightning starts the ranks of trainer.devices > 1 with rank 0's rewritten command line: the callbacks list
    cleared before a config file moved behind it in rank 1, which then ran without the config's callbacks."""
    preset, default = str(CONFIG_DIR / "kl_4x8x8.yaml"), str(DEFAULT_CONFIG)  # both list callbacks
    once = with_packaged_presets(["fit", "--trainer.max_steps", "3", "--config", preset, "-c", default, "--trainer.callbacks+=X"])
    clear = "--trainer.callbacks=[]"
    assert once == ["fit", clear, "--config", preset, clear, "-c", default, "--trainer.max_steps", "3", "--trainer.callbacks+=X"]
    assert with_packaged_presets(once) == once
    no_callbacks = tmp_path / "steps.yaml"  # a file that gives no callbacks (found by a review: the empty list was lost)
    no_callbacks.write_text("trainer:\n  max_steps: 5\n")
    no_callbacks = str(no_callbacks)
    given = ["fit", clear, "--config", no_callbacks, "--trainer.max_steps", "3"]  # the user's own empty list stays
    assert with_packaged_presets(given) == ["fit", "--config", no_callbacks, clear, "--trainer.max_steps", "3"]


def test_a_validation_inside_an_accumulation_group_keeps_the_groups_gradients(tmp_path: Path) -> None:
    """With accumulate_batches 2 and a validation after every batch, Lightning cleared the gradients of each group's
    first batch before validating (its guard reads its own accumulate_grad_batches, 1 under vtok's accumulation):
    every step followed the group's second batch alone. Validating changes no training: the weights are those of a
    run that never validates."""
    flags = ["--trainer.logger", "false", "--model.accumulate_batches", "2", "--trainer.check_val_every_n_epoch", "null"]
    main(tiny_fit_args(tmp_path, 2, *flags, "--trainer.val_check_interval", "1", run="validated"))
    main(tiny_fit_args(tmp_path, 2, *flags, "--trainer.limit_val_batches", "0", run="not_validated"))
    validated, not_validated = (torch.load(tmp_path / run / "checkpoints" / "last.ckpt", weights_only=True)
                                for run in ("validated", "not_validated"))  # fmt: skip
    assert validated["loops"]["fit_loop"]["epoch_loop.val_loop.batch_progress"]["total"]["completed"] >= 3
    different = [k for k, v in validated["state_dict"].items() if not torch.equal(v, not_validated["state_dict"][k])]
    assert not different, f"validating changed the training: {different[:5]}"


def test_a_save_after_a_validation_inside_an_accumulation_group_waits_for_the_groups_step(tmp_path: Path) -> None:
    """A checkpoint ranked by a validation score was saved right after it, also inside an accumulation group: without
    the gradients the group had summed, so a run resumed from it stepped on the group's later batches alone."""
    flags = ["--trainer.logger", "false", "--model.accumulate_batches", "2", "--trainer.check_val_every_n_epoch", "null",
             "--trainer.val_check_interval", "3", "--data.synthetic_videos", "16"]  # 6 batches: validated after 3 and 6
    ranked = ["--trainer.callbacks+", "ModelCheckpoint", "--trainer.callbacks.monitor", "val/psnr", "--trainer.callbacks.mode",
              "max", "--trainer.callbacks.save_top_k", "-1", "--trainer.callbacks.filename", "ranked-{step}"]  # fmt: skip
    main(tiny_fit_args(tmp_path, 3, *flags, *ranked, run="unbroken"))
    saved = sorted(path.name for path in (tmp_path / "unbroken" / "checkpoints").glob("ranked-*.ckpt"))
    assert saved == ["ranked-step=2.ckpt", "ranked-step=3.ckpt"], "the first validation's save waited for the group's step"
    main(tiny_fit_args(tmp_path, 3, *flags, "--ckpt_path", str(tmp_path / "unbroken" / "checkpoints" / saved[0]), run="resumed"))
    unbroken, resumed = (torch.load(tmp_path / run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
                         for run in ("unbroken", "resumed"))  # fmt: skip
    assert not [name for name, value in unbroken.items() if not torch.equal(value, resumed[name])]
    stopping = ["--trainer.callbacks+", "EarlyStopping", "--trainer.callbacks.monitor", "val/psnr", "--trainer.callbacks.mode",
                "max", "--trainer.callbacks.stopping_threshold", "0"]  # stops the run at that first validation  # fmt: skip
    main(tiny_fit_args(tmp_path, 3, *flags, *ranked, *stopping, run="stopped"))
    assert [path.name for path in (tmp_path / "stopped" / "checkpoints").glob("ranked-*.ckpt")] == ["ranked-step=1.ckpt"]


def test_a_fast_dev_run_leaves_no_checkpoint_to_keep_the_real_run_out(tmp_path: Path) -> None:
    """Lightning's ModelCheckpoint saved last.ckpt at the end of a fast_dev_run, whose checkpoints are off: the smoke
    test's folder then refused the real run ("already holds a run's checkpoints")."""
    main(tiny_fit_args(tmp_path, 1, "--trainer.logger", "false", "--trainer.fast_dev_run", "true"))
    assert not list((tmp_path / "run").rglob("*.ckpt"))
    main(tiny_fit_args(tmp_path, 1, "--trainer.logger", "false"))  # into the same folder
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
