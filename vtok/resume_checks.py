"""Checks of a ``--ckpt_path`` before anything is built or written: a file Lightning can resume, of the
network the config describes, and which of the ``model.*`` settings given differ from the checkpoint's."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

import torch

from vtok.export import load_failure_reason, not_a_checkpoint_reason
from vtok.losses.adversarial import AdversarialLoss
from vtok.training.priors import CARRIED_FIELDS
from vtok.usage_error import UsageError

log = logging.getLogger("vtok.cli")


def dotted_get(namespace: Any, dotted: str, default: Any = None) -> Any:
    """The value at ``dotted`` (``"model.autoencoder.init_args"``) in nested namespaces or dicts, else ``default``."""
    for key in dotted.split("."):
        if namespace is None or key not in namespace:
            return default
        namespace = namespace[key]
    return namespace


def config_class(class_path: str) -> Any:
    """The object a config's ``class_path`` names (jsonargparse may write it shortened, through a package
    that re-exports it), or ``None`` when it cannot be imported."""
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None


def _plain(value: Any) -> Any:
    """``value`` with tuples as lists and mappings as dicts, as a checkpoint's saved settings hold them."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def check_checkpoint(path: str, config: Any, training: bool = True) -> dict[str, Any] | None:
    """Raises :class:`UsageError` unless ``path`` is a readable Lightning checkpoint of the network the
    config describes; when ``training`` (a resumed fit), reports the ``model.*`` settings that differ
    from its own (see :func:`_report_changed_settings`: validate and test train nothing). Returns the
    network config the checkpoint records (``None`` from a checkpoint vtok did not write)."""
    if not Path(path).exists():
        raise UsageError(f"--ckpt_path {path}: no such file")
    wrong_kind = not_a_checkpoint_reason(Path(path))
    if wrong_kind:
        raise UsageError(f"--ckpt_path: {wrong_kind}")
    try:  # memory-mapped: only the small records are read here
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # torch.load raises many types for foreign or cut-short files
        raise UsageError(f"--ckpt_path: {load_failure_reason(Path(path), error)}") from None
    if not isinstance(checkpoint, dict) or "pytorch-lightning_version" not in checkpoint:
        raise UsageError(f"--ckpt_path {path} is not a Lightning training checkpoint (vtok fit writes them)")
    network = (checkpoint.get("vtok") or {}).get("autoencoder_config")
    _check_network(path, network, dotted_get(config, "model.autoencoder"))
    _check_trained_parts(path, checkpoint.get("state_dict") or {}, config.get("model"), training)
    if training:
        _report_changed_settings(checkpoint.get("hyper_parameters") or {}, config.get("model"))
    return network


def _check_trained_parts(path: str, state: dict[str, torch.Tensor], model: Any, training: bool = True) -> None:
    """Refuses a resume (``training``), or a validate or test, that adds or drops the EMA copy or the discriminator,
    or builds another discriminator, before anything is written: loading failed later (missing or unexpected
    ``ema.*`` / ``adversarial.*`` weights, the optimizers' count), after config.yaml had been overwritten, so the
    error's advice (the run's own config) failed the same way. Their other settings may change."""
    if model is None:
        return
    advice = (f"a resumed run keeps it as it was; to change it, start a new run from these weights: --model.init_from {path}"
              if training else "scoring a checkpoint loads every part it trained: give its run's config "
              f"(--config {Path(path).parent.parent / 'config.yaml'}), or set it as the run had it")
    ema_saved, ema_given = any(key.startswith("ema.") for key in state), dotted_get(model, "ema_decay") is not None
    if ema_saved != ema_given:
        raise UsageError(
            f"--ckpt_path {path} trained {'with' if ema_saved else 'without'} an EMA copy, and model.ema_decay="
            f"{dotted_get(model, 'ema_decay')} {'drops' if ema_saved else 'adds'} it: " + advice
        )
    saved = {key: value.shape for key, value in state.items() if key.startswith("adversarial.")}
    given = dotted_get(model, "adversarial")
    if bool(saved) != (given is not None):
        raise UsageError(
            f"--ckpt_path {path} trained {'with' if saved else 'without'} a discriminator, and model.adversarial "
            f"{'drops' if saved else 'adds'} it: " + advice
            + (" (its model.adversarial.start_step delays it)" if given is not None else "")
        )
    # compared as a class: jsonargparse writes the path shortened (vtok.losses.AdversarialLoss)
    if given is None or config_class(str(dotted_get(given, "class_path") or "")) is not AdversarialLoss:
        return  # a subclass of one's own: its loading says what differs
    arguments = _plain(dict(dotted_get(given, "init_args") or {}))
    with torch.device("meta"):  # shapes only, nothing allocated
        built = {f"adversarial.{key}": value.shape for key, value in AdversarialLoss(**arguments).state_dict().items()}
    if built != saved:
        fields = ", ".join(f"{name}={arguments.get(name)}" for name in ("discriminator", "channels", "layers", "norm"))
        raise UsageError(
            f"--ckpt_path {path} holds another discriminator than model.adversarial builds ({fields}): "
            f"give the run's own config: --config {Path(path).parent.parent / 'config.yaml'}"
        )


