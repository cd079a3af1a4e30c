"""``from_pretrained`` that refuses incomplete weights instead of leaving some layers random, and
never downloads unasked.

diffusers only warns when a checkpoint lacks tensors the model has (or holds tensors of another
shape): depending on ``low_cpu_mem_usage`` those layers stay freshly initialised or on the meta
device, and a damaged or mismatched export would then encode and decode noise without an error.
With a ``device_map`` it fails first, on copying a meta tensor, naming nothing; a tensor of another
shape it answers with advice to load random layers in its place. So the names and shapes in the
safetensors files' headers are compared with those of the model the config builds (on the meta
device, no memory) before diffusers reads a weight, and what diffusers reports after loading is
checked again (weights of another format than safetensors are checked then only).

diffusers also takes any name that is not a folder for a Hugging Face Hub id and asks the Hub for it
(a mistyped path spends many seconds in retries before an unclear error). Here a path that is not
there is a ``FileNotFoundError``, and a Hub id is read from the standard cache only
(``local_files_only=True``) unless the caller passes ``local_files_only=False``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from diffusers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFETENSORS_WEIGHTS_NAME, WEIGHTS_INDEX_NAME, WEIGHTS_NAME, _add_variant
from huggingface_hub import try_to_load_from_cache
from huggingface_hub.utils import HFValidationError, validate_repo_id
from safetensors import SafetensorError, safe_open

from vtok.error_text import run_folder_hint
from vtok.vae.load_arguments import check_load_arguments

LOADING_PROBLEMS = {
    "missing_keys": "tensors missing from the weights",
    "mismatched_keys": "tensors of another shape than the config builds",
    "unexpected_keys": "tensors the config does not build",
    "error_msgs": "loading errors",
}


class IncompleteWeightsError(ValueError):
    """Weights that do not cover the model their config builds, tensor for tensor."""


def _is_hub_id(source: str) -> bool:
    if source.startswith((".", "~")) or (os.sep != "/" and os.sep in source):
        return False
    try:
        validate_repo_id(source)
    except HFValidationError:
        return False
    return True


def check_source(source: Any, kwargs: dict[str, Any]) -> Any:
    """Raises unless ``source`` is a folder, or a Hub id in the local cache (``kwargs`` of
    ``from_pretrained``, given ``local_files_only=True`` unless they ask for downloads); returns the
    source to load: a folder with ``~`` expanded (diffusers would take ``~/export`` for a Hub id).

    Raises:
        FileNotFoundError: no such folder, and (for a name shaped like a Hub id) none in the cache.
        ValueError: ``source`` is a file.
    """
    if not isinstance(source, (str, os.PathLike)):
        return source  # diffusers' own error
    path = Path(source).expanduser()
    if path.is_dir():
        check_model_folder(path / (kwargs.get("subfolder") or ""), kwargs.get("variant"))
        return str(path)
    if path.exists():
        raise ValueError(
            f"{source} is a file, not a folder written by save_pretrained or `vtok export` "
            "(read a training checkpoint with vtok.export.load_autoencoder)"
        )
    if not isinstance(source, str) or not _is_hub_id(source):
        raise FileNotFoundError(f"no folder at {source}: give the folder written by save_pretrained or `vtok export`")
    if kwargs.get("local_files_only") is False:
        return source  # downloads asked for
    kwargs["local_files_only"] = True
    subfolder = kwargs.get("subfolder")
    config = f"{subfolder}/config.json" if subfolder else "config.json"
    if not isinstance(try_to_load_from_cache(source, config, kwargs.get("cache_dir"), kwargs.get("revision")), str):
        raise FileNotFoundError(
            f"{source!r} is neither a folder here nor a Hugging Face Hub model in the local cache; vtok never "
            f"downloads unasked: fetch it (`hf download {source}`) or pass local_files_only=False"
        )
    return source


def check_model_folder(folder: Path, variant: str | None, remedy: str = "re-export the model from its checkpoint") -> None:
    """Raises where ``folder`` lacks the config or the weights ``from_pretrained`` reads: diffusers named a
    ``.bin`` file the folder never had (after a line about "unsafe serialization"), or only the config.
    ``remedy`` ends the message of a folder without weights.

    Raises:
        FileNotFoundError: no config.json (a training run's folder is named as one), or no weights file of
            ``variant`` (the variants the folder holds are named).
    """
    if not (folder / "config.json").is_file():
        hint = run_folder_hint(folder)
        raise FileNotFoundError(
            f"{folder} has no config.json: not a folder written by save_pretrained or `vtok export`"
            + (f"{hint} to vtok.export.load_autoencoder" if hint else "")
        )
    weights = (SAFETENSORS_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME, WEIGHTS_NAME, WEIGHTS_INDEX_NAME)
    names = [_add_variant(name, variant) for name in weights]
    if any((folder / name).is_file() for name in names):
        return
    stem = SAFETENSORS_WEIGHTS_NAME.split(".")[0]
    variants = sorted({re.sub(r"-\d+-of-\d+$", "", part.name.split(".")[1])  # a shard's number is not the variant's
                       for part in folder.glob(f"{stem}.*.*") if part.name.count(".") == 2})
    held = f"; it holds the weights of variant {', '.join(map(repr, variants))}: pass variant=" if variants else ""
    raise FileNotFoundError(f"{folder} has no weights file {names[0]}{held or f': {remedy}'}")


def _weights_folder(source: Any, kwargs: dict[str, Any]) -> Path | None:
    """The folder whose files ``from_pretrained(source, **kwargs)`` reads, where it is here (a folder, or a
    Hub model in the cache); ``None`` where diffusers would download it."""
    subfolder = kwargs.get("subfolder") or ""
    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        return Path(source) / subfolder
    if not isinstance(source, str):
        return None
    config = f"{subfolder}/config.json" if subfolder else "config.json"
    cached = try_to_load_from_cache(source, config, kwargs.get("cache_dir"), kwargs.get("revision"))
    return Path(cached).parent if isinstance(cached, str) else None


def weights_shapes(folder: Path, variant: str | None = None) -> dict[str, list[int]] | None:
    """Name -> shape of every tensor in ``folder``'s safetensors weights (one file, or the shards of an
    index), read from the files' headers only; ``None`` where there are none, or they cannot be read
    (diffusers' own loading then says why)."""
    index = folder / _add_variant(SAFE_WEIGHTS_INDEX_NAME, variant)
    single = folder / _add_variant(SAFETENSORS_WEIGHTS_NAME, variant)
    try:
        files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file() else [single.name]
        shapes: dict[str, list[int]] = {}
        for name in files:
            with safe_open(folder / name, framework="pt") as weights:
                shapes.update({key: list(weights.get_slice(key).get_shape()) for key in weights.keys()})
    except (OSError, ValueError, KeyError, TypeError, AttributeError, SafetensorError):
        return None
    return shapes


def _built_shapes(cls: Any, folder: Path) -> dict[str, list[int]]:
    """Name -> shape of every tensor of the model ``cls`` builds from ``folder``'s config, built on the meta device."""
    config = cls.load_config(folder)
    with torch.device("meta"):
        model = cls.from_config(config)
    return {key: list(tensor.shape) for key, tensor in model.state_dict().items()}


REEXPORT = "re-export it from its training checkpoint"


def _refuse_incomplete(where: Any, info: dict[str, list[Any]], remedy: str = REEXPORT) -> None:
    """Raises :class:`IncompleteWeightsError` naming the problems in ``info`` (lists keyed as ``LOADING_PROBLEMS``)
    and ``remedy``."""
    problems = [
        f"{len(info[key])} {what} (first: {', '.join(str(item) for item in info[key][:3])})"
        for key, what in LOADING_PROBLEMS.items()
        if info.get(key)
    ]
    if problems:
        raise IncompleteWeightsError(
            f"{where} does not match its config.json: {'; '.join(problems)}. "
            f"Refusing to load a model with random layers; {remedy}"
        )


def check_weights_before_loading(cls: Any, source: Any, kwargs: dict[str, Any], remedy: str = REEXPORT) -> None:
    """Compares the tensors' names and shapes in the safetensors headers that ``from_pretrained(source,
    **kwargs)`` will read with the model ``cls`` builds from its config (whose checks run first); not
    checked where the weights are not safetensors here (downloads, ``use_safetensors=False``, quantization).
    ``remedy`` ends the error's message.

    Raises:
        IncompleteWeightsError: tensors missing, of another shape, or not in the model.
    """
    folder = _weights_folder(source, kwargs)
    if folder is None or kwargs.get("use_safetensors") is False or kwargs.get("quantization_config") is not None:
        return
    found = weights_shapes(folder, kwargs.get("variant"))
    if found is None:
        return
    built = _built_shapes(cls, folder)
    _refuse_incomplete(source, {
        "missing_keys": sorted(built.keys() - found.keys()),
        "mismatched_keys": [f"{key}: {found[key]} in the file, {built[key]} built"
                            for key in sorted(built.keys() & found.keys()) if found[key] != built[key]],
        "unexpected_keys": sorted(found.keys() - built.keys()),
    }, remedy)  # fmt: skip


class StrictLoadingMixin:
    """Mixed into a diffusers ``ModelMixin``: ``from_pretrained`` raises :class:`IncompleteWeightsError`
    naming what did not load, unless every tensor of the model came from the weights file, and reads
    only local folders and the Hub cache unless given ``local_files_only=False`` (see :func:`check_source`).
    A dtype may be given by name (``torch_dtype="bfloat16"``); ``device_map`` must name one device
    (see :func:`~vtok.vae.load_arguments.check_load_arguments`). The weights' names and shapes are checked
    before diffusers reads them (:func:`check_weights_before_loading`), and what it loaded after.
    """

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any) -> Any:
        source = check_source(args[0] if args else kwargs.get("pretrained_model_name_or_path"), kwargs)
        check_load_arguments(kwargs)
        check_weights_before_loading(cls, source, kwargs)
        if args:
            args = (source, *args[1:])
        else:
            kwargs["pretrained_model_name_or_path"] = source
        wants_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(*args, output_loading_info=True, **kwargs)  # type: ignore[misc]
        _refuse_incomplete(args[0] if args else kwargs.get("pretrained_model_name_or_path", "the weights"), info)
        return (model, info) if wants_info else model
