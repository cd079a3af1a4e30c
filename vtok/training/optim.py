"""Optimiser settings and the learning-rate schedule (linear warm-up, then constant or cosine)."""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

log = logging.getLogger(__name__)


@dataclass
class OptimizerConfig:
    """AdamW and its schedule. Steps count optimiser steps, not training batches: one per batch, or one
    per ``model.accumulate_batches`` batches when gradients are accumulated (a skipped non-finite step
    counts too). The discriminator's (``model.disc_optimizer``) count from its first step, the first at or
    after ``adversarial.start_step``.

    Args:
        lr: peak learning rate.
        betas: AdamW betas.
        weight_decay: decoupled weight decay.
        warmup_steps: steps of linear warm-up to ``lr`` (step ``s`` uses ``lr·(s + 1)/warmup_steps``).
        schedule: ``"constant"`` after warm-up, or ``"cosine"`` decay to ``min_lr_ratio · lr``.
        decay_steps: steps from the start to the end of the cosine (default: the run's length; for the
            discriminator, the optimiser steps from its start to the run's end).
        min_lr_ratio: final learning rate of the cosine, as a fraction of ``lr``.
    """

    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    warmup_steps: int = 0
    schedule: Literal["constant", "cosine"] = "constant"
    decay_steps: int | None = None
    min_lr_ratio: float = 0.1

    def __post_init__(self) -> None:
        problems = [
            f"lr={self.lr} must be positive" if self.lr <= 0 else "",
            f"weight_decay={self.weight_decay} must not be negative" if self.weight_decay < 0 else "",
            f"betas={tuple(self.betas)} must each lie in [0, 1)" if not all(0 <= b < 1 for b in self.betas) else "",
            f"warmup_steps={self.warmup_steps} must not be negative" if self.warmup_steps < 0 else "",
            f"decay_steps={self.decay_steps} must be positive" if self.decay_steps is not None and self.decay_steps < 1 else "",
            f"min_lr_ratio={self.min_lr_ratio} must lie in [0, 1]" if not 0 <= self.min_lr_ratio <= 1 else "",
        ]
        if any(problems):
            raise ValueError("optimizer: " + "; ".join(p for p in problems if p))


# A module built in Python (not by the CLI, which saves plain dicts) keeps its OptimizerConfig objects in the
# checkpoint's hyperparameters: a plain dataclass of numbers, safe for torch.load(weights_only=True) to rebuild.
torch.serialization.add_safe_globals([OptimizerConfig])


@dataclass
class WarmupSchedule:
    """Learning-rate multiplier per step (a picklable callable for ``LambdaLR``)."""

    warmup_steps: int
    schedule: str
    decay_steps: int
    min_lr_ratio: float

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.schedule == "constant" or self.decay_steps <= self.warmup_steps:
            return 1.0
        progress = min(1.0, (step - self.warmup_steps) / (self.decay_steps - self.warmup_steps))
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_optimizer(
    parameters: Iterable[torch.nn.Parameter], config: OptimizerConfig, run_steps: int | None, setting: str = "optimizer"
) -> tuple[torch.optim.Optimizer, LambdaLR]:
    """AdamW over ``parameters`` and its per-batch schedule (``setting``: the config's name for ``config``, in errors)."""
    optimizer = torch.optim.AdamW(
        parameters, lr=config.lr, betas=tuple(config.betas), weight_decay=config.weight_decay
    )
    return optimizer, LambdaLR(optimizer, warmup_schedule(config, run_steps, setting))


def warmup_schedule(config: OptimizerConfig, run_steps: int | None, setting: str = "optimizer") -> WarmupSchedule:
    """The multiplier of ``config.lr`` per step; ``run_steps`` is the default end of the cosine (``setting``: as in
    :func:`build_optimizer`)."""
    decay_steps = check_schedule(config, run_steps, setting)
    if config.schedule == "cosine" and decay_steps <= config.warmup_steps:
        log.warning(
            "%s: the run (%d steps) ends before warm-up (%d steps): no cosine decay", setting, decay_steps, config.warmup_steps
        )
    return WarmupSchedule(config.warmup_steps, config.schedule, decay_steps, config.min_lr_ratio)


