"""The learning-rate schedule (linear warm-up, then constant or cosine) and gradient clipping in training."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import Callback, Trainer
from torch.utils.data import DataLoader

from tests.helpers import tiny_fit_args
from vtok import VideoAutoencoder
from vtok.cli import main
from vtok.losses import AdversarialLoss
from vtok.training import AutoencoderModule
from vtok.training.optim import OptimizerConfig, build_optimizer


def expected_lr(step: int, lr: float, warmup: int, schedule: str, decay: int, min_ratio: float) -> float:
    """The documented schedule, written out: warm-up reaches ``lr`` at its last step, then the cosine
    falls from ``lr`` to ``min_ratio · lr`` between the end of warm-up and ``decay``, and stays there."""
    if step < warmup:
        return lr * (step + 1) / warmup
    if schedule == "constant":
        return lr
    progress = min(1.0, (step - warmup) / (decay - warmup))
    return lr * (min_ratio + (1 - min_ratio) * (1 + math.cos(math.pi * progress)) / 2)


def lrs(config: OptimizerConfig, run_steps: int | None, steps: int) -> list[float]:
    """The learning rate of each of the first ``steps`` batches, stepping the real scheduler."""
    optimizer, scheduler = build_optimizer([torch.nn.Parameter(torch.zeros(2))], config, run_steps)
    values = []
    for _ in range(steps):
        values.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return values


@pytest.mark.parametrize("schedule", ["cosine", "constant"])
def test_schedule_warms_up_linearly_then_follows_its_shape(schedule: str) -> None:
    config = OptimizerConfig(lr=2e-3, warmup_steps=4, schedule=schedule, decay_steps=12, min_lr_ratio=0.1)
    values = lrs(config, run_steps=100, steps=16)  # decay_steps wins over the run's length
    assert values == pytest.approx([expected_lr(s, 2e-3, 4, schedule, 12, 0.1) for s in range(16)], rel=1e-9)
    assert values[0] == pytest.approx(5e-4) and values[3] == pytest.approx(2e-3)  # lr/4 first, peak at the end of warm-up
    if schedule == "cosine":
        assert values[8] == pytest.approx(1.1e-3) and values[12:] == pytest.approx([2e-4] * 4)  # midpoint, then the floor


def test_cosine_decays_over_the_run_without_decay_steps() -> None:
    config = OptimizerConfig(lr=1e-3, schedule="cosine", min_lr_ratio=0.0)
    values = lrs(config, run_steps=10, steps=11)
    assert values == pytest.approx([expected_lr(s, 1e-3, 0, "cosine", 10, 0.0) for s in range(11)], abs=1e-12)
    assert values[0] == pytest.approx(1e-3) and values[5] == pytest.approx(5e-4) and values[10] == pytest.approx(0.0, abs=1e-12)


def test_cosine_without_a_length_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="cosine schedule needs optimizer.decay_steps or trainer.max_steps"):
        build_optimizer([torch.nn.Parameter(torch.zeros(2))], OptimizerConfig(schedule="cosine"), run_steps=None)
    build_optimizer([torch.nn.Parameter(torch.zeros(2))], OptimizerConfig(schedule="constant"), run_steps=None)  # needs none
    with pytest.raises(ValueError, match="decay_steps=4 must exceed optimizer.warmup_steps=4"):
        build_optimizer([torch.nn.Parameter(torch.zeros(2))], OptimizerConfig(schedule="cosine", warmup_steps=4, decay_steps=4), None)


def test_settings_out_of_range_are_refused_naming_each() -> None:
    with pytest.raises(ValueError, match=r"lr=-1 must be positive; .*betas=\(0.9, 1.5\) must each lie in \[0, 1\)"):
        OptimizerConfig(lr=-1, betas=(0.9, 1.5))
    with pytest.raises(ValueError, match="warmup_steps=-3 must not be negative"):
        OptimizerConfig(warmup_steps=-3)


def test_adamw_takes_the_configured_settings() -> None:
    config = OptimizerConfig(lr=3e-4, betas=(0.5, 0.9), weight_decay=0.05)
    optimizer, _ = build_optimizer([torch.nn.Parameter(torch.zeros(2))], config, run_steps=None)
    group = optimizer.param_groups[0]
    assert isinstance(optimizer, torch.optim.AdamW)
    assert (group["lr"], tuple(group["betas"]), group["weight_decay"]) == (3e-4, (0.5, 0.9), 0.05)


class RecordSteps(Callback):
    """Test-only: per optimiser step, the gradient norm and learning rate the optimiser sees (from
    a step pre-hook, so after vtok's clipping), and the pre-clip norms vtok logs."""

    def __init__(self) -> None:
        self.seen: list[list[tuple[float, float]]] = []  # per optimiser: (grad norm, lr) per step
        self.logged: list[dict[str, float]] = []

    def on_train_start(self, trainer: Trainer, pl_module: AutoencoderModule) -> None:
        for index, optimizer in enumerate(trainer.optimizers):
            self.seen.append([])
            optimizer.register_step_pre_hook(self._hook(index))

    def _hook(self, index: int) -> Any:
        def record(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item()
            self.seen[index].append((norm, optimizer.param_groups[0]["lr"]))

        return record

    def on_train_batch_end(self, trainer: Trainer, pl_module: AutoencoderModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        metrics = trainer.callback_metrics
        self.logged.append({k: metrics[k].item() for k in ("train/grad_norm", "train/disc_grad_norm", "train/lr")})


def train(steps: int, grad_clip: float | None, disc_grad_clip: float | None) -> RecordSteps:
    """A tiny KL autoencoder against a discriminator (on from the first batch), warm-up then a cosine
    over the run, trained for ``steps`` batches on the CPU."""
    torch.manual_seed(0)
    module = AutoencoderModule(
        VideoAutoencoder(block_out_channels=[8, 16], latent_channels=4, layers_per_block=1),
        adversarial=AdversarialLoss("patch2d", channels=8, layers=1, start_step=0),
        optimizer=OptimizerConfig(lr=1e-3, warmup_steps=2, schedule="cosine", min_lr_ratio=0.2),
        disc_optimizer=OptimizerConfig(lr=4e-4, betas=(0.5, 0.999)),
        grad_clip=grad_clip,
        disc_grad_clip=disc_grad_clip,
    )
    batches = [{"video": torch.rand(1, 3, 5, 16, 16) * 2 - 1} for _ in range(steps)]
    recorder = RecordSteps()
    trainer = Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, callbacks=[recorder], accelerator="cpu")  # fmt: skip
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))
    assert module.skipped_steps == 0
    return recorder


