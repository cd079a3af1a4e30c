"""The run's whole resolved config, written to ``config.yaml`` and given to the loggers.

Lightning gives the loggers only the module's own saved hyperparameters (the optimiser settings, the
EMA decay), so a wandb run did not record the architecture, the loss weights, the data (clip size,
frames, batch size) or the trainer settings: runs could not be compared or filtered by what differs.
"""

from __future__ import annotations

from typing import Any

import yaml
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import SaveConfigCallback


class SaveAndLogConfig(SaveConfigCallback):
    """Lightning's ``SaveConfigCallback`` (``config.yaml`` in the run folder), which also logs the
    resolved config (``model``, ``data``, ``trainer``, ...) as hyperparameters of every logger."""

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Called on the first rank only, once per run (Lightning's rule)."""
        config: dict[str, Any] = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        config.pop("config", None)  # the files given with --config: their settings are all here
        for logger in trainer.loggers:
            logger.log_hyperparams(config)
