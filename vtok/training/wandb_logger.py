"""wandb, offline unless the user turns it online."""

from __future__ import annotations

import os
from typing import Any

from lightning.pytorch.loggers import WandbLogger


class OfflineFirstWandbLogger(WandbLogger):
    """Lightning's ``WandbLogger`` that stays offline unless asked otherwise.

    Args:
        project: wandb project name.
        offline: ``None`` (default) keeps the run offline unless ``WANDB_MODE`` is set (then
            wandb follows it); ``True``/``False`` force it. Sync an offline run later with
            ``wandb sync <save_dir>/wandb/offline-run-*``.
        name: the wandb run's name; by default the run folder's (``save_dir``'s) name, so that each
            launch of one run (a resume starts a new wandb run) is named alike.
        **kwargs: passed to ``WandbLogger``.
    """

    def __init__(self, project: str = "vtok", offline: bool | None = None, **kwargs: Any) -> None:
        if offline is None:
            offline = "WANDB_MODE" not in os.environ
        if kwargs.get("name") is None and kwargs.get("save_dir") not in (None, "."):
            kwargs["name"] = os.path.basename(os.path.normpath(kwargs["save_dir"]))  # each launch of a run alike
        super().__init__(project=project, offline=offline, **kwargs)
        self._folder_made = False
        if self._wandb_init.get("anonymous", False) is None:  # Lightning passes None; wandb warns at any value
            del self._wandb_init["anonymous"]

    @property
    def experiment(self) -> Any:
        """The wandb run, started in an existing folder: wandb looks for a git repository in its folder
        and warned ("git root ... does not exist") when the run folder had not been made yet."""
        if self.save_dir and not self._folder_made:  # once, not at every logged value
            os.makedirs(self.save_dir, exist_ok=True)
            self._folder_made = True
        return super().experiment
