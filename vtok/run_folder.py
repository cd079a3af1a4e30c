"""Where a run's files go: the run folder a fit writes into or resumes in, and the checkpoint a
resume starts from (``--ckpt_path last``, a restarted launch, a requeued SLURM job)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_only

from vtok.presets import trainer_setting
from vtok.usage_error import UsageError

CHECKPOINT_KEYWORDS = ("last", "best", "hpc", "registry")  # --ckpt_path values Lightning resolves itself
RUN_FOLDER_VARIABLE = "VTOK_RUN_FOLDER"  # the folder the first process claimed, for the ranks Lightning starts
LAUNCH_START_MARKER = ".launch-resumed-from"  # in a run folder: the checkpoint a launched fit's first start resumed from


def inherits_run_folder() -> bool:
    """Whether this process is a rank that Lightning started (``trainer.devices`` above 1 without a launcher:
    it runs the command line again, with ``LOCAL_RANK`` set) from a process that claimed the run folder."""
    return bool(os.environ.get(RUN_FOLDER_VARIABLE)) and bool(os.environ.get("LOCAL_RANK"))


def home_expanded(folder: str | None) -> str | None:
    """A local run folder given as ``~/runs/x`` (from a config file, or ``--trainer.default_root_dir=~/...``, which
    the shell leaves as it is) with the home folder put in, as Lightning reads it; ``None`` and URLs as given."""
    return os.path.expanduser(folder) if folder is not None and "://" not in str(folder) else folder


def newest_checkpoint(run: Path, or_any: bool = False) -> str | None:
    """The newest checkpoint a run folder holds to resume from: a ``checkpoints/last*.ckpt`` or the
    ``hpc_ckpt_*.ckpt`` Lightning's SLURM auto-requeue writes (by modification time, as Lightning
    picks among ``last*``); with ``or_any``, when there is none of those (a ModelCheckpoint without
    ``save_last``), the newest ``checkpoints/*.ckpt``; ``None`` before any."""
    saved = [*(run / "checkpoints").glob("last*.ckpt"), *run.glob("hpc_ckpt_*.ckpt")]
    if not saved and or_any:
        saved = list((run / "checkpoints").glob("*.ckpt"))
    return str(max(saved, key=lambda path: path.stat().st_mtime)) if saved else None


def mark_the_launch_start(run: Path, checkpoint: str | None) -> None:
    """Record, for the launch's restarts, the checkpoint its first start resumes from (none, or a keyword Lightning
    resolves: the marker is removed); the marker's time is the start's. Written by the first rank alone; see
    :func:`restart_checkpoint`."""
    if rank_zero_only.rank != 0:
        return
    marker = run / LAUNCH_START_MARKER
    if checkpoint is None or checkpoint in CHECKPOINT_KEYWORDS:  # `hpc`: Lightning's newest hpc_ckpt_*, as a restart's
        marker.unlink(missing_ok=True)
    else:  # a fine-tuned run's folder is made here, before Lightning makes it
        run.mkdir(parents=True, exist_ok=True)
        named = checkpoint if "://" in checkpoint else os.path.abspath(checkpoint)  # a requeue may start elsewhere
        marker.write_text(f"{named}\n", encoding="utf-8", errors="surrogateescape")


def restart_checkpoint(run: Path, given: str | None) -> str | None:
    """The checkpoint a restarted launch (torchrun ``--max_restarts``, a requeued SLURM job) goes on from: the
    newest the run folder holds, unless the launch's first start resumed from another one
    (:func:`mark_the_launch_start`) and nothing was saved since, as when a run rolled back to an earlier
    checkpoint is restarted before its first save: then that one, not the ``last.ckpt`` it abandoned."""
    newest, marker = newest_checkpoint(run, or_any=True), run / LAUNCH_START_MARKER
    if newest is None or not marker.is_file() or Path(newest).stat().st_mtime > marker.stat().st_mtime:
        return newest or given
    return marker.read_text(encoding="utf-8", errors="surrogateescape").rstrip("\n")


def resumed_run_folder(config: Any) -> str | None:
    """The run a resume goes on in: the folder of a ``--ckpt_path`` file ``<run>/checkpoints/*.ckpt``,
    or for ``--ckpt_path last`` the folder of a ``--config <run>/config.yaml`` that holds a checkpoint
    (``checkpoints/``, or only SLURM's ``hpc_ckpt_*.ckpt`` when requeued before the first save)."""
    checkpoint = config.get("ckpt_path")
    if checkpoint == "last":
        runs = [path.parent for path in _run_configs_given(config) if _holds_checkpoints(path.parent)]
        return str(runs[-1]) if runs else None
    if checkpoint and checkpoint not in CHECKPOINT_KEYWORDS and "://" not in str(checkpoint):
        folder = Path(checkpoint).absolute().parent  # `last.ckpt` given inside checkpoints/ has the parent "."
        if folder.name == "checkpoints":
            return str(folder.parent)
    return None


def follow_the_resumed_run(config: Any, folder_given_now: bool) -> str | None:
    """The folder a resume goes on in when the config's recorded ``trainer.default_root_dir`` names another
    (``None`` when they agree, or a folder was given on this command line or by a config file other than the
    run's own ``config.yaml``, which wins): the folder of the ``--ckpt_path`` file, or of the
    ``--config <run>/config.yaml`` that holds the checkpoints, absolute. A run
    folder moved or copied, or one recorded relative to another working directory, otherwise resumed from
    and wrote into the recorded folder: the old one, or a new empty one where ``last`` found nothing and the
    run began afresh, without a word."""
    recorded = config.trainer.get("default_root_dir")
    resumed = resumed_run_folder(config) or _run_config_folder(config)
    if folder_given_now or recorded is None or resumed is None:
        return None
    if Path(recorded).resolve() == Path(resumed).resolve():
        return None
    if home_expanded(trainer_setting(Path(resumed) / "config.yaml", "default_root_dir")) != recorded:  # `~/x` read as vtok does
        return None  # not the run's own record but a folder another --config file gives: that one is asked for
    return str(Path(resumed).resolve())


def _run_config_folder(config: Any) -> str | None:
    """For ``--ckpt_path last``, the folder of the last ``--config <run>/config.yaml`` given, checkpoints or not, when
    it is the run folder that config records relative to another working directory (its path ends with the recorded
    one): a run stopped before its first save goes on afresh in its own folder, not in a new one of that name under
    this working directory. Not a config file of the user's own named config.yaml (``experiments/x/config.yaml``
    recording ``runs/x``), whose run is in the folder it records."""
    given, recorded = _run_configs_given(config), config.trainer.get("default_root_dir")
    if config.get("ckpt_path") != "last" or not given or recorded is None or Path(recorded).is_absolute():
        return None
    folder, relative = given[-1].parent.resolve(), Path(os.path.normpath(recorded)).parts
    return str(folder) if folder.parts[-len(relative) :] == relative else None


def _run_configs_given(config: Any) -> list[Path]:
    """The ``--config`` files named ``config.yaml`` (a run's own record), in the order given."""
    return [Path(str(path)) for path in config.get("config") or [] if Path(str(path)).name == "config.yaml"]


def _holds_checkpoints(run: Path) -> bool:
    return (run / "checkpoints").is_dir() or any(run.glob("hpc_ckpt_*.ckpt"))


def run_folder(config: Any) -> str:
    """The run folder when none is given: the resumed run's (:func:`resumed_run_folder`), the one the first
    process claimed (:func:`inherits_run_folder`), else a new ``runs/<date-time>``.

    Raises:
        UsageError: ``--ckpt_path last`` and no run to take it from: a new folder holds no checkpoint.
    """
    resumed = resumed_run_folder(config)
    if resumed is not None:
        return resumed
    if inherits_run_folder():
        return os.environ[RUN_FOLDER_VARIABLE]
    refuse_last_without_a_run_folder(config)
    return claim_new_run_folder(Path("runs"))


def refuse_last_without_a_run_folder(config: Any) -> None:
    """``--ckpt_path last`` with no run folder given or resumed: a new folder holds no checkpoint, so the run
    would start afresh where the user meant it to go on (also under a launcher, whose new folder is as empty).

    Raises:
        UsageError: ``ckpt_path`` is ``last``.
    """
    if config.get("ckpt_path") != "last":
        return
    given = _run_configs_given(config)
    if given:  # a run's own config, but its folder holds no checkpoint yet: stopped before the first save
        raise UsageError(
            f"--ckpt_path last: {given[-1].parent} holds no checkpoint yet to resume from; to start that run "
            f"again in its folder, add --trainer.default_root_dir {given[-1].parent} (with --ckpt_path last it "
            "then resumes once a checkpoint exists, and starts afresh before one)"
        )
    raise UsageError(
        "--ckpt_path last needs the run folder to look in: add --trainer.default_root_dir runs/<run> "
        "(or --config runs/<run>/config.yaml, or give the checkpoint file, runs/<run>/checkpoints/last.ckpt)"
    )


def claim_new_run_folder(parent: Path) -> str:
    """A new, empty ``parent/<date-time>`` made here, so that runs started in the same second (a sweep
    started in parallel) get one each: the second is ``<date-time>-2``, and so on. Made with ``mkdir``,
    which only one process can win for a name (both used to write into one folder: one config.yaml,
    one last.ckpt, pictures over each other's)."""
    parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for number in range(1, 10_000):
        folder = parent / (stamp if number == 1 else f"{stamp}-{number}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return str(folder)
    raise UsageError(f"{parent} already holds 10,000 run folders named {stamp}*: give --trainer.default_root_dir")


def refuse_a_fresh_run_over_an_old_one(config: Any, under_a_launch: bool) -> None:
    """A fit from scratch into a run folder that already holds checkpoints would interleave two runs'
    files (``last.ckpt`` beside ``last-v1.ckpt``, which ``--ckpt_path last`` then picks by date); the advice
    names where a rerun goes by itself: its own ``runs/<date-time>``, or under a launch the job's folder again."""
    if config.get("ckpt_path") is not None:
        return  # a requeued or restarted job has its newest checkpoint here (see VtokCLI._apply_launch)
    folder = Path(config.trainer.default_root_dir) / "checkpoints"
    # SLURM's requeue checkpoints too: Lightning would resume from one by itself, older than last.ckpt may be
    old = [*(sorted(folder.glob("*.ckpt")) if folder.is_dir() else []), *sorted(folder.parent.glob("hpc_ckpt_*.ckpt"))]
    if old:
        newest = newest_checkpoint(folder.parent, or_any=True)  # a signal's last-signal-step=N.ckpt is newer than last.ckpt
        raise UsageError(
            f"{folder.parent} already holds a run's checkpoints ({old[0].name}, ...): resume it with "
            f"--ckpt_path {newest or 'last'}, or give this run a folder of its own with "
            "--trainer.default_root_dir NEW "
            + ("(under a launcher every fit of one job goes to runs/<job id> unless given a folder)" if under_a_launch else
               "(a run's config.yaml names its folder when the run was given one, else a rerun of it gets a new "
               "runs/<date-time> by itself)")
        )


def refuse_a_second_fit_in_the_job_folder(folder: str, subcommand: str | None, launcher: str) -> None:
    """A one-process launch's fit goes into ``runs/<run id>`` (a SLURM job's id, a torchrun ``--rdzv-id``); a
    second ``vtok fit`` of the same job script (a sweep, stage 2 after stage 1) found it already written: with
    checkpoints it was refused with advice that did not hold under a job, without them the two runs wrote their
    pictures and logs over each other's.

    Raises:
        UsageError: ``folder`` already holds files and this is a fit.
    """
    if subcommand != "fit" or not Path(folder).is_dir() or not any(Path(folder).iterdir()):
        return
    newest = newest_checkpoint(Path(folder), or_any=True)
    raise UsageError(
        f"{folder} is this {'SLURM job' if launcher == 'slurm' else 'launch'}'s run folder and an earlier vtok fit "
        "of the job already wrote into it: give "
        "each fit of one job its own --trainer.default_root_dir (a requeued job then goes on in each)"
        + (f", or resume that run with --ckpt_path {newest}" if newest else "")
    )


def refuse_an_unwritable_run_folder(folder: str) -> None:
    """A run folder that is a file, lies under one, or cannot be made is one line here, before the data is
    listed and the model built (it failed later, in the logger, with a traceback); nothing is created."""
    path = Path(folder).absolute()
    existing = next(parent for parent in (path, *path.parents) if parent.exists())
    if not existing.is_dir():
        raise UsageError(f"trainer.default_root_dir {folder}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"trainer.default_root_dir {folder}: {existing} is not writable")


def refuse_resuming_without_a_last_checkpoint(folder: str) -> None:
    """``--ckpt_path last`` in a run folder whose checkpoints hold no ``last*.ckpt`` (renamed, or a
    hand-set callback without ``save_last``) started a fresh run beside them, with only Lightning's warning."""
    saved = sorted((Path(folder) / "checkpoints").glob("*.ckpt"), key=lambda path: path.stat().st_mtime)
    if saved:
        raise UsageError(
            f"--ckpt_path last: {folder} holds checkpoints but no last.ckpt; name the one to resume from "
            f"(the newest: --ckpt_path {saved[-1]})"
        )


def refuse_a_last_behind_a_later_save(last: str) -> str:
    """``last``, the ``last*.ckpt`` that ``--ckpt_path last`` resumes from, unless a checkpoint beside it written later
    is of a later step: a disk that filled at a periodic save took ``step=N.ckpt`` (Lightning writes it first) and
    not the new ``last.ckpt``, and the resume went on from the save before, training that interval again and writing
    over ``step=N.ckpt``, without a word.

    Raises:
        UsageError: naming the later checkpoint.
    """
    path = Path(last)
    written = path.stat().st_mtime
    written_after = [other for other in path.parent.glob("*.ckpt") if other.stat().st_mtime > written]
    if not written_after:  # as every save leaves it
        return last
    steps = {other: _global_step(other) for other in [path, *written_after]}
    later = [other for other in written_after if (steps[other] or 0) > (steps[path] or 0)]
    if later:
        newest = max(later, key=lambda other: steps[other] or 0)
        raise UsageError(
            f"--ckpt_path last: {path} is at step {steps[path]}, but {newest}, written after it, is at step "
            f"{steps[newest]} ({path.name} was not rewritten then: a full disk?); resume with --ckpt_path {newest}"
        )
    return last


def _global_step(checkpoint: Path) -> int | None:
    """The step a Lightning checkpoint was saved at (its weights mapped, not read); ``None`` when it cannot be read."""
    try:
        return int(torch.load(checkpoint, map_location="cpu", mmap=True, weights_only=True)["global_step"])
    except Exception:  # not a checkpoint this can read: not evidence of a later save
        return None