def check_schedule(config: OptimizerConfig, run_steps: int | None, setting: str = "optimizer") -> int:
    """The step the schedule's cosine ends at, checked: ``ValueError`` for a cosine that has no end or could never start."""
    decay_steps = config.decay_steps or run_steps or 0
    if config.schedule == "cosine" and decay_steps <= 0:
        raise ValueError(f"a cosine schedule needs {setting}.decay_steps or trainer.max_steps")
    if config.schedule == "cosine" and config.decay_steps and decay_steps <= config.warmup_steps:
        raise ValueError(  # asked for: a cosine that could never start is a mistake (a short run only warns)
            f"{setting}.decay_steps={config.decay_steps} must exceed {setting}.warmup_steps={config.warmup_steps}: "
            "the cosine runs from the end of warm-up to decay_steps"
        )
    return decay_steps


def discriminator_run_steps(run_steps: int | None, start_step: int, accumulate_batches: int) -> int | None:
    """The discriminator's share of a run of ``run_steps`` optimiser steps: its optimiser steps only from the
    adversarial start on, its schedule's step 0 being the first optimiser step whose batch is at or after
    ``start_step``, so its default cosine ends with the run. (A start after the run's end: never stepped, any
    length will do.)"""
    first = -(-(start_step + 1) // accumulate_batches) - 1  # ceil((start + 1) / A) - 1
    return run_steps - first if run_steps is not None and run_steps > first else run_steps


def apply_settings(
    optimizer: torch.optim.Optimizer, scheduler: LambdaLR, config: OptimizerConfig, schedule: WarmupSchedule
) -> float:
    """Lays ``config`` and its ``schedule`` over an optimizer and schedule restored from a checkpoint,
    which bring back the checkpoint's learning rate, betas, weight decay and schedule along with Adam's
    moments and step count: those stay, the settings become these, evaluated at the restored step.

    Returns:
        The learning rate of the next step under the checkpoint's settings, before they were replaced.
    """
    restored = scheduler.get_last_lr()[0]
    scheduler.base_lrs = [config.lr for _ in optimizer.param_groups]
    scheduler.lr_lambdas = [schedule for _ in optimizer.param_groups]
    for group in optimizer.param_groups:
        group.update(initial_lr=config.lr, betas=tuple(config.betas), weight_decay=config.weight_decay)
        group["lr"] = config.lr * schedule(scheduler.last_epoch)
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]  # what get_last_lr() reports
    return restored


def apply_settings_on_resume(
    optimizers: list[Any], schedulers: list[LambdaLR], configured: list[tuple[OptimizerConfig, WarmupSchedule]]
) -> None:
    """:func:`apply_settings` for the generator's optimizer and the discriminator's (Lightning-wrapped,
    in that order), each with its configured settings; warns where that changes the learning rate."""
    names = ["optimizer", "disc_optimizer"]
    for name, optimizer, scheduler, (config, schedule) in zip(names, optimizers, schedulers, configured):
        restored = apply_settings(optimizer.optimizer, scheduler, config, schedule)
        now = scheduler.get_last_lr()[0]
        if not math.isclose(now, restored, rel_tol=1e-6):
            log.warning(
                "model.%s: learning rate %.4g from step %d on, where the checkpoint's settings give %.4g",
                name, now, scheduler.last_epoch, restored,
            )  # fmt: skip


def step_schedule(scheduler: LRScheduler, optimizer_stepped: bool) -> None:
    """Moves ``scheduler`` one step on, also after an optimizer step skipped for a non-finite loss (skipped
    steps count in vtok's schedules). torch warns when a schedule's first step comes before its optimizer's
    first step, as if the two were called in the wrong order; after a skipped first step that is intended,
    and the warning is left out."""
    if optimizer_stepped:
        scheduler.step()
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before", category=UserWarning)
        scheduler.step()