def test_training_clips_each_gradient_to_its_own_limit_and_logs_the_norm_before() -> None:
    recorder = train(steps=4, grad_clip=1e-3, disc_grad_clip=2e-3)  # limits far below these networks' norms
    (generator, discriminator), logged = recorder.seen, recorder.logged
    assert len(generator) == len(discriminator) == len(logged) == 4
    for (gen_norm, _), (disc_norm, _), before in zip(generator, discriminator, logged):
        assert before["train/grad_norm"] > 1e-2 and before["train/disc_grad_norm"] > 1e-2, "the limits really bite"
        assert gen_norm == pytest.approx(1e-3, rel=1e-3) and disc_norm == pytest.approx(2e-3, rel=1e-3)
    # the schedules over the run (4 batches): the generator's warm-up then cosine, the discriminator's constant
    assert [lr for _, lr in generator] == pytest.approx([expected_lr(s, 1e-3, 2, "cosine", 4, 0.2) for s in range(4)], rel=1e-9)
    assert [lr for _, lr in discriminator] == pytest.approx([4e-4] * 4, rel=1e-9)
    assert [row["train/lr"] for row in logged] == pytest.approx([lr for _, lr in generator], rel=1e-6), "the rate used"


def test_training_without_limits_steps_on_the_unclipped_gradients() -> None:
    recorder = train(steps=1, grad_clip=None, disc_grad_clip=None)
    (generator, discriminator), logged = recorder.seen, recorder.logged
    assert generator[0][0] == pytest.approx(logged[0]["train/grad_norm"], rel=1e-4) and generator[0][0] > 1e-2
    assert discriminator[0][0] == pytest.approx(logged[0]["train/disc_grad_norm"], rel=1e-4) and discriminator[0][0] > 1e-2


