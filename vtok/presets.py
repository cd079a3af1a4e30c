"""The configs shipped in the package (``vtok/configs``): the default one every command starts from, and the
presets a ``--config configs/<preset>.yaml`` names from any folder after a plain ``pip install``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml

from vtok.usage_error import UsageError

CONFIG_DIR = Path(__file__).parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"
log = logging.getLogger("vtok.cli")


def with_packaged_presets(arguments: list[str], subcommand: bool = True) -> list[str]:
    """``arguments`` (those after the subcommand; all of them with ``subcommand=False``) with every config file
    (``--config``, ``-c``) moved ahead of the flags, in their order: jsonargparse applies arguments in order, so a flag written before ``--config`` was silently undone by the
    file, where flags are meant to win. A config named ``configs/<preset>.yaml`` (or ``<preset>.yaml``) that
    is not a file here names the preset shipped in the package, so the README's commands work from any
    folder after a plain ``pip install``. Rewriting the result again gives it unchanged."""
    start = next((i + 1 for i, argument in enumerate(arguments) if argument in ("fit", "validate", "test")), None)
    if start is None and subcommand:
        return list(arguments)
    start = start if subcommand else 0
    configs, flags, rest = [], [], arguments[start:]
    index = 0
    while index < len(rest):
        argument = rest[index]
        option, equals, value = argument.partition("=")
        if argument == CLEAR_CALLBACKS and _config_setting_callbacks_follows(rest, index + 1):
            pass  # put there by an earlier rewrite (see below), kept with its config: Lightning starts the ranks of
            # trainer.devices > 1 with the rewritten command line, which a rank rewrites again
        elif _is_config_option(option) and (equals or index + 1 < len(rest)):
            path = _packaged(value if equals else rest[index + 1])
            index += 0 if equals else 1
            if _sets_callbacks(path):  # its list replaces the one before, as a list on the command line does
                configs.append(CLEAR_CALLBACKS)
            configs += [f"{option}={path}"] if equals else [option, path]
        else:
            given = value if equals else (rest[index + 1] if index + 1 < len(rest) else None)
            if _replaces_callbacks(option, given, flags):
                flags.append(CLEAR_CALLBACKS)  # a list given here replaces the config's whole, as a config file's does
            flags.append(argument)
        index += 1
    return [*arguments[:start], *configs, *flags]


def _replaces_callbacks(option: str, value: str | None, flags_before: list[str]) -> bool:
    """Whether ``option value`` gives a ``trainer.callbacks`` list (not ``+=``, which appends; not ``[]``, this
    rewrite's own) that needs the list before it cleared first: jsonargparse merged a list of the same length as the
    config's item by item (see :func:`_sets_callbacks`); cleared already when the flag before is that clearing."""
    return option == "--trainer.callbacks" and value not in (None, "[]") and flags_before[-1:] != [CLEAR_CALLBACKS]


CLEAR_CALLBACKS = "--trainer.callbacks=[]"  # before a config file that gives its own list


def trainer_setting(config_file: str | Path, key: str) -> Any:
    """The ``trainer.<key>`` a config file gives; ``None`` when it gives none or cannot be read (jsonargparse
    reports an unreadable file)."""
    try:
        loaded = yaml.safe_load(Path(config_file).read_text())
    except (OSError, yaml.YAMLError):
        return None
    trainer = loaded.get("trainer") if isinstance(loaded, dict) else None
    return trainer.get(key) if isinstance(trainer, dict) else None


def _config_setting_callbacks_follows(arguments: list[str], index: int) -> bool:
    """Whether ``arguments[index:]`` starts with a config file (``--config F``, ``-c F``, ``--config=F``) that
    gives ``trainer.callbacks``: a ``--trainer.callbacks=[]`` before it is a rewrite's, not the user's."""
    if index >= len(arguments):
        return False
    option, equals, value = arguments[index].partition("=")
    if not _is_config_option(option) or not (equals or index + 1 < len(arguments)):
        return False
    return _sets_callbacks(_packaged(value if equals else arguments[index + 1]))


def _is_config_option(option: str) -> bool:
    """Whether ``option`` is ``--config``, ``-c`` or an abbreviation argparse takes for ``--config`` (``--conf``): as
    given, it passed this rewrite by, so a flag before it was undone by the file and a preset name was not found."""
    return option == "-c" or (len(option) >= len("--co") and "--config".startswith(option))


def _sets_callbacks(config: str) -> bool:
    """Whether the config file ``config`` gives ``trainer.callbacks``. jsonargparse merges a list of the same
    length item by item into the list before it: a config listing a ModelCheckpoint and ReconstructionPictures,
    as the presets do, silently took default.yaml's ``every_n_train_steps``/``every_n_steps`` for the keys it
    left out (refused beside a ``train_time_interval``; pictures every 50 steps where the class says 100)."""
    return trainer_setting(config, "callbacks") is not None


def _packaged(given: str) -> str:
    """``given``, or the preset shipped in the package that it names (see :func:`with_packaged_presets`)."""
    name, packaged = Path(given), CONFIG_DIR / Path(given).name
    if name.exists() or name.parent not in (Path("."), Path("configs")):
        return given
    if packaged.is_file():
        log.info("--config %s: the preset shipped with vtok, %s", given, packaged)
        return str(packaged)
    presets = ", ".join(sorted(path.name for path in CONFIG_DIR.glob("*.yaml")))  # not the 80-line usage of a missing file
    raise UsageError(f"--config {given}: no such file here, nor a preset shipped with vtok (presets: {presets})")
