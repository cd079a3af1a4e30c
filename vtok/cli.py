"""``vtok``: LightningCLI for ``fit | validate | test``, plus vtok's own subcommands (``prepare``,
``evaluate``, ``export``, ..., dispatched through :data:`vtok.commands.dispatch.SUBCOMMANDS` before LightningCLI sees the
arguments). ``test`` scores ``data.test_path`` as validation scores its files. Lightning's ``predict``
is left out: the module has no predict step (``vtok tokenize`` and ``export`` give outputs).

``vtok fit`` with no arguments trains on the default config shipped in the package
(``vtok/configs/default.yaml``, readable as ``configs/default.yaml`` in the repository); a
``--config`` file and ``--a.b value`` flags override it key by key.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch._subclasses.fake_tensor import FakeTensorMode

from vtok.commands.dispatch import SUBCOMMANDS, run_subcommand
from vtok.config_checks import (
    check_clip_frames,
    check_clip_shape,
    check_precision,
    precision_of_plugins,
    refuse_frozen_random_parts,
    refuse_unsupported_trainer_settings,
)
from vtok.console import (
    quiet_moved_checkpoint_folder,
    quiet_resumed_checkpoint_folder,
    quiet_third_party_noise,
    show_vtok_messages,
)
from vtok.data.datamodule import VideoDataModule
from vtok.data.errors import DataSetupError, NoUsableDataError, ResumeMismatchError
from vtok.data.fork_server import refuse_in_a_starting_worker
from vtok.error_text import first_line, without_union_noise, worker_message
from vtok.launch import LaunchEnvironment, detect_launch
from vtok.logged_config import SaveAndLogConfig
from vtok.presets import DEFAULT_CONFIG, with_packaged_presets
from vtok.resume_checks import check_checkpoint, config_class, dotted_get
from vtok.run_folder import (
    CHECKPOINT_KEYWORDS,
    RUN_FOLDER_VARIABLE,
    follow_the_resumed_run,
    home_expanded,
    inherits_run_folder,
    mark_the_launch_start,
    newest_checkpoint,
    refuse_a_last_behind_a_later_save,
    refuse_a_fresh_run_over_an_old_one,
    refuse_a_second_fit_in_the_job_folder,
    refuse_an_unwritable_run_folder,
    refuse_last_without_a_run_folder,
    refuse_resuming_without_a_last_checkpoint,
    restart_checkpoint,
    resumed_run_folder,
    run_folder,
)
from vtok.stack_dump import dump_stacks_on_sigusr2
from vtok.training import (
    AutoencoderModule,
    CodebookMonitor,
    EmptyEpochGuard,
    FinalStepCheckpoint,
    LoaderWaitMonitor,
    NoTrainingBatchesError,
    StopOnSignal,
)
from vtok.training.checkpoint_io import AtomicCheckpointIO, CheckpointWriteError
from vtok.training.module import NonFiniteTrainingError
from vtok.training.optim import check_schedule, discriminator_run_steps
from vtok.usage_error import UsageError

LIGHTNING_COMMANDS = ("fit", "validate", "test")
log = logging.getLogger("vtok.cli")
LIGHTNING_CHECKPOINT = "lightning.pytorch.callbacks.ModelCheckpoint"


DESCRIPTION = (
    "vtok trains video tokenizers and autoencoders. fit, validate and test (below) run Lightning's loops on a "
    "config; vtok's own commands (" + ", ".join(SUBCOMMANDS) + ") are listed at the end."
)
COMMANDS_HELP = (
    "vtok's own commands, each with its --help: "
    + ", ".join(f"vtok {name}" for name in SUBCOMMANDS)
    + ". Listed above: vtok fit trains; vtok validate --ckpt_path CKPT scores a checkpoint on the validation "
    "files, vtok test --ckpt_path CKPT --data.test_path P on held-out test files."
)


def _is_checkpoint(class_path: str) -> bool:
    """Whether a callback's ``class_path`` names Lightning's ``ModelCheckpoint`` or a subclass of it
    (by name when the class cannot be imported: jsonargparse reports that itself)."""
    callback = config_class(class_path)
    if callback is None:
        return class_path.endswith("Checkpoint")
    return isinstance(callback, type) and issubclass(callback, ModelCheckpoint)


class VtokCLI(LightningCLI):
    """LightningCLI over :class:`AutoencoderModule` and :class:`VideoDataModule` with vtok's defaults:
    one run folder per run, bf16 on GPU and fp32 on CPU, shapes checked before anything is built."""

    _resumed_network: dict[str, Any] | None = None  # the network config of the --ckpt_path checked, if any
    _claimed_folder: str | None = None  # the new runs/<date-time> made for this run (see run_folder)

    def __init__(self, args: Sequence[str] | None = None, run: bool = True) -> None:
        try:
            self._build_and_run(args, run)
        except BaseException:
            if self._claimed_folder is not None:  # a command that fails before writing leaves no empty run folder
                with contextlib.suppress(OSError):
                    Path(self._claimed_folder).rmdir()  # only if still empty
            raise
        finally:
            if self._claimed_folder is not None:
                os.environ.pop(RUN_FOLDER_VARIABLE, None)  # a later command in this process claims its own

    def _build_and_run(self, args: Sequence[str] | None, run: bool) -> None:
        if args is None:
            sys.argv[1:] = with_packaged_presets(sys.argv[1:], subcommand=run)  # Lightning reads the command line itself
        else:
            args = with_packaged_presets(list(args), subcommand=run)
        given = sys.argv[1:] if args is None else args
        self._folder_given_now = any(str(a).partition("=")[0] == "--trainer.default_root_dir" for a in given)
        defaults = {"default_config_files": [str(DEFAULT_CONFIG)]}
        super().__init__(
            AutoencoderModule,
            VideoDataModule,
            save_config_callback=SaveAndLogConfig,
            save_config_kwargs={"overwrite": True},
            parser_kwargs=(
                {"description": DESCRIPTION, "epilog": COMMANDS_HELP, **dict.fromkeys(LIGHTNING_COMMANDS, defaults)}
                if run
                else defaults
            ),
            trainer_defaults={"use_distributed_sampler": False},  # vtok's EpochSampler shards by rank
            auto_configure_optimizers=False,
            args=list(args) if args is not None else None,
            run=run,
        )

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """Lightning's ``fit``, ``validate`` and ``test``, with the arguments it fills itself."""
        return {name: skip for name, skip in LightningCLI.subcommands().items() if name in LIGHTNING_COMMANDS}

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        trainer = config.trainer
        # settings vtok derives, put back as given once the classes are built (see instantiate_classes)
        self._derived: list[tuple[Any, str, Any]] = []
        limit = {"validate": "limit_val_batches", "test": "limit_test_batches"}.get(self.subcommand or "")
        if limit and trainer.get(limit) == 0:  # a run's config that trained without validation; Lightning exits 0 silently
            raise UsageError(f"trainer.{limit} is 0: vtok {self.subcommand} would score nothing; add --trainer.{limit} 1.0")
        folder_given = trainer.get("default_root_dir")
        trainer.default_root_dir = home_expanded(folder_given)  # Lightning expands it for itself alone
        moved = follow_the_resumed_run(config, folder_given_now=self._folder_given_now)
        if moved is not None:  # config.yaml then records where the run is now
            log.info("the run is in %s, not in trainer.default_root_dir %s the config records: going on there", moved,
                     trainer.default_root_dir)  # fmt: skip
            trainer.default_root_dir = moved
        elif folder_given != trainer.default_root_dir:
            self._derived.append((trainer, "default_root_dir", folder_given))  # config.yaml keeps `~/...` as given
        launch = detect_launch()
        if launch is not None:
            self._apply_launch(config, launch)
        elif trainer.default_root_dir is None and str(trainer.get("num_nodes") or 1) != "1":
            raise UsageError(  # Lightning's own launch on several nodes: each node would name its own runs/<date-time>
                f"trainer.num_nodes={trainer.num_nodes}: a run on several nodes needs --trainer.default_root_dir on "
                "shared storage (every node's ranks must write to the same run folder)"
            )
        if trainer.default_root_dir is None:
            trainer.default_root_dir = run_folder(config)
            if resumed_run_folder(config) is None and not inherits_run_folder():
                self._claimed_folder = trainer.default_root_dir  # made by run_folder, for this run alone
                # the processes Lightning starts for devices > 1 run this command again: they take this folder
                os.environ[RUN_FOLDER_VARIABLE] = self._claimed_folder
            # config.yaml keeps it unset: a rerun gets a folder of its own, a resume its checkpoint's run
            self._derived.append((trainer, "default_root_dir", None))
        if config.get("ckpt_path") == "last":
            # Lightning's "last" would pass over a newer SLURM requeue checkpoint, and, finding none, only
            # warn: validate and test would score the untrained network
            newest = newest_checkpoint(Path(trainer.default_root_dir))
            if newest is None and self.subcommand != "fit":
                raise UsageError(
                    f"--ckpt_path last: {trainer.default_root_dir} holds no last.ckpt to {self.subcommand}; pass "
                    "--config runs/<run>/config.yaml (it names its run folder) or a checkpoint file"
                )
            if newest is not None:
                config.ckpt_path = newest = refuse_a_last_behind_a_later_save(newest)
                self._resumed_network = check_checkpoint(newest, config, training=self.subcommand == "fit")
            else:  # a fresh start (a job script that always passes `last`): checked as one, frozen parts too
                refuse_resuming_without_a_last_checkpoint(trainer.default_root_dir)
                config.ckpt_path = None
        untrained = config.get("ckpt_path") is None and dotted_get(config, "model.init_from") is None
        if self.subcommand in ("validate", "test") and untrained:
            raise UsageError(  # before the Trainer is built and prints its devices
                f"vtok {self.subcommand} needs --ckpt_path (a checkpoint written by vtok fit, or 'last'); "
                "without one it would score the untrained network"
            )
        if config.get("ckpt_path") is not None:  # fit, validate and test alike take every weight from the checkpoint
            self._resume_without_prior(config)
        if self.subcommand == "fit":
            refuse_an_unwritable_run_folder(trainer.default_root_dir)
            if config.get("ckpt_path") is not None:
                quiet_resumed_checkpoint_folder()  # the folder holds the run's own checkpoints
            else:
                refuse_frozen_random_parts(config)
            refuse_a_fresh_run_over_an_old_one(config, under_a_launch=launch is not None)
            if launch is not None and launch.restart_count == 0:  # a restart before the first save goes on from there
                mark_the_launch_start(Path(trainer.default_root_dir), config.get("ckpt_path"))
            self._derived.append((config, "ckpt_path", None))  # a rerun of config.yaml is a new run, not a resume
            if trainer.get("enable_checkpointing") is False:  # the callbacks would make Lightning refuse it
                kept = [c for c in trainer.callbacks or [] if not _is_checkpoint(c.class_path)]
                if len(kept) < len(trainer.callbacks or []):
                    log.info("trainer.enable_checkpointing=false: the config's checkpoint callbacks are left out")
                    self._derived.append((trainer, "callbacks", trainer.callbacks))  # config.yaml keeps them
                trainer.callbacks = kept
        plugin_precision = precision_of_plugins(trainer.get("plugins"))
        if trainer.precision is None and plugin_precision is None:  # bf16 autocast on a CPU is slow and lossy
            on_gpu = torch.cuda.is_available() and str(trainer.get("accelerator")) not in ("cpu", "mps")
            trainer.precision = "bf16-mixed" if on_gpu else "32-true"
            self._derived.append((trainer, "precision", None))  # a rerun on other hardware derives its own
        refuse_unsupported_trainer_settings(trainer)
        ema = dotted_get(config, "model.ema_decay") is not None
        check_precision(plugin_precision or trainer.precision, training=self.subcommand == "fit", ema=ema)
        for logger in trainer.logger if isinstance(trainer.logger, list) else [trainer.logger]:
            if logger and not isinstance(logger, bool) and logger.init_args.get("save_dir") in (None, "."):
                self._derived.append((logger.init_args, "save_dir", logger.init_args.get("save_dir")))
                logger.init_args["save_dir"] = trainer.default_root_dir
        checkpoints = [c for c in trainer.callbacks or [] if _is_checkpoint(c.class_path)]
        if self.subcommand == "fit" and not checkpoints and trainer.get("enable_checkpointing") is not False:
            log.warning(
                "trainer.callbacks names no ModelCheckpoint (a config's callbacks list replaces the default one): "
                "Lightning's own saves at epoch ends only, with no last.ckpt to resume from; add to the list with "
                "--trainer.callbacks+=CLASS, or copy the default's list (configs/default.yaml) into the config"
            )
        for callback in trainer.callbacks or []:
            if callback.class_path == LIGHTNING_CHECKPOINT:  # same options; last.ckpt also ends at the final step
                callback.class_path = f"{FinalStepCheckpoint.__module__}.{FinalStepCheckpoint.__name__}"
            if _is_checkpoint(callback.class_path) and not callback.init_args.get("dirpath"):  # the run folder's own
                derived = {"dirpath": str(Path(trainer.default_root_dir) / "checkpoints")}
                if "enable_version_counter" in callback.init_args:  # a resume's last.ckpt, not last-v1: see FinalStepCheckpoint
                    derived["enable_version_counter"] = False
                for key, value in derived.items():
                    self._derived.append((callback.init_args, key, callback.init_args.get(key)))
                    callback.init_args[key] = value
        check_clip_shape(config)

    def _resume_without_prior(self, config: Any) -> None:
        """A resumed run, or one validated or tested, takes every weight from its checkpoint: the prior (``model.init_from``)
        is not read again (it may have moved, or hold another revision); a diffusers backbone is built as recorded there."""
        prior, network = dotted_get(config, "model.init_from"), self._resumed_network
        if prior is None or network is None:  # a checkpoint read later (a URL, Lightning's keywords): as given
            return
        log.info("the weights come from %s; model.init_from %s is not loaded", config.get("ckpt_path"), prior)
        autoencoder, changes = dotted_get(config, "model.autoencoder.init_args"), [(config.model, "init_from", None)]
        if autoencoder is not None:  # a diffusers backbone: as the checkpoint records it
            changes += [(autoencoder, key, network[key]) for key in ("backbone_class", "backbone_config") if network.get(key)]
        for namespace, key, value in changes:
            self._derived.append((namespace, key, namespace.get(key)))  # config.yaml keeps them as given
            namespace[key] = value

    def _apply_launch(self, config: Any, launch: LaunchEnvironment) -> None:
        """Devices, nodes and strategy from the launcher; one run folder for all ranks and restarts.
        The values given before are put back once the trainer is built (see ``instantiate_classes``),
        so the run's config.yaml does not tie a rerun or resume to this launch."""
        trainer = config.trainer
        self._derived += [(trainer, key, trainer[key]) for key in ("devices", "num_nodes", "strategy")]
        self._derived.append((config, "ckpt_path", config.get("ckpt_path")))
        for key, value in (("devices", launch.devices), ("num_nodes", launch.num_nodes)):
            given = trainer[key]
            if str(given) not in ("None", "auto", "1", str(value)):  # "1" as the command line and config.yaml give it
                one_task = launch.launcher == "slurm" and launch.processes == 1
                advice = "submit the job with --ntasks-per-node" if key == "devices" else "submit the job with --nodes"
                raise UsageError(
                    f"trainer.{key}={given} disagrees with the {launch.launcher} launch ({value}); "
                    + (f"{advice}={given} (one task per GPU)" if one_task else f"leave trainer.{key} unset under a launcher")
                )
            trainer[key] = value
        strategy = trainer.strategy
        if strategy in (None, "auto") and launch.processes > 1:
            trainer.strategy = "ddp"  # find_unused_parameters=False: every parameter gets a gradient each step
        if trainer.default_root_dir is None:
            resumed = resumed_run_folder(config)  # the same on every rank
            if resumed is None and launch.restart_count == 0:  # a launch's new folder would hold no checkpoint
                refuse_last_without_a_run_folder(config)
            if resumed is None and launch.run_id is None:
                raise UsageError(
                    "a multi-process run needs --trainer.default_root_dir (every rank and every restart must "
                    "write to the same run folder)"
                )
            trainer.default_root_dir = resumed or str(Path("runs") / str(launch.run_id))
            if resumed is None and launch.restart_count == 0 and launch.processes == 1:
                refuse_a_second_fit_in_the_job_folder(trainer.default_root_dir, self.subcommand, launch.launcher)
            self._derived.append((trainer, "default_root_dir", None))  # a rerun of config.yaml gets its own
        if launch.restart_count > 0 and self.subcommand == "fit":
            # a restarted job goes on from where it stopped: not from the checkpoint its command line names
            # (where a resumed or fine-tuned job started), nor from a last.ckpt older than SLURM's hpc checkpoint
            config.ckpt_path = restart_checkpoint(Path(trainer.default_root_dir), config.get("ckpt_path"))

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """Every run stops cleanly on SIGTERM, writes checkpoints atomically and reports whether the
        loader keeps ahead of the step, and discrete models have their codebook usage watched,
        whatever the config's callbacks list says."""
        trainer = super().instantiate_trainer(**kwargs)
        if not any(isinstance(c, StopOnSignal) for c in trainer.callbacks):
            trainer.callbacks.append(StopOnSignal())
        for kind in (LoaderWaitMonitor, EmptyEpochGuard):
            if not any(isinstance(c, kind) for c in trainer.callbacks):
                trainer.callbacks.append(kind())
        autoencoder = getattr(getattr(self, "model", None), "autoencoder", None)
        discrete = autoencoder is not None and autoencoder.is_discrete
        if discrete and not any(isinstance(c, CodebookMonitor) for c in trainer.callbacks):
            trainer.callbacks.append(CodebookMonitor())
        if self.subcommand != "fit":  # keep the run's config.yaml the fit wrote (a rerun needs it); the loggers get it
            for callback in trainer.callbacks:
                if isinstance(callback, SaveAndLogConfig):
                    callback.write_config = False
        if all(getattr(c, "monitor", None) is None for c in trainer.checkpoint_callbacks):  # no best-k scores to lose
            quiet_moved_checkpoint_folder()
        if type(trainer.strategy.checkpoint_io).__name__ == "TorchCheckpointIO":
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        return trainer

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except (ValueError, FileNotFoundError, MisconfigurationException) as error:
            raise UsageError(without_union_noise(str(error))) from error
        # The built objects have the derived settings; config.yaml keeps what was given, so a rerun of it
        # under another launch or with another --trainer.default_root_dir derives them afresh.
        for namespace, key, given in getattr(self, "_derived", []):
            namespace[key] = given

    def _parse_ckpt_path(self) -> None:
        """Checks a ``--ckpt_path`` file early: a missing or unreadable file is one line instead of a
        raw traceback (Lightning skips a missing file here and fails much later); settings changed
        since the checkpoint are reported, and the command line and config keep them."""
        subcommand = self.config.get("subcommand")
        path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if path == "best":  # Lightning knows a best checkpoint only within the fit that made it
            raise UsageError(
                "--ckpt_path best names the best checkpoint of a fit in this same process; give a checkpoint "
                "file (runs/<run>/checkpoints/step=N.ckpt) or 'last'"
            )
        if path is None or path in CHECKPOINT_KEYWORDS or "://" in str(path):
            return  # resolved later: "last" once the run folder is known, the others by Lightning, fsspec
        self._resumed_network = check_checkpoint(path, self.config[subcommand], training=subcommand == "fit")

    def before_validate(self) -> None:
        self._check_data("validate")

    def before_test(self) -> None:
        self._check_data("test")

    def before_fit(self) -> None:
        self._check_schedules()
        self._check_discriminator()
        self._check_data("fit")

    def fit(self, **kwargs: Any) -> None:
        """Lightning's fit, whose checks of ``trainer.val_check_interval`` against the epoch (made only once
        the loaders exist, on every rank) become one line naming the settings instead of a traceback. A signal's stop
        during a validation (:class:`~vtok.training.StopOnSignal`) returns as one between training batches does."""
        interval = self.trainer.val_check_interval
        try:
            self.trainer.fit(**kwargs)
        except SIGTERMException:  # StopOnSignal's during a validation (its checkpoint written), or Lightning's
            if not any(isinstance(c, StopOnSignal) and c.saved_step is not None for c in self.trainer.callbacks):
                step = self.trainer.global_step  # Lightning's handler: before training, or StopOnSignal without SIGTERM
                said = f"at step {step}" if step else "before training began: nothing trained"
                log.warning("stopped by SIGTERM %s, no checkpoint written", said)
            return
        except ValueError as error:  # an int above the epoch's batches, while validation follows epochs
            if "`val_check_interval`" not in str(error):
                raise
            raise UsageError(
                f"trainer.val_check_interval={interval} batches is more than the {self.trainer.fit_loop.max_batches} "
                "training batches of an epoch: add --trainer.check_val_every_n_epoch null to count them across epochs, "
                "or lower it"
            ) from None
        except MisconfigurationException as error:  # a share of an epoch, over shards, whose epochs have no length
            if "val_check_interval" not in str(error):
                raise
            raise UsageError(
                f"trainer.val_check_interval={interval} is a share of an epoch, and a stream of shards has no epoch "
                "length to take it of: give a number of batches (--trainer.val_check_interval 2000 "
                "--trainer.check_val_every_n_epoch null)"
            ) from None

    def validate(self, **kwargs: Any) -> None:
        """Lightning's validate; stopped by SIGTERM before its end (Lightning then exits with status 0, as if done), it
        says the scores are missing and exits with 143 (128 + SIGTERM, as a process the signal ends). So does test."""
        try:
            getattr(self.trainer, self.subcommand)(**kwargs)
        except SIGTERMException:
            sys.stderr.write(f"vtok: error: {self.subcommand} stopped by SIGTERM before its end: no scores\n")
            raise SystemExit(128 + signal.SIGTERM) from None

    test = validate

    def _check_discriminator(self) -> None:
        """The discriminator against the clip size, on fake tensors (no compute): too many layers for a
        small clip otherwise fail at the first adversarial step, mid-run, with a convolution error."""
        adversarial = self.model.adversarial
        if adversarial is None:
            return
        height, width = self.datamodule.size
        with torch.no_grad(), FakeTensorMode(allow_non_fake_inputs=True):
            try:
                adversarial.discriminator(torch.empty(1, 3, self.datamodule.num_frames, height, width))
            except RuntimeError as error:
                raise UsageError(
                    f"the discriminator cannot take {self.datamodule.num_frames}x{height}x{width} clips "
                    f"({first_line(error)}); lower model.adversarial.layers or enlarge data.size"
                ) from None

    def _check_schedules(self) -> None:
        """The learning-rate schedules against the run's length, here rather than in
        ``configure_optimizers``, where Lightning reports a mistake with a traceback (a short run's warning is
        left to ``configure_optimizers``, which gives it once)."""
        run_steps = self.trainer.max_steps if self.trainer.max_steps > 0 else None
        checks = [("model.optimizer", self.model.optimizer_config, run_steps)]
        if self.model.adversarial is not None:
            start, accumulate = self.model.adversarial.start_step, self.model.accumulate_batches
            checks.append(("model.disc_optimizer", self.model.disc_optimizer_config,
                           discriminator_run_steps(run_steps, start, accumulate)))  # fmt: skip
        for name, config, steps in checks:
            try:
                check_schedule(config, steps, name)
            except ValueError as error:
                raise UsageError(str(error)) from None

    def _check_data(self, stage: str) -> None:
        """Single-process runs list and probe their data now, so an empty or unusable dataset is a
        one-line error before the Trainer starts; multi-process runs do it in Lightning's setup."""
        check_clip_frames(self.model.autoencoder, self.datamodule.num_frames)
        if self.trainer.world_size == 1 and int(os.environ.get("WORLD_SIZE", "1")) == 1:  # Lightning's own launch too
            try:
                self.datamodule.prepare_data()
                self.datamodule.setup(stage)
            except (ValueError, FileNotFoundError) as error:
                raise UsageError(str(error)) from error


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``vtok`` console script and of ``train.py``."""
    refuse_in_a_starting_worker()  # before the lock on --out that such a worker would otherwise meet
    arguments = list(sys.argv[1:] if argv is None else argv)
    dump_stacks_on_sigusr2()  # kill -USR2 <pid>: where a stuck process is
    show_vtok_messages()  # before the subcommands too: their INFO lines were never shown
    quiet_third_party_noise()
    if arguments and arguments[0] in SUBCOMMANDS:
        run_subcommand(arguments[0], arguments[1:])
        return
    if not arguments or (not arguments[0].startswith("-") and arguments[0] not in LIGHTNING_COMMANDS):
        # jsonargparse's "invalid choice" named fit, validate and test only: as if prepare or export did not exist
        commands = [*LIGHTNING_COMMANDS, *SUBCOMMANDS]
        close = difflib.get_close_matches(arguments[0], commands, n=1) if arguments else []
        sys.stderr.write(
            ("vtok: error: give a command" if not arguments else f"vtok: error: no command {arguments[0]!r}")
            + (f" (did you mean {close[0]}?)" if close else "") + f"; the commands are {', '.join(commands)}, each with its --help\n"
        )  # fmt: skip
        raise SystemExit(2)
    try:
        VtokCLI(args=argv)
    except (UsageError, ResumeMismatchError, DataSetupError) as error:  # the last: raised on each rank of a launch
        sys.stderr.write(f"vtok: error: {error}\n")  # one write: the ranks' lines do not interleave
        raise SystemExit(2) from None
    except (NonFiniteTrainingError, NoTrainingBatchesError, NoUsableDataError, CheckpointWriteError) as error:
        print(f"vtok: training stopped: {worker_message(error)}", file=sys.stderr)
        raise SystemExit(1) from None
    except RuntimeError as error:
        if not str(error).startswith("Error(s) in loading state_dict"):
            raise
        mismatch = next((line.strip() for line in str(error).splitlines()[1:] if line.strip()), "")
        print(
            f"vtok: error: the checkpoint's weights do not fit the network the config describes ({mismatch[:300]}); "
            "give the run's own config: --config runs/<run>/config.yaml", file=sys.stderr,
        )
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
