"""The run's whole resolved config, written to ``config.yaml`` and given to the loggers.

Lightning gives the loggers only the module's own saved hyperparameters (the optimiser settings, the
EMA decay), so a wandb run did not record the architecture, the loss weights, the data (clip size,
frames, batch size) or the trainer settings: runs could not be compared or filtered by what differs.
"""

from __future__ import annotations

import os
from typing import Any

import yaml
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import SaveConfigCallback


class SaveAndLogConfig(SaveConfigCallback):
    """Lightning's ``SaveConfigCallback``, which writes ``config.yaml`` into the run folder itself
    (``trainer.default_root_dir``: Lightning's goes to the logger's folder, ``<run>/version_0/`` for a CSV or
    TensorBoard logger and a new ``version_1/`` on resume, where vtok's advice and ``--ckpt_path last`` look
    in ``<run>/config.yaml``) and also logs the resolved config (``model``, ``data``, ``trainer``, ...) as
    hyperparameters of every logger, with a ``run`` section of what vtok worked out for this launch (see
    :func:`run_facts`). ``write_config = False`` logs without writing the file."""

    def __init__(self, *args: Any, save_to_log_dir: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, save_to_log_dir=False, **kwargs)  # Lightning's writing: see save_config
        self.write_config = save_to_log_dir
        self._to_log: dict[str, Any] | None = None

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Called on the first rank only, once per run (Lightning's rule)."""
        if self.write_config:
            folder = trainer.default_root_dir
            get_filesystem(folder).makedirs(folder, exist_ok=True)
            self.parser.save(self.config, os.path.join(folder, self.config_filename), skip_none=False,
                             overwrite=self.overwrite, multifile=self.multifile)  # fmt: skip
        config: dict[str, Any] = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        config.pop("config", None)  # the files given with --config: their settings are all here
        self._to_log = config  # logged once the checkpoint to resume from is known (see run_facts)

    def _log_config(self, trainer: Trainer) -> None:
        if self._to_log is not None:
            config, self._to_log = self._to_log, None
            for logger in trainer.loggers:
                logger.log_hyperparams({**config, "run": run_facts(trainer)})

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:  # noqa: D102
        self._log_config(trainer)

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:  # noqa: D102
        self._log_config(trainer)  # vtok validate

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:  # noqa: D102
        self._log_config(trainer)


def run_facts(trainer: Trainer) -> dict[str, Any]:
    """What this launch of a run settled that its config leaves open, for the loggers (``config.yaml``
    keeps the settings as given, so that a rerun on other hardware derives its own): the run folder, the
    checkpoint it resumed from, the precision used (a ``null`` precision is bf16-mixed on a GPU, fp32 on a
    CPU), the strategy, devices and processes (a launcher's, where ``trainer.devices`` says ``auto``). Read
    once the checkpoint is loaded (at the start of fit, validate or test): ``trainer.ckpt_path`` is set then."""
    return {
        "folder": os.path.abspath(trainer.default_root_dir),
        "resumed_from": trainer.ckpt_path,
        "precision": trainer.precision,
        "strategy": type(trainer.strategy).__name__,
        "accelerator": type(trainer.accelerator).__name__,
        "devices_per_node": trainer.num_devices,
        "nodes": trainer.num_nodes,
        "processes": trainer.world_size,
    }