def _check_network(path: str, saved: dict[str, Any] | None, given: Any) -> None:
    """Refuses a config whose network differs from the checkpoint's, before anything is built or written:
    the weights would fail to load (or load into another model) after the run folder's config.yaml had been
    overwritten with the wrong network, and the error's advice (the run's own config) no longer worked.
    ``gq_temperature`` and ``denoise_max_timestep`` shape training only: they are reported, not refused."""
    init_args = dotted_get(given, "init_args")
    if not saved or init_args is None:
        return
    now = _plain(init_args.as_dict() if hasattr(init_args, "as_dict") else dict(init_args))
    saved = _plain(saved)
    shared = sorted(now.keys() & saved.keys() - {"backbone_class", "backbone_config"})
    if saved.get("backbone_class"):  # built on a diffusers prior: only the fields carried over from the config
        shared = [key for key in shared if key in CARRIED_FIELDS]
    training_only = {"gq_temperature", "denoise_max_timestep"}
    differ = [f"{key}={now[key]} (the checkpoint's: {saved[key]})" for key in shared if now[key] != saved[key]]
    refused = [text for text in differ if text.split("=")[0] not in training_only]
    if refused:
        raise UsageError(
            f"--ckpt_path {path} holds another network than the config describes: model.autoencoder."
            + ", model.autoencoder.".join(refused[:4])
            + f"; give the run's own config: --config {Path(path).parent.parent / 'config.yaml'}, without flags that "
            "change model.autoencoder (a new network starts a new run: --model.init_from the checkpoint)"
        )
    for text in differ:
        log.warning("model.autoencoder.%s: going on with the config's", text)


def _report_changed_settings(saved: dict[str, Any], model: Any) -> None:
    """Says which ``model.*`` settings differ from those the checkpoint was trained with. The command
    line and config decide (Lightning's own reading would lay the checkpoint's over them, silently
    undoing a flag given to resume with, such as ``--model.activation_checkpointing true``); the
    optimizers' settings too (laid over their restored state when training starts)."""
    for key, before in saved.items():
        if key.startswith("_") or key == "init_from" or model is None or key not in model:  # the start: weights are restored
            continue
        now = model[key]
        now = _plain(now.as_dict() if hasattr(now, "as_dict") else now)
        before = _plain(before)
        if isinstance(now, dict) and isinstance(before, dict):  # each changed field; one a later vtok added is no change
            changes = [(f"{key}.{field}", now[field], before[field]) for field in sorted(now.keys() & before.keys())]
        else:
            changes = [(key, now, before)]
        for name, given, trained in changes:
            if given != trained:
                log.warning("model.%s=%s, where the checkpoint trained with %s: going on with %s", name, given, trained, given)
