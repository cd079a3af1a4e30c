"""What an export's ``config.json`` records beside the constructor's fields, and the checks that it
describes the model it builds.

``vtok export`` writes private ``_vtok_*`` keys into config.json (the format version, and what the
network it wrote computes: compression, codebook size, tokens per position; and a fingerprint of the
constructor's fields). diffusers keeps them in ``model.config`` and never passes them to the
constructor, so a config edited after export (other ``fsq_levels`` or their order, another
``frame_padding`` or ``decoder_causal``: the weights' shapes do not change) would build another
model from the same weights without a word. :class:`ExportConfigMixin` makes every
``from_pretrained`` (``vtok.export.load_autoencoder`` included) refuse that, a config.json of another
class and one of a newer export format. A plain ``save_pretrained`` records the same identity (the
fingerprint, compression, codebook size and tokens per position) where the model's config holds none
yet, so its folder is checked alike; folders saved before it did are loaded unchecked.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from collections.abc import Mapping
from importlib.metadata import version
from pathlib import Path
from typing import Any

EXPORT_FORMAT = 1  # bump when the folder layout or the metadata keys change; keep loading old ones
CLASS_NAME = "VideoAutoencoder"
RECORDED = {  # config.json key -> the model property it records
    "_vtok_compression": "compression",
    "_vtok_codebook_size": "codebook_size",
    "_vtok_tokens_per_position": "tokens_per_position",
}


FINGERPRINT_KEY = "_vtok_config_sha256"
FINGERPRINT_FIELDS_KEY = "_vtok_config_fields"


def constructor_fields(config: Mapping[str, Any]) -> list[str]:
    """The constructor's fields in ``config`` (a model's ``config``): its keys but the private ones."""
    return sorted(key for key in config if not key.startswith("_"))


def config_fingerprint(config: Mapping[str, Any], fields: list[str]) -> str:
    """Hex sha256 of the values of ``fields`` in ``config``. An export records the fields it hashed
    (``_vtok_config_fields``), so fields a later vtok adds with a default, and a loaded export saved
    again with them, leave its fingerprint alone."""
    values = {field: config.get(field) for field in fields}
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()


def identity_metadata(model: Any) -> dict[str, Any]:
    """The ``_vtok_*`` keys that let a loader check a config.json against the model it builds: the
    compression, codebook size and tokens per position, and the fingerprint of the fields."""
    fields = constructor_fields(model.config)
    recorded = {key: getattr(model, field) for key, field in RECORDED.items()}
    recorded["_vtok_compression"] = str(recorded["_vtok_compression"])
    return {**recorded, FINGERPRINT_KEY: config_fingerprint(model.config, fields), FINGERPRINT_FIELDS_KEY: fields}


class ExportConfigError(ValueError):
    """A config.json that is not a vtok export this version can load, or that was edited after export."""


def check_export_config(config: Mapping[str, Any], where: Any) -> None:
    """Raises :class:`ExportConfigError` unless ``config`` (config.json as read) is a
    ``VideoAutoencoder``'s of an export format this vtok reads."""
    if not isinstance(config, Mapping):  # valid JSON, but a list or a number: "'list' object has no attribute 'get'"
        raise ExportConfigError(f"{where}: config.json holds a JSON {type(config).__name__}, expected an object ({{...}})")
    if config.get("_class_name") != CLASS_NAME:
        raise ExportConfigError(f"{where} holds a {config.get('_class_name')!r}, not a vtok {CLASS_NAME}")
    version = config.get("_vtok_format", EXPORT_FORMAT)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ExportConfigError(
            f"{where}: config.json has _vtok_format {version!r}, not a positive integer; "
            "the file was edited or damaged: re-export it from its training checkpoint"
        )
    if version > EXPORT_FORMAT:
        raise ExportConfigError(f"{where} was written by a newer vtok (export format {version}); upgrade vtok")


def check_recorded_identity(model: Any, where: Any) -> None:
    """Raises :class:`ExportConfigError` when the compression, codebook size or tokens per position
    that ``model.config`` recorded at export differ from what its fields built in ``model``, or when
    its fields differ from those the export's fingerprint was taken of (exports without one: not checked)."""
    _check_fingerprint(model, where)
    for key, field in RECORDED.items():
        if key not in model.config:
            continue
        recorded, built = model.config[key], getattr(model, field)
        built = str(built) if field == "compression" else built
        if recorded != built:
            raise ExportConfigError(
                f"{where}: config.json records {field} {recorded!r} (written at export), but its fields build "
                f"{field} {built!r}: the config was edited after export; restore it or re-export from the checkpoint"
            )


