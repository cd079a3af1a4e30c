"""Input-versus-reconstruction pictures, written to the run folder and logged to wandb."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import WandbLogger
from torchvision.utils import make_grid, save_image

from vtok.data.writers import to_uint8_frames, write_video


def side_by_side_frames(video: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """uint8 ``[T, H, 2·W, 3]``: the first clip's input on the left, its reconstruction on the right."""
    return to_uint8_frames(torch.cat([video[0], reconstruction[0]], dim=-1))  # [T, H, 2W, 3]


def comparison_grid(video: torch.Tensor, reconstruction: torch.Tensor, max_videos: int = 2, max_frames: int = 8) -> torch.Tensor:
    """``[3, H', W']`` image in ``[0, 1]``: for each video a row of input frames over a row of
    reconstructed frames (frames evenly spaced over the clip)."""
    frames = video.shape[2]
    picks = torch.linspace(0, frames - 1, min(frames, max_frames)).round().long()
    rows = []
    for i in range(min(video.shape[0], max_videos)):
        rows += [video[i][:, picks], reconstruction[i][:, picks]]
    tiles = torch.stack(rows).float().clamp(-1, 1).add(1).div(2)  # [R, 3, F, H, W]
    tiles = tiles.permute(0, 2, 1, 3, 4).flatten(0, 1)  # [R·F, 3, H, W]
    return make_grid(tiles.cpu(), nrow=len(picks), padding=2, pad_value=1.0)


class ReconstructionPictures(Callback):
    """Every ``every_n_steps`` training batches (and at the end of training), a PNG of inputs over
    reconstructions and a side-by-side mp4 in ``<default_root_dir>/reconstructions/``; with wandb,
    the same as an image and a video panel (``train/pictures``, ``train/pictures_video``). These show the training
    batch as the live weights reconstructed it (a KL posterior sampled, in training mode).

    At every validation (and ``vtok validate``/``vtok test``), the same of the first held-out batch,
    as validation and export see it (EMA weights, the posterior mean): ``val_step_*``/``test_step_*``
    files and ``val/pictures`` panels (``test/pictures`` for ``vtok test``). That batch holds the same clips every time, so these
    pictures compare across training.

    Args:
        every_n_steps: batches between pictures (the first batch always gets one).
        max_videos: videos per picture.
        max_frames: frames per video, evenly spaced.
    """

    def __init__(self, every_n_steps: int = 100, max_videos: int = 2, max_frames: int = 8) -> None:
        for name, value in (("every_n_steps", every_n_steps), ("max_videos", max_videos), ("max_frames", max_frames)):
            if value < 1:
                raise ValueError(f"ReconstructionPictures {name} must be at least 1, got {value} (drop the callback for none)")
        self.every_n_steps = every_n_steps
        self.max_videos = max_videos
        self.max_frames = max_frames
        self._last: tuple[int, torch.Tensor, torch.Tensor] | None = None

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not isinstance(outputs, dict) or "reconstruction" not in outputs:
            return
        step = trainer.fit_loop.epoch_loop.batch_progress.total.processed - 1  # this batch's index
        self._last = (step, outputs["video"][: self.max_videos], outputs["reconstruction"][: self.max_videos])
        if step % self.every_n_steps == 0:
            self._write(trainer, *self._last)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._last is not None and self._last[0] % self.every_n_steps:
            self._write(trainer, *self._last)
        self._last = None

    def on_validation_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._held_out(trainer, pl_module, outputs, batch_idx, "val")

    def on_test_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._held_out(trainer, pl_module, outputs, batch_idx, "test")

    def _held_out(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch_idx: int, stage: str) -> None:
        if batch_idx != 0 or trainer.sanity_checking or not isinstance(outputs, dict) or "reconstruction" not in outputs:
            return
        step = getattr(pl_module, "scored_step", 0)  # where the held-out scores are logged
        self._write(trainer, step, outputs["video"][: self.max_videos], outputs["reconstruction"][: self.max_videos], stage)

    def _write(
        self, trainer: Trainer, step: int, video: torch.Tensor, reconstruction: torch.Tensor, stage: str = "train"
    ) -> None:
        if not trainer.is_global_zero:
            return
        grid = comparison_grid(video, reconstruction, self.max_videos, self.max_frames)
        folder = Path(trainer.default_root_dir) / "reconstructions"
        folder.mkdir(parents=True, exist_ok=True)
        name = f"step_{step:07d}" if stage == "train" else f"{stage}_step_{step:07d}"
        picture = folder / f"{name}.png"
        save_image(grid, picture)
        frames = side_by_side_frames(video, reconstruction)
        movie = None
        if frames.shape[0] > 1 and frames.shape[1] % 2 == 0 and frames.shape[2] % 2 == 0:
            movie = write_video(folder / f"{name}.mp4", frames, fps=8.0)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                # the saved PNG itself (wandb 0.31 casts a float tensor to uint8 without scaling: a black image)
                caption = ["top: input, bottom: reconstruction"]
                logger.log_image(f"{stage}/pictures", [str(picture)], step=step, caption=caption)
                if movie is not None:
                    logger.log_video(f"{stage}/pictures_video", [str(movie)], step=step, format=["mp4"])