class RecordDiscriminator(Callback):
    """Test-only: the discriminator's weights around every batch, its gradients and learning rate at each
    of its optimiser's steps (a step pre-hook), and the ``train/disc_lr`` each batch logged."""

    def __init__(self) -> None:
        self.before: list[list[torch.Tensor]] = []
        self.after: list[list[torch.Tensor]] = []
        self.steps: list[tuple[list[torch.Tensor], float]] = []
        self.logged_lr: list[float] = []

    def on_train_start(self, trainer: Trainer, pl_module: AutoencoderModule) -> None:
        def record(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            params = [p for group in optimizer.param_groups for p in group["params"]]
            self.steps.append(([p.grad.clone() for p in params], optimizer.param_groups[0]["lr"]))

        trainer.optimizers[1].register_step_pre_hook(record)

    def _weights(self, pl_module: AutoencoderModule) -> list[torch.Tensor]:
        return [p.detach().clone() for p in pl_module.adversarial.discriminator.parameters()]

    def on_train_batch_start(self, trainer: Trainer, pl_module: AutoencoderModule, batch: Any, batch_idx: int) -> None:
        self.before.append(self._weights(pl_module))

    def on_train_batch_end(self, trainer: Trainer, pl_module: AutoencoderModule, *args: Any) -> None:
        self.after.append(self._weights(pl_module))
        self.logged_lr.append(trainer.callback_metrics["train/disc_lr"].item())


def test_the_discriminator_optimizer_and_its_schedule_start_at_the_adversarial_start() -> None:
    """Before ``start_step`` its gradients are zeros: AdamW must not step on them (Adam's bias correction
    would be spent, a first real update several times too large; weight decay would shrink the weights),
    and its warm-up and cosine count from its start and end with the run."""
    start, steps, lr, decay = 6, 11, 1e-3, 0.1
    torch.manual_seed(0)
    module = AutoencoderModule(
        VideoAutoencoder(block_out_channels=[8, 16], latent_channels=4, layers_per_block=1),
        adversarial=AdversarialLoss("patch2d", channels=8, layers=1, norm="group", start_step=start),
        disc_optimizer=OptimizerConfig(lr=lr, betas=(0.5, 0.999), weight_decay=decay, warmup_steps=2, schedule="cosine",
                                       min_lr_ratio=0.0),
        disc_grad_clip=None,
    )  # fmt: skip
    batches = [{"video": torch.rand(1, 3, 5, 16, 16) * 2 - 1} for _ in range(steps)]
    recorder = RecordDiscriminator()
    trainer = Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, callbacks=[recorder], accelerator="cpu")  # fmt: skip
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))
    assert module.skipped_steps == 0 and len(recorder.after) == steps
    for batch in range(start):  # no step: no update, no weight decay
        assert all(torch.equal(a, b) for a, b in zip(recorder.before[batch], recorder.after[batch])), f"batch {batch}"
    # its schedule's step 0 is the adversarial start: warm-up over 2 steps, then a cosine to 0 at the run's end
    used = [expected_lr(s, lr, 2, "cosine", steps - start, 0.0) for s in range(steps - start)]
    assert [rate for _, rate in recorder.steps] == pytest.approx(used, rel=1e-9)
    assert recorder.logged_lr[start:] == pytest.approx(used, rel=1e-6)
    assert recorder.logged_lr[start] == pytest.approx(lr / 2), "the warm-up's first rate at the first real step"
    # Adam's first step: m̂ = g and v̂ = g², so each weight moves by lr·g/(|g| + eps), after the decoupled decay
    grads, rate = recorder.steps[0]
    for before, after, grad in zip(recorder.before[start], recorder.after[start], grads):
        expected = before * (1 - rate * decay) - rate * grad / (grad.abs() + 1e-8)
        assert torch.allclose(after, expected, rtol=0, atol=1e-3 * rate)
    first = zip(recorder.after[start], recorder.before[start])
    moved = torch.cat([(after - before * (1 - rate * decay)).abs().flatten() for after, before in first])
    assert moved.median().item() == pytest.approx(rate, rel=1e-3), "|update| = lr for a weight with a real gradient"
    state = trainer.optimizers[1].state
    assert all(int(state[p]["step"]) == steps - start for p in module.adversarial.discriminator.parameters())


