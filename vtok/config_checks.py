"""Checks of a command's config that need nothing built: each refuses a setting vtok cannot train
with in one line (:class:`~vtok.usage_error.UsageError`), before the Trainer, model or data exist."""

from __future__ import annotations

import importlib
import logging
from typing import Any

import torch
from lightning.pytorch.plugins.precision import Precision

from vtok.resume_checks import dotted_get
from vtok.usage_error import UsageError
from vtok.vae.compression import Compression

log = logging.getLogger(__name__)


def refuse_frozen_random_parts(config: Any) -> None:
    """A fresh run that freezes the encoder or quantizer for good needs weights for them (``model.init_from``):
    stage 2's preset without stage 1's checkpoint trained a decoder on a random, fixed encoder, without a word."""
    frozen = [part for part in dotted_get(config, "model.freeze") or [] if part in ("encoder", "quantizer")]
    if frozen and dotted_get(config, "model.freeze_steps") is None and dotted_get(config, "model.init_from") is None:
        raise UsageError(
            f"model.freeze keeps the {' and '.join(frozen)} fixed for the whole run, and nothing gives them weights: "
            "they would stay random; start from a trained model (--model.init_from runs/<stage 1>/checkpoints/last.ckpt), "
            "or set model.freeze_steps"
        )


def check_precision(precision: Any, training: bool, ema: bool) -> None:
    """Refuses the precisions vtok cannot train or score with (fp16, Transformer Engine's FP8, bf16-true with an EMA
    copy when ``training``), and warns of bf16 on the CPU."""
    name = str(precision)
    if name.startswith("bf16") and not torch.cuda.is_available():
        log.warning(
            "trainer.precision=%s on the CPU: torch's CPU bf16 3D-convolution backward has given NaN gradients "
            "at random (seen in the discriminator); use 32-true on the CPU", name,
        )  # fmt: skip
    if name == "bf16-true" and training and ema:
        raise UsageError(
            "trainer.precision=bf16-true keeps the EMA copy in bfloat16, where its updates round away once the decay "
            "nears 0.999 (validation and export would use stale weights); use bf16-mixed, or set model.ema_decay null "
            "(bf16-true still rounds away the smallest weight updates, as at a warm-up's low rates)"
        )
    if name.startswith("transformer-engine"):  # else a traceback without the package
        raise UsageError(
            f"trainer.precision={name} is not supported: Transformer Engine's FP8 replaces linear and layer-norm "
            "layers, and vtok's networks are mostly 3D convolutions; use bf16-mixed on GPU"
        )
    if name.startswith("16"):
        raise UsageError(
            f"trainer.precision={name} is not supported (fp16 overflows in video VAEs); use bf16-mixed on GPU or 32-true"
        )


def refuse_fsdp(strategy: Any) -> None:
    """FSDP, named or as a class path, launched or not."""
    name = strategy.get("class_path", "") if hasattr(strategy, "get") else strategy
    if isinstance(name, str) and "fsdp" in name.lower():
        raise UsageError(
            "FSDP is not supported: the EMA copy, the frozen-discriminator generator term and the adaptive "
            "weight need unsharded parameters; use the default DDP strategy (vtok's models fit one GPU)"
        )


def refuse_unsupported_trainer_settings(trainer: Any) -> None:
    """FSDP (see :func:`refuse_fsdp`), and Lightning's gradient accumulation and clipping: vtok steps its
    optimisers itself (generator and discriminator), so the ``model.*`` settings take their place."""
    refuse_fsdp(trainer.strategy)
    for setting, neutral, instead in (("accumulate_grad_batches", 1, "model.accumulate_batches"),
                                      ("gradient_clip_val", None, "model.grad_clip"),
                                      ("gradient_clip_algorithm", None, "model.grad_clip (a norm)")):  # fmt: skip
        if trainer.get(setting) not in (None, neutral):
            raise UsageError(
                f"trainer.{setting} does not apply: vtok steps its optimisers itself (generator and discriminator); "
                f"set {instead} instead"
            )


def check_clip_shape(config: Any) -> None:
    """The data's clip shape fits the model's compression, and its channels the RGB clips (before anything is built)."""
    autoencoder = dotted_get(config, "model.autoencoder.init_args") or dotted_get(config, "model.autoencoder")
    try:
        compression = Compression(
            temporal=dotted_get(autoencoder, "temporal_compression", 4),
            spatial=dotted_get(autoencoder, "spatial_compression", 8),
        )
        size = dotted_get(config, "data.size", 256)
        if not isinstance(size, int) and len(size) not in (1, 2):  # [] was an IndexError's traceback here
            raise UsageError(f"data.size must be one positive number or [height, width], got {size}")
        height, width = (size, size) if isinstance(size, int) else (size[0], size[-1])
        # from a prior, the lengths it reconstructs are known once it is built (check_clip_frames): a CogVideoX
        # prior's rule is stricter than the compression's, whose advice would name lengths the prior refuses
        frames = dotted_get(config, "data.num_frames", 17) if dotted_get(config, "model.init_from") is None else 1
        compression.check_clip(frames, height, width)
    except ValueError as error:
        raise UsageError(f"{error} (set data.num_frames / data.size to match the model)") from None
    if dotted_get(autoencoder, "in_channels", 3) != 3:
        raise UsageError(
            f"model.autoencoder.in_channels={dotted_get(autoencoder, 'in_channels')}: "
            "the data module gives RGB clips (3 channels)"
        )


def check_clip_frames(autoencoder: Any, frames: int) -> None:
    """The clip length fits what the built model reconstructs (a CogVideoX prior's rule, known once it is loaded:
    it failed at the first step, in the loss).

    Raises:
        UsageError: ``frames`` does not fit.
    """
    try:
        autoencoder.check_frames(frames)
    except ValueError as error:
        raise UsageError(f"{error} (set data.num_frames)") from None


def precision_of_plugins(plugins: Any) -> str | None:
    """The precision a ``trainer.plugins`` precision plugin sets (its ``precision`` argument, else its class name),
    ``None`` where none is given: vtok then leaves ``trainer.precision`` unset (Lightning refused the derived
    ``32-true`` beside the plugin, a precision the user never set) and checks the plugin's instead."""
    for plugin in plugins if isinstance(plugins, list) else [plugins]:
        class_path = getattr(plugin, "class_path", None) if plugin is not None else None
        if not isinstance(class_path, str) or "." not in class_path:
            continue
        module, name = class_path.rsplit(".", 1)
        try:
            plugin_class = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue  # jsonargparse has named it
        if isinstance(plugin_class, type) and issubclass(plugin_class, Precision):
            return str((getattr(plugin, "init_args", None) or {}).get("precision") or name)
    return None
