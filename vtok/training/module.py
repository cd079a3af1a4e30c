"""The LightningModule that trains a ``VideoAutoencoder``.

It uses manual optimisation from the start: the adversarial objective needs it (two optimisers,
one backward), and with it gradient clipping is done here, where its norm can be logged.
A "step" in vtok's configs and logs is one training batch.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import torch
from lightning.pytorch import LightningModule

from vtok.evaluation.metrics import psnr_per_video
from vtok.losses import AutoencoderLoss
from vtok.training.optim import OptimizerConfig, build_optimizer
from vtok.vae import VideoAutoencoder

log = logging.getLogger(__name__)

# ModelCheckpoint warns on every save under manual optimisation that the weights are those after
# the optimizer step; that is exactly what vtok wants saved.
warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization", category=UserWarning)

CHECKPOINT_KEY = "vtok"
CHECKPOINT_FORMAT = 1


def video_parts(batch: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{"videos": batch}`` for a plain batch; the named parts of a combined (videos + images) one."""
    return {"videos": batch} if "video" in batch else batch


class AutoencoderModule(LightningModule):
    """Trains the autoencoder with L1 + bottleneck terms, AdamW and gradient clipping.

    Args:
        autoencoder: the network (its config is written into every checkpoint, for export).
        loss: the objective.
        optimizer: AdamW settings and learning-rate schedule.
        grad_clip: maximum global gradient norm (``None`` disables clipping).
    """

    def __init__(
        self,
        autoencoder: VideoAutoencoder,
        loss: AutoencoderLoss | None = None,
        optimizer: OptimizerConfig | None = None,
        grad_clip: float | None = 1.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["autoencoder", "loss"])
        self.automatic_optimization = False
        self.autoencoder = autoencoder
        self.loss = loss if loss is not None else AutoencoderLoss()
        self.optimizer_config = optimizer if optimizer is not None else OptimizerConfig()
        self.grad_clip = grad_clip

    def configure_optimizers(self) -> Any:
        run_steps = self.trainer.max_steps if self.trainer.max_steps > 0 else None
        optimizer, scheduler = build_optimizer(self.autoencoder.parameters(), self.optimizer_config, run_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        optimizer = self.optimizers()
        total = torch.zeros((), device=self.device)
        logs: dict[str, torch.Tensor] = {}
        shown: dict[str, torch.Tensor] = {}
        for name, part in video_parts(batch).items():
            video = part["video"]
            output = self.autoencoder(video)
            terms = self.loss(video, output)
            total = total + terms["loss"]
            prefix = "train/" if name == "videos" else f"train/{name}_"
            logs.update({prefix + key: value.detach() for key, value in {**terms, **output.stats}.items()})
            if not shown:
                shown = {"video": video, "reconstruction": output.reconstruction.detach()}
        self.manual_backward(total)
        if self.grad_clip is not None:
            logs["train/grad_norm"] = torch.nn.utils.clip_grad_norm_(self.autoencoder.parameters(), self.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        self.lr_schedulers().step()
        logs["train/lr"] = torch.tensor(optimizer.param_groups[0]["lr"])
        self.log_dict(logs, batch_size=shown["video"].shape[0])
        self.log("loss", total.detach(), prog_bar=True, logger=False)
        return {"loss": total.detach(), **shown}

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        video = batch["video"]
        output = self.autoencoder(video, sample_posterior=False)
        terms = self.loss(video, output)
        metrics = {f"val/{key}": value for key, value in terms.items()}
        metrics["val/psnr"] = psnr_per_video(output.reconstruction, video).mean()
        self.log_dict(metrics, batch_size=video.shape[0], sync_dist=True, prog_bar=False)
        self.log("val_psnr", metrics["val/psnr"], batch_size=video.shape[0], sync_dist=True, prog_bar=True, logger=False)

    def on_train_epoch_end(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "pop_epoch_skips"):
            return
        substituted = datamodule.pop_epoch_skips()
        self.log("data/substituted_samples", float(substituted), sync_dist=True)
        self.log("data/unusable_files", float(len(datamodule.skipped_files)), sync_dist=True)
        if substituted:
            log.warning(
                "epoch %d: %d samples came from substitutes for unusable files (%d unusable files so far)",
                self.current_epoch,
                substituted,
                len(datamodule.skipped_files),
            )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Records what ``vtok export`` needs to rebuild the network without this module."""
        config = {k: v for k, v in self.autoencoder.config.items() if not k.startswith("_")}
        checkpoint[CHECKPOINT_KEY] = {
            "format": CHECKPOINT_FORMAT,
            "autoencoder_class": type(self.autoencoder).__name__,
            "autoencoder_config": {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()},
            "batch_step": self.trainer.fit_loop.total_batch_idx + 1,
        }