class RecordRates(Callback):
    """Test-only: the learning rate each optimizer is about to use, per batch."""

    def __init__(self) -> None:
        self.rates: list[tuple[float, ...]] = []

    def on_train_batch_start(self, trainer: Trainer, pl_module: AutoencoderModule, batch: Any, batch_idx: int) -> None:
        self.rates.append(tuple(optimizer.param_groups[0]["lr"] for optimizer in trainer.optimizers))


def test_a_resume_lays_the_optimizer_settings_given_now_over_the_restored_state(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A lower learning rate after a spike, a cosine stretched over a longer run: the settings given on
    resume apply from the restored step, while Adam's moments and step counts come back."""

    def module(lr: float, disc_lr: float) -> AutoencoderModule:
        torch.manual_seed(0)
        return AutoencoderModule(
            VideoAutoencoder(block_out_channels=[8, 16], latent_channels=4, layers_per_block=1),
            adversarial=AdversarialLoss("patch2d", channels=8, layers=1, norm="group", start_step=2),
            optimizer=OptimizerConfig(lr=lr, schedule="cosine", min_lr_ratio=0.0),
            disc_optimizer=OptimizerConfig(lr=disc_lr, betas=(0.5, 0.999)),
        )

    def trainer(steps: int, *callbacks: Callback) -> Trainer:
        return Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                       enable_model_summary=False, callbacks=list(callbacks), accelerator="cpu")  # fmt: skip

    batches = DataLoader([{"video": torch.rand(1, 3, 5, 16, 16) * 2 - 1} for _ in range(12)], batch_size=None)
    first = trainer(4)
    first.fit(module(1e-3, 1e-4), train_dataloaders=batches)
    first.save_checkpoint(tmp_path / "step4.ckpt")
    recorder = RecordRates()
    second = trainer(10, recorder)
    with caplog.at_level("WARNING", logger="vtok.training.module"):
        second.fit(module(5e-4, 3e-4), train_dataloaders=batches, ckpt_path=tmp_path / "step4.ckpt")
    # the generator's cosine now runs to step 10 from 5e-4; the discriminator's constant rate is the new one
    assert recorder.rates == [(pytest.approx(expected_lr(s, 5e-4, 0, "cosine", 10, 0.0)), pytest.approx(3e-4)) for s in range(4, 10)]
    now = expected_lr(4, 5e-4, 0, "cosine", 10, 0.0)
    assert f"model.optimizer: learning rate {now:.4g} from step 4 on, where the checkpoint's settings give 0\n" in caplog.text
    assert "model.disc_optimizer: learning rate 0.0003 from step 2 on, where the checkpoint's settings give 0.0001" in caplog.text
    generator, discriminator = (optimizer.state for optimizer in second.optimizers)
    assert {int(s["step"]) for s in generator.values()} == {10} and {int(s["step"]) for s in discriminator.values()} == {8}


def test_a_run_shorter_than_warm_up_is_warned_of_once_per_optimizer_with_its_own_length(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The CLI's schedule check and configure_optimizers each warned, unnamed, and the check gave the discriminator
    the whole run: its cosine here has 2 of the 4 steps (from the adversarial start at batch 2)."""
    cosine = ["--model.optimizer.schedule", "cosine", "--model.optimizer.warmup_steps", "5",
              "--model.disc_optimizer.schedule", "cosine", "--model.disc_optimizer.warmup_steps", "3"]  # fmt: skip
    adversarial = ["--model.adversarial.discriminator", "patch3d", "--model.adversarial.channels", "8",
                   "--model.adversarial.layers", "1", "--model.adversarial.start_step", "2"]  # fmt: skip
    main(tiny_fit_args(tmp_path, 4, "--trainer.logger", "false", *cosine, *adversarial))
    warnings = [line for line in capsys.readouterr().err.splitlines() if "ends before warm-up" in line]
    assert warnings == [
        "vtok WARNING: model.optimizer: the run (4 steps) ends before warm-up (5 steps): no cosine decay",
        "vtok WARNING: model.disc_optimizer: the run (2 steps) ends before warm-up (3 steps): no cosine decay",
    ]