def _check_fingerprint(model: Any, where: Any) -> None:
    """:func:`check_config_fingerprint` on a built model's config."""
    check_config_fingerprint(model.config, type(model), where)


def _with_defaults(config: Mapping[str, Any], cls: type) -> dict[str, Any]:
    """``config`` as read from config.json, as the model ``cls`` builds from it records it: each constructor
    field the file does not hold at its default, fields the constructor does not take left out."""
    parameters = inspect.signature(cls.__init__).parameters
    fields = {
        name: config.get(name, parameter.default) for name, parameter in parameters.items()
        if name != "self" and parameter.kind is parameter.POSITIONAL_OR_KEYWORD
        and (name in config or parameter.default is not parameter.empty)
    }  # fmt: skip
    return {**{key: value for key, value in config.items() if key.startswith("_")}, **fields}


def check_config_fingerprint(config: Mapping[str, Any], cls: type, where: Any) -> None:
    """Raises :class:`ExportConfigError` when ``config`` (a model's, or config.json's as read, whose missing
    fields take ``cls``'s constructor defaults) differs from the fields its recorded fingerprint was taken of:
    the fields the export hashed must hash alike; any other field (one a later vtok added) must hold its
    constructor default, as the model the export wrote did. Without a fingerprint: not checked."""
    recorded = config.get(FINGERPRINT_KEY)
    if recorded is None:
        return
    defaults = inspect.signature(cls.__init__).parameters
    unknown = [field for field in config.get(FINGERPRINT_FIELDS_KEY) or [] if field not in defaults]
    if unknown:  # dropped by _with_defaults, so the fingerprint could never match: not an edit
        raise ExportConfigError(
            f"{where} was written by a newer vtok: its fields {', '.join(unknown)} are unknown to this version "
            f"(vtok {version('vtok')}); upgrade vtok to load it"
        )
    config = _with_defaults(config, cls)
    fields = list(config.get(FINGERPRINT_FIELDS_KEY) or [])
    added = [
        field for field in constructor_fields(config)
        if field not in fields and field in defaults and _jsonable(config[field]) != _jsonable(defaults[field].default)
    ]  # fmt: skip
    if added:
        what = f"{added[0]} is set, which the export left at its default"
    elif recorded != config_fingerprint(config, fields):
        what = f"{FINGERPRINT_KEY} does not match"
    else:
        return
    raise ExportConfigError(
        f"{where}: config.json's fields differ from those written at export ({what}): the config was edited "
        "after export, and the same weights would compute something else; restore it or re-export from the checkpoint"
    )


def _jsonable(value: Any) -> Any:
    """``value`` as config.json holds it (tuples as lists), to compare a loaded field with a default."""
    return json.loads(json.dumps(value, default=str))


def _source(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return args[0] if args else kwargs.get("pretrained_model_name_or_path")


def _first(loaded: Any) -> Any:
    return loaded[0] if isinstance(loaded, tuple) else loaded  # (config, ...) or (model, loading info)


class ExportConfigMixin:
    """Mixed into ``VideoAutoencoder`` before the diffusers classes: ``load_config`` runs
    :func:`check_export_config` and :func:`check_config_fingerprint` on what it reads (so
    ``from_pretrained`` refuses an edited config before it reads any weights, whose shapes the edit may
    have changed), and ``from_pretrained`` runs :func:`check_recorded_identity` on the model it built."""

    @classmethod
    def load_config(cls, *args: Any, **kwargs: Any) -> Any:
        loaded = super().load_config(*args, **kwargs)  # type: ignore[misc]
        check_export_config(_first(loaded), _source(args, kwargs))
        check_config_fingerprint(_first(loaded), cls, _source(args, kwargs))
        return loaded

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any) -> Any:
        loaded = super().from_pretrained(*args, **kwargs)  # type: ignore[misc]
        check_recorded_identity(_first(loaded), _source(args, kwargs))
        return loaded

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, **kwargs: Any) -> None:
        """diffusers' save; a model whose config records no identity yet (built in Python, not loaded from
        an export, which keeps its own) gets it written into config.json, so an edited copy is refused."""
        super().save_pretrained(save_directory, *args, **kwargs)  # type: ignore[misc]
        config_path = Path(save_directory) / self.config_name  # type: ignore[attr-defined]
        if FINGERPRINT_KEY in self.config or not config_path.is_file():  # type: ignore[attr-defined]
            return
        config = {**json.loads(config_path.read_text()), **identity_metadata(self)}
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
