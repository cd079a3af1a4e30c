"""``from_pretrained`` that refuses incomplete weights instead of leaving some layers random, and
never downloads unasked.

diffusers only warns when a checkpoint lacks tensors the model has (or holds tensors of another
shape): depending on ``low_cpu_mem_usage`` those layers stay freshly initialised or on the meta
device, and a damaged or mismatched export would then encode and decode noise without an error.

diffusers also takes any name that is not a folder for a Hugging Face Hub id and asks the Hub for it
(a mistyped path spends many seconds in retries before an unclear error). Here a path that is not
there is a ``FileNotFoundError``, and a Hub id is read from the standard cache only
(``local_files_only=True``) unless the caller passes ``local_files_only=False``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from huggingface_hub import try_to_load_from_cache
from huggingface_hub.utils import HFValidationError, validate_repo_id

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


class StrictLoadingMixin:
    """Mixed into a diffusers ``ModelMixin``: ``from_pretrained`` raises :class:`IncompleteWeightsError`
    naming what did not load, unless every tensor of the model came from the weights file, and reads
    only local folders and the Hub cache unless given ``local_files_only=False`` (see :func:`check_source`).
    A dtype may be given by name (``torch_dtype="bfloat16"``); ``device_map`` must name one device
    (see :func:`~vtok.vae.load_arguments.check_load_arguments`).
    """

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any) -> Any:
        source = check_source(args[0] if args else kwargs.get("pretrained_model_name_or_path"), kwargs)
        check_load_arguments(kwargs)
        if args:
            args = (source, *args[1:])
        else:
            kwargs["pretrained_model_name_or_path"] = source
        wants_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(*args, output_loading_info=True, **kwargs)  # type: ignore[misc]
        problems = [
            f"{len(info[key])} {what} (first: {', '.join(str(item) for item in info[key][:3])})"
            for key, what in LOADING_PROBLEMS.items()
            if info.get(key)
        ]
        if problems:
            where = args[0] if args else kwargs.get("pretrained_model_name_or_path", "the weights")
            raise IncompleteWeightsError(
                f"{where} does not match its config.json: {'; '.join(problems)}. "
                "Refusing to load a model with random layers; re-export it from its training checkpoint"
            )
        return (model, info) if wants_info else model
