"""Scoring held-out clips: the training module's validation and test steps (``vtok validate``,
validation during ``vtok fit``, and ``vtok test``).

Both run the same code: the inference weights (the EMA copy when kept) reconstruct each clip; the
objective's terms and, in float32 as ``vtok evaluate`` computes them, PSNR and SSIM per clip are
averaged over clips across ranks, each clip once (a rank's padding is left out), and logged under
``val/`` or ``test/``; terms that are statistics of a batch (GQ's entropy) are left out, as they would
change with the batch size and the number of ranks.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from vtok.evaluation.metrics import psnr_per_video, ssim_per_video
from vtok.evaluation.ssim import WINDOW as SSIM_WINDOW
from vtok.training.clip_means import ClipWeightedMeans
from vtok.training.rank_states import from_every_rank

log = logging.getLogger(__name__)

# Bottleneck terms that are statistics of a whole batch (GQ's entropy term holds the batch's codebook entropy):
# held-out scores are means over clips, each clip once, so they leave these out, of the loss too.
BATCH_STATISTICS = frozenset({"entropy"})


class HeldOutScoring:
    """Lightning's validation and test hooks for :class:`~vtok.training.module.AutoencoderModule`,
    which provides ``inference_autoencoder``, ``loss``, ``trained_batches``, ``continuous_weight``,
    ``_group_loss`` and Lightning's ``log``/``log_dict``; mixed in before ``LightningModule``."""

    _held_out_means: ClipWeightedMeans | None = None
    _said_no_ssim = False

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor] | None:
        return self._score(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor] | None:
        return self._score(batch, "test")

    def on_validation_model_zero_grad(self) -> None:
        """Clears the gradients before a fit's validation, except those of an accumulation group it falls inside
        (``model.accumulate_batches`` not dividing ``trainer.val_check_interval``): Lightning kept a group's only when
        its own ``accumulate_grad_batches`` (1: vtok accumulates itself) said one was under way, so the group's step
        followed its batches after the validation alone. The step clears them once it has used them."""
        if not self.inside_accumulation_group:
            super().on_validation_model_zero_grad()  # type: ignore[misc]  # LightningModule's, after this mixin

    @property
    def inside_accumulation_group(self) -> bool:
        """Whether training batches' summed gradients wait for the optimisers' step: between the batches of an
        accumulation group, where a fit's validation may fall. A checkpoint there would hold none of them."""
        return self._group_loss is not None

    def on_validation_epoch_end(self) -> None:
        means = self._log_means()
        if means:  # the progress bar's short name, for the whole of fitting
            self.log("val_psnr", means["val/psnr"], sync_dist=True, reduce_fx="max", prog_bar=True, logger=False)

    def on_test_epoch_end(self) -> None:
        self._log_means()

    @property
    def scored_step(self) -> int:
        """The step held-out scores and pictures are logged at: the index of the last batch the weights
        trained on, where the fit logs its validation (``vtok validate``/``test``: the checkpoint's)."""
        return max(self.trained_batches - 1, 0)

    def _score(self, batch: dict[str, Any], prefix: str) -> dict[str, torch.Tensor] | None:
        """Adds the batch's scores; returns its clips and their reconstructions (for pictures), or
        ``None`` for a batch of padding only."""
        video = batch["video"]
        repeated = batch.get("repeated")  # a rank's padding when the clips do not divide by the world size
        if repeated is not None and bool(repeated.any()):
            if bool(repeated.all()):
                return None  # nothing of its own in this batch: so each clip counts once
            video = video[~repeated]
        output = self.inference_autoencoder(video, sample_posterior=False, continuous=self.continuous_weight > 0)
        for name in BATCH_STATISTICS:  # not a clip's score: it would change with the batching and ranks
            output.losses.pop(name, None)
        terms = self.loss(video, output, self.trained_batches)
        metrics = {f"{prefix}/{key}": value for key, value in terms.items()}
        with torch.autocast(video.device.type, enabled=False):  # the code `vtok evaluate` runs, in fp32 as there
            reconstruction = output.reconstruction.float()
            metrics[f"{prefix}/psnr"] = psnr_per_video(reconstruction, video.float()).mean()
            if min(video.shape[-2:]) >= SSIM_WINDOW:  # smaller frames: no SSIM (said once, at the first)
                metrics[f"{prefix}/ssim"] = ssim_per_video(reconstruction, video.float()).mean()  # bf16 skews SSIM
            elif not self._said_no_ssim:
                log.info("%s/ssim is not logged: frames of %dx%d are smaller than SSIM's %dx%d window",
                         prefix, *video.shape[-2:], SSIM_WINDOW, SSIM_WINDOW)  # fmt: skip
                self._said_no_ssim = True
            if output.continuous_reconstruction is not None:  # joint training: one encoding serves both
                continuous = psnr_per_video(output.continuous_reconstruction.float(), video.float()).mean()
                metrics[f"{prefix}/continuous_psnr"] = continuous
        if self._held_out_means is None:
            self._held_out_means = ClipWeightedMeans()
        self._held_out_means.add(metrics, video.shape[0])
        return {"video": video, "reconstruction": output.reconstruction.detach()}

    def _log_means(self) -> dict[str, float]:
        """Logs the loop's means over every rank's clips (a collective: every rank calls it)."""
        means = (self._held_out_means or ClipWeightedMeans()).means(from_every_rank)
        # Gathered already, the same on every rank: logged with sync_dist and "max" only because Lightning
        # warns about epoch-level values logged without sync_dist (one small extra all-reduce per metric).
        if means:
            self.log_dict(means, sync_dist=True, reduce_fx="max")
            if self.trainer.state.fn != "fit":  # vtok validate/test: where fitting logs it, at its last batch's index
                self.log("step", float(self.scored_step), sync_dist=True, reduce_fx="max")
        return means
