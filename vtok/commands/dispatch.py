"""Runs one of vtok's own subcommands from the ``vtok`` command line, its expected failures as one line."""

from __future__ import annotations

import importlib
import sys

from vtok.disk_errors import disk_error_line, is_output_disk_error

# name -> "module:function(argv)", imported only when used
SUBCOMMANDS = {
    "export": "vtok.commands.export:main",
    "prepare": "vtok.commands.prepare:main",
    "evaluate": "vtok.commands.evaluate:main",
    "tokenize": "vtok.commands.tokenize:main",
    "detokenize": "vtok.commands.detokenize:main",
}
# what a subcommand stopped by Ctrl-C keeps for a rerun of the same command, which goes on from there
# (prepare says it itself: it names its --out)
RESUMABLE = {"tokenize": "the token files it wrote are kept"}


def run_subcommand(name: str, argv: list[str]) -> None:
    """Runs subcommand ``name`` (a key of :data:`SUBCOMMANDS`) on ``argv``. A mistake it reports (ValueError,
    FileNotFoundError) is one line and exit status 2; a disk that refuses its writes (:mod:`vtok.disk_errors`) one
    line and status 1; Ctrl-C is one line, with what was kept, and status 130 (128 + SIGINT, as shells report it):
    none is a traceback."""
    module_name, function = SUBCOMMANDS[name].split(":")
    try:
        getattr(importlib.import_module(module_name), function)(argv)
    except (ValueError, FileNotFoundError) as error:
        print(f"vtok {name}: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except Exception as error:  # an OSError, or safetensors' error carrying one
        if not is_output_disk_error(error):
            raise
        print(f"vtok {name}: error: {disk_error_line(error)}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        kept = f"; {RESUMABLE[name]}: run the same command again to go on" if name in RESUMABLE else ""
        print(f"vtok {name}: interrupted{kept}", file=sys.stderr)
        raise SystemExit(130) from None
