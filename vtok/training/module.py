"""The LightningModule that trains a ``VideoAutoencoder``, optionally against a discriminator.

Manual optimisation, one backward per batch: the generator objective (reconstruction, bottleneck
and adversarial terms) and the discriminator objective are summed and back-propagated once; each
optimiser then steps on its own parameters, the discriminator's from the adversarial ``start_step`` on
(see ``vtok.losses.adversarial`` for why this needs no ``find_unused_parameters`` under DDP). A "step"
in vtok's configs and logs is one training batch, except in the learning-rate schedules, which count
optimiser steps; Lightning's ``global_step`` counts generator optimiser steps (one per batch, or per
``accumulate_batches`` batches; skipped non-finite steps do not count).
"""

from __future__ import annotations

import logging
import warnings
from contextlib import nullcontext
from dataclasses import replace
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.trainer.states import TrainerFn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel

from vtok.data.batches import video_parts
from vtok.export import CHECKPOINT_KEY
from vtok.losses import AdversarialLoss, AutoencoderLoss
from vtok.training.batch_size import effective_batch_size
from vtok.training.ema import ema_copy
from vtok.training.held_out import HeldOutScoring
from vtok.training.progress_total import count_batches_to_the_end, show_the_resumed_epoch
from vtok.training.rng_at_start import restore_or_split_rng
from vtok.training.priors import fit_quantizer_to_prior, initialise_from_prior
from vtok.training.rank_states import from_every_rank, gather_rank_states, keep_out_of_ddp_broadcasts, take_rank_state
from vtok.training.optim import OptimizerConfig, WarmupSchedule, apply_settings_on_resume
from vtok.training.optim import build_optimizer, discriminator_run_steps, step_schedule
from vtok.training.speed import CompileChoice, apply_speed_options, should_compile
from vtok.training.run_out_loaders import restore_run_out_loaders, run_out_loaders
from vtok.training.stopped_epoch import begin_the_epoch_afresh, forget_the_ended_epochs_places, reopen_epoch_stopped_by_max_steps
from vtok.training.stopped_epoch import saved_mid_epoch, uncount_epoch_resumed_after_its_last_batch, uncount_skipped_batch
from vtok.vae import AutoencoderOutput, VideoAutoencoder

log = logging.getLogger(__name__)

# ModelCheckpoint warns on every save under manual optimisation that the weights are those after
# the optimizer step; that is exactly what vtok wants saved.
warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization", category=UserWarning)

CHECKPOINT_FORMAT = 1
# Buffers each rank moves on its own batches: saved per rank, so that a resumed run's ranks go on from their own
# values, and kept out of DDP's buffer broadcasts (see ``setup``).
RANK_OWN_BUFFERS = ("adversarial.ema_real", "adversarial.ema_fake")
Objective = tuple[torch.Tensor, torch.Tensor, dict, AutoencoderOutput]  # generator and discriminator losses, logs, output


class NonFiniteTrainingError(RuntimeError):
    """Too many consecutive steps had a non-finite loss or gradient."""


class AutoencoderModule(HeldOutScoring, LightningModule):
    """Trains the autoencoder: reconstruction + bottleneck terms, optional adversarial terms, EMA.

    Args:
        autoencoder: the network (its config is written into every checkpoint, for export).
        loss: the reconstruction objective (L1, LPIPS, bottleneck weights).
        adversarial: discriminator and GAN terms; ``None`` trains without them.
        optimizer: AdamW and schedule of the autoencoder.
        disc_optimizer: AdamW and schedule of the discriminator (default lr 1e-4, betas (0.5, 0.999)).
        grad_clip: maximum gradient norm of the autoencoder (``None``: no clipping).
        disc_grad_clip: maximum gradient norm of the discriminator (``None``: no clipping).
        accumulate_batches: batches whose gradients are summed before each optimiser step.
        ema_decay: decay of the exponential moving average of the autoencoder's weights (with a
            warm-up, see ``vtok.training.ema``), used for validation and export; ``None`` keeps none.
        max_nonfinite_steps: consecutive steps with a non-finite loss or gradient (each skipped and
            counted) after which training stops with an error.
        activation_checkpointing: recompute encoder and decoder stages in the backward pass
            instead of storing their activations (less memory for large clips, about a third
            more compute).
        init_from: a continuous prior to start from (OneVAE): a vtok KL export folder or training
            checkpoint (same backbone), or a diffusers video VAE folder or cached hub id (its
            encoder and decoder become the backbone). See ``vtok.vae.priors``.
        freeze: parts kept fixed: ``encoder``, ``quantizer``, ``decoder``.
        freeze_steps: batches they stay fixed for (``None``: the whole run).
        continuous_weight: joint discrete-continuous training (OneVAE): weight of the objective on
            the video decoded from the continuous latents (0 turns it off; discrete models only).
        joint_mode: ``"both"`` paths every batch, or ``"alternate"`` (continuous on even optimiser steps, discrete on
            odd ones, each step's accumulated batches alike; the other path is weighted 0 so every parameter gets a gradient).
        compile_networks: ``torch.compile`` the encoder and the decoder: ``True``, ``False``, or
            ``"auto"`` (when the trainer runs on a GPU; see ``vtok.training.speed``).
        channels_last: convolution weights in channels-last-3d memory format (see ``vtok.training.speed``).
    """

    def __init__(
        self,
        autoencoder: VideoAutoencoder,
        loss: AutoencoderLoss | None = None,
        adversarial: AdversarialLoss | None = None,
        optimizer: OptimizerConfig | None = None,
        disc_optimizer: OptimizerConfig | None = None,
        grad_clip: float | None = 1.0,
        disc_grad_clip: float | None = 1.0,
        accumulate_batches: int = 1,
        ema_decay: float | None = None,
        max_nonfinite_steps: int = 10,
        activation_checkpointing: bool = False,
        init_from: str | None = None,
        freeze: list[Literal["encoder", "quantizer", "decoder"]] | None = None,
        freeze_steps: int | None = None,
        continuous_weight: float = 0.0,
        joint_mode: Literal["both", "alternate"] = "both",
        compile_networks: CompileChoice = False,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        if accumulate_batches < 1:
            raise ValueError(f"accumulate_batches must be at least 1, got {accumulate_batches}")
        for name, value in (("grad_clip", grad_clip), ("disc_grad_clip", disc_grad_clip)):
            if value is not None and value <= 0:  # 0 would zero every gradient, a negative one reverse it
                raise ValueError(f"model.{name} must be positive (or null for no clipping), got {value}")
        if continuous_weight < 0 or (freeze_steps is not None and freeze_steps < 0):
            raise ValueError(
                f"model.continuous_weight (got {continuous_weight}) and model.freeze_steps (got {freeze_steps}) "
                "must not be negative"
            )
        if max_nonfinite_steps < 1:
            raise ValueError(f"model.max_nonfinite_steps must be at least 1, got {max_nonfinite_steps}")
        unused = [("freeze_steps", "freeze")] if freeze_steps is not None and not freeze else []
        unused += [("joint_mode", "continuous_weight")] if joint_mode != "both" and not continuous_weight else []
        for setting, needs in unused:  # settings of a technique that is off: most likely a forgotten flag
            log.warning("model.%s has no effect without model.%s: it is ignored", setting, needs)
        self.save_hyperparameters(ignore=["autoencoder", "loss", "adversarial"])
        self.automatic_optimization = False
        continuous_prior = False
        if init_from is not None:
            frozen_for_good = (freeze or []) if freeze_steps is None else []
            autoencoder, continuous_prior = initialise_from_prior(init_from, autoencoder, frozen_for_good)
        # OneVAE: the quantizer's fresh projections are fitted to the prior's latents at the first batch
        self._fit_projections_to_prior = continuous_prior and autoencoder.is_discrete
        if continuous_weight and not autoencoder.is_discrete:
            raise ValueError("continuous_weight (joint discrete-continuous training) needs a discrete model (fsq or gq)")
        self.autoencoder = autoencoder
        self.continuous_weight = continuous_weight
        self.joint_mode = joint_mode
        self.freeze_steps = freeze_steps
        self.frozen = [p for part in (freeze or []) for p in _part_parameters(autoencoder, part)]
        if freeze_steps is None:
            for parameter in self.frozen:  # before DDP wraps the model: it then ignores them
                parameter.requires_grad_(False)
            last_layer = autoencoder.decoder.conv_out.weight
            if adversarial is not None and adversarial.adaptive and any(p is last_layer for p in self.frozen):
                raise ValueError(
                    "model.freeze holds the decoder for the whole run (model.freeze_steps null), but the adaptive "
                    "adversarial weight reads gradients at the decoder's last layer; set "
                    "model.adversarial.init_args.adaptive false (or model.freeze_steps N to freeze for N batches only)"
                )
        if activation_checkpointing:
            autoencoder.enable_gradient_checkpointing()
        self.loss = loss if loss is not None else AutoencoderLoss()
        self.adversarial = adversarial
        self.optimizer_config = optimizer if optimizer is not None else OptimizerConfig()
        self.disc_optimizer_config = disc_optimizer if disc_optimizer is not None else OptimizerConfig(betas=(0.5, 0.999))
        self.grad_clip = grad_clip
        self.disc_grad_clip = disc_grad_clip
        self.accumulate_batches = accumulate_batches
        self.max_nonfinite_steps = max_nonfinite_steps
        self.ema: AveragedModel | None = ema_copy(autoencoder, ema_decay) if ema_decay is not None else None
        self.skipped_steps = 0
        self._nonfinite_in_a_row = 0
        self._group_loss: torch.Tensor | None = None  # the accumulation group's losses so far: one non-finite skips its step
        self._rng_to_restore: dict[str, Any] | None = None
        self._loaded_batch_step: int | None = None  # the checkpoint's count, for `vtok validate`
        self._resuming = False  # fitting from a checkpoint: its optimizers come back, the settings given now apply
        self._run_out_to_restore: list[bool] | None = None  # resumed mid-epoch: loaders that had run out (images)
        self._configured: list[tuple[OptimizerConfig, WarmupSchedule]] = []  # per optimizer, as configured now
        self._rng_seeded_per_rank = False  # see on_train_batch_start
        self._skip_epoch_remainder = False  # see on_train_start
        self.compile_networks = compile_networks
        self._compiled = should_compile(compile_networks, torch.device("cpu"))  # True: now; "auto": in setup
        # after the EMA copy: it stays plain
        apply_speed_options(autoencoder, self._compiled, channels_last, repeated_backward=self._repeated_backward)

    @property
    def _repeated_backward(self) -> bool:
        """Whether a step differentiates through the decoder twice (the adaptive GAN weight's retain_graph)."""
        return self.adversarial is not None and self.adversarial.adaptive

    @property
    def trained_batches(self) -> int:
        """Training batches behind the current weights, the step the loss weights are read at: the
        running count while fitting, the checkpoint's record when only validating (``global_step``
        counts optimiser steps, fewer with ``accumulate_batches``)."""
        if self.trainer.state.fn == "fit":
            return self.batch_step
        return self._loaded_batch_step if self._loaded_batch_step is not None else self.global_step

    @property
    def batch_step(self) -> int:
        """Training batches processed so far: inside ``training_step``, those before the current one
        (vtok's step); after a batch, including it. Restored on resume with Lightning's loop state."""
        return self.trainer.fit_loop.epoch_loop.batch_progress.total.processed

    @property
    def inference_autoencoder(self) -> VideoAutoencoder:
        """The EMA weights when kept, else the live ones: what validation and export use."""
        return self.ema.module if self.ema is not None else self.autoencoder

    def configure_optimizers(self) -> Any:
        run_steps = self.trainer.max_steps if self.trainer.max_steps > 0 else None
        trainable = [p for p in self.autoencoder.parameters() if p.requires_grad]
        optimizer, scheduler = build_optimizer(trainable, self.optimizer_config, run_steps, "model.optimizer")
        self._configured = [(self.optimizer_config, replace(scheduler.lr_lambdas[0]))]  # a resume lays these over the restored
        if self.adversarial is None:
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
        disc_run_steps = discriminator_run_steps(run_steps, self.adversarial.start_step, self.accumulate_batches)
        disc, disc_scheduler = build_optimizer(
            self.adversarial.discriminator.parameters(), self.disc_optimizer_config, disc_run_steps, "model.disc_optimizer"
        )
        self._configured.append((self.disc_optimizer_config, replace(disc_scheduler.lr_lambdas[0])))
        return [optimizer, disc], [
            {"scheduler": scheduler, "interval": "step"},
            {"scheduler": disc_scheduler, "interval": "step"},
        ]

    def on_train_epoch_start(self) -> None:
        count_batches_to_the_end(self.trainer, self.accumulate_batches)

    def on_train_start(self) -> None:
        """On resume, the optimizers' settings given now apply (:func:`~vtok.training.optim.apply_settings`: a lower
        rate after a loss spike, a longer cosine), the epoch count is mended (:mod:`~vtok.training.stopped_epoch`), and
        the loaders that had run out in a resumed epoch are marked in its iterator, made by now with one batch fetched (at
        the first batch, Lightning has fetched two: a stream with one left had been restarted as if images had not)."""
        show_the_resumed_epoch(self.trainer, self.accumulate_batches)
        if self._resuming:
            apply_settings_on_resume(*self._optimizers_and_schedulers(), self._configured)
            # its batches all trained: with images the loader not yet run out would run on into a new pass
            self._skip_epoch_remainder = uncount_epoch_resumed_after_its_last_batch(self.trainer)
            begin_the_epoch_afresh(self.trainer)
        if self._run_out_to_restore is not None:
            restore_run_out_loaders(self.trainer, self._run_out_to_restore)
            self._run_out_to_restore = None

    def _optimizers_and_schedulers(self) -> tuple[list[Any], list[Any]]:
        """The (Lightning-wrapped) optimizers and their schedulers, as lists however many there are."""
        optimizers, schedulers = self.optimizers(), self.lr_schedulers()
        return (
            optimizers if isinstance(optimizers, list) else [optimizers],
            schedulers if isinstance(schedulers, list) else [schedulers],
        )

    def _objective(self, video: torch.Tensor, step: int, update: int) -> Objective:
        """Generator and discriminator losses, logs and output for a part of batch ``step``, whose gradients go into
        optimiser step ``update`` (``joint_mode: alternate`` takes turns on it: a step's accumulated batches take one path)."""
        output = self.autoencoder(video, continuous=self.continuous_weight > 0)
        terms = self.loss(video, output, step)
        logs = {**{k: v.detach() for k, v in terms.items()}, **output.stats}
        discrete_weight = 1.0  # of the discrete path's terms, its adversarial one included
        if output.continuous_reconstruction is not None:
            continuous = self.loss(video, AutoencoderOutput(output.continuous_reconstruction, output.latents), step)
            continuous_weight = self.continuous_weight
            if self.joint_mode == "alternate":
                discrete_weight, continuous_weight = (0.0, continuous_weight) if update % 2 == 0 else (1.0, 0.0)
            terms["loss"] = discrete_weight * terms["loss"] + continuous_weight * continuous["loss"]
            logs.update({f"continuous_{k}": v.detach() for k, v in continuous.items()})
        for name in output.losses:  # as applied: 0 on alternate's continuous batches, as the adaptive weight below
            logs[f"{name}_weight"] = torch.tensor(discrete_weight * self.loss.bottleneck_weight(name, step), dtype=torch.float32)
        generator, discriminator = terms["loss"], video.new_zeros((), dtype=torch.float32)
        if self.adversarial is not None:
            last_layer = self.autoencoder.decoder.conv_out.weight
            gen = self.adversarial.generator_terms(output.reconstruction, terms["reconstruction"], last_layer, step)
            disc = self.adversarial.discriminator_terms(video, output.reconstruction, step)
            # the discriminator judges the discrete reconstruction; its term is the discrete path's, weighted alike
            generator, discriminator = generator + discrete_weight * gen["loss"], disc["loss"]
            gen["adaptive_weight"] = discrete_weight * gen["adaptive_weight"]  # as applied: 0 on alternate's continuous batches
            logs.update({f"adversarial_{k}": v.detach() for k, v in gen.items() if k != "loss"})
            logs.update({f"discriminator_{k}": v.detach() for k, v in disc.items()})
        logs["loss"] = generator.detach()
        return generator, discriminator, logs, output

    def steps_after(self, batch_idx: int) -> bool:
        """Whether training batch ``batch_idx`` of the epoch ends an accumulation group: its backward pass
        is followed by the optimisers' step (every ``accumulate_batches`` batches, and the epoch's last)."""
        return (batch_idx + 1) % self.accumulate_batches == 0 or self.trainer.fit_loop.epoch_loop.batch_progress.is_last_batch

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        step = self.batch_step
        total = torch.zeros((), device=self.device)
        logs: dict[str, torch.Tensor] = {}
        shown: dict[str, torch.Tensor] = {}
        parts = video_parts(batch)
        for name, part in parts.items():
            generator, discriminator, part_logs, output = self._objective(part["video"], step, self.trainer.global_step)
            total = total + generator + discriminator
            if len(parts) > 1:  # videos and images: what the autoencoder's optimiser follows is their sum
                logs["train/total_loss"] = logs.get("train/total_loss", 0.0) + generator.detach()
            prefix = "train/" if name == "videos" else f"train/{name}_"
            logs.update({prefix + key: value for key, value in part_logs.items()})
            if not shown:  # what callbacks see: the first part's input, reconstruction and tokens
                shown = {"video": part["video"], "reconstruction": output.reconstruction.detach()}
                tokens = {"indices": output.indices, "first_frame_indices": output.first_frame_indices}  # for CodebookMonitor
                shown.update({kind: indices for kind, indices in tokens.items() if indices is not None})
        steps = self.steps_after(batch_idx)
        ddp = self.trainer.strategy.model
        # Accumulating batches skip DDP's all-reduce; the batch that steps reduces the summed gradients.
        with nullcontext() if steps or not isinstance(ddp, DistributedDataParallel) else ddp.no_sync():
            self.manual_backward(total / self.accumulate_batches)
        group_loss = total.detach() if self._group_loss is None else self._group_loss + total.detach()
        self._group_loss = None if steps else group_loss
        if steps:
            logs.update(self._optimizer_step(group_loss))
        self.log_dict(logs, batch_size=shown["video"].shape[0])
        # The progress bar turns its values into Python numbers at every batch, the last one logged included: a
        # device tensor there would sync host and device every batch. So the loss goes to it only on the batches
        # the loggers write (synced there already), copied to the host; the bar shows a loss up to
        # trainer.log_every_n_steps batches old (with images, their sum with the videos', as optimised).
        every = self.trainer.log_every_n_steps
        if every > 0 and (step + 1) % every == 0:
            self.log("loss", logs.get("train/total_loss", logs["train/loss"]).cpu(), prog_bar=True, logger=False)
        return {"loss": total.detach(), **shown}

    def _optimizer_step(self, loss: torch.Tensor) -> dict[str, torch.Tensor]:
        optimizers, schedulers = self._optimizers_and_schedulers()
        if self.freeze_steps is not None and self.batch_step < self.freeze_steps:
            for parameter in self.frozen:  # frozen for now: no update, no optimizer state
                parameter.grad = None
        norms = {"train/grad_norm": _clip(self.autoencoder.parameters(), self.grad_clip)}
        if self.adversarial is not None:
            norms["train/disc_grad_norm"] = _clip(self.adversarial.discriminator.parameters(), self.disc_grad_clip)
        # Before its start the discriminator's gradients are zeros (see vtok.losses.adversarial): stepping AdamW
        # on them would still count Adam's steps (no bias correction at its first real update), apply weight
        # decay and advance its schedule, which counts from the start (see configure_optimizers).
        disc_steps = self.adversarial is not None and self.adversarial.started(self.batch_step)
        finite = torch.isfinite(torch.stack([loss, *norms.values()])).all()
        if self._trainer is not None and self.trainer.world_size > 1:  # the loss is this rank's: every rank decides alike
            finite = self.trainer.strategy.reduce(finite.float(), reduce_op="sum") == self.trainer.world_size
        stepped = bool(finite)  # one host sync per optimiser step
        if stepped:
            optimizers[0].step()  # a LightningOptimizer: counts in global_step
            if disc_steps:
                optimizers[1].optimizer.step()  # stepped directly, so global_step stays one per generator step
            if self.ema is not None:
                self.ema.update_parameters(self.autoencoder)
            self._nonfinite_in_a_row = 0
        else:
            self.skipped_steps += 1
            self._nonfinite_in_a_row += 1
            log.warning("step %d: non-finite loss or gradient, step skipped (%d in a row)", self.batch_step, self._nonfinite_in_a_row)
            if self._nonfinite_in_a_row >= self.max_nonfinite_steps:
                raise NonFiniteTrainingError(
                    f"{self._nonfinite_in_a_row} consecutive steps had a non-finite loss or gradient; lower the "
                    "learning rate, check the data, or raise model.max_nonfinite_steps"
                )
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        norms["train/lr"] = torch.tensor(optimizers[0].param_groups[0]["lr"], dtype=torch.float32)  # the rate this step used
        if self.adversarial is not None:
            norms["train/disc_lr"] = torch.tensor(optimizers[1].param_groups[0]["lr"], dtype=torch.float32)
        step_schedule(schedulers[0], stepped)
        if disc_steps:
            step_schedule(schedulers[1], stepped)
        norms["train/skipped_steps"] = torch.tensor(float(self.skipped_steps), dtype=torch.float32)
        return norms

    def setup(self, stage: str) -> None:
        """Keeps the rank-own buffers out of DDP's broadcasts and compiles the networks for
        ``compile_networks: auto`` once the trainer's device is known (before a distributed strategy wraps the module)."""
        if self.adversarial is not None:
            keep_out_of_ddp_broadcasts(self, RANK_OWN_BUFFERS)
        device = self.trainer.strategy.root_device
        if not self._compiled and should_compile(self.compile_networks, device):
            log.info("compiling the encoder and the decoder for %s (compile_networks: auto)", device)
            apply_speed_options(self.autoencoder, compile_networks=True, repeated_backward=self._repeated_backward)
            self._compiled = True

    def on_fit_start(self) -> None:
        said = effective_batch_size(self.trainer, self.accumulate_batches)
        if said is not None:
            log.info("%s", said)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> int | None:
        if self._skip_epoch_remainder:  # -1: Lightning ends the epoch (see on_train_start)
            return -1
        restore_or_split_rng(self._rng_to_restore, self.trainer, self._rng_seeded_per_rank)
        self._rng_to_restore, self._rng_seeded_per_rank = None, True
        if self._fit_projections_to_prior and not self._resuming:
            self._fit_projections(video_parts(batch)["videos"]["video"])
        self._fit_projections_to_prior = False

    def _fit_projections(self, video: torch.Tensor) -> None:
        fit_quantizer_to_prior(self.autoencoder, self.ema.module if self.ema is not None else None, video)

    def on_train_epoch_end(self) -> None:
        datamodule, skipped = getattr(self.trainer, "datamodule", None), self._skip_epoch_remainder
        self._skip_epoch_remainder = False
        if hasattr(datamodule, "end_training_epoch"):
            datamodule.end_training_epoch(skipped)
        if skipped:
            uncount_skipped_batch(self.trainer)
        if datamodule is None or not hasattr(datamodule, "pop_epoch_skips"):
            return
        substituted = datamodule.pop_epoch_skips()
        enlarged = datamodule.pop_epoch_enlarged() if hasattr(datamodule, "pop_epoch_enlarged") else 0
        if skipped:  # the epoch's counts were logged before the stop, or are lost with it: no false 0 for it
            return
        # summed over ranks: each rank counts what its own share of the data met
        self.log("data/substituted_samples", float(substituted), sync_dist=True, reduce_fx="sum")
        # every rank probes the same files at setup: a file met by several ranks counts once
        unusable = len(set().union(*from_every_rank(set(datamodule.skipped_files))))
        self.log("data/unusable_files", float(unusable), sync_dist=True, reduce_fx="max")
        self.log("data/enlarged_samples", float(enlarged), sync_dist=True, reduce_fx="sum")
        if substituted:
            log.warning(
                "epoch %d: %d samples came from substitutes for unusable files (%d unusable files so far)",
                self.current_epoch,
                substituted,
                unusable,
            )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Records what ``vtok export`` needs without this module, and the state a resume needs."""
        reopen_epoch_stopped_by_max_steps(checkpoint)  # the epoch a max_steps stop ended is saved as under way
        config = {k: v for k, v in self.autoencoder.config.items() if not k.startswith("_")}
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        checkpoint[CHECKPOINT_KEY] = {
            "format": CHECKPOINT_FORMAT,
            "autoencoder_class": type(self.autoencoder).__name__,
            "autoencoder_config": {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()},
            "batch_step": self.batch_step,
            "run_out_loaders": run_out_loaders(self.trainer) if self._trainer is not None else None,
            "has_ema": self.ema is not None,
            "joint_training": self.continuous_weight > 0,  # whether a discrete model's continuous path was trained
            "kl_scale": "per_pixel_value",  # the KL's normalisation (see vtok.vae.gaussian); absent before it was
            "skipped_steps": self.skipped_steps,
            "rng": rng,  # rank 0's; each rank's own is under RANK_STATES_KEY
            "clip": self._clip_shape(),
        }
        gather_rank_states(checkpoint, rng, RANK_OWN_BUFFERS)

    def _clip_shape(self) -> dict[str, Any] | None:
        """The training clip shape, so export and evaluation can default to it."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "num_frames"):
            return None
        clip = getattr(datamodule, "clip", None)  # VideoDataModule's ClipSpec: stride and fps
        return {
            "num_frames": datamodule.num_frames,
            "size": list(datamodule.size),
            "frame_stride": getattr(clip, "frame_stride", 1),
            "fps": getattr(clip, "fps", None),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get(CHECKPOINT_KEY, {})
        self.skipped_steps = state.get("skipped_steps", 0)
        self._rng_to_restore = state.get("rng")
        if self._trainer is not None and self.trainer.state.fn == TrainerFn.FITTING:  # resuming, not validating
            mine = take_rank_state(checkpoint, self.trainer.global_rank, self.trainer.world_size)
            # None for a rank the checkpoint had no state for: it seeds its own (on_train_batch_start)
            self._rng_to_restore = mine["rng"] if mine is not None else self._rng_to_restore
        self._loaded_batch_step = state.get("batch_step")
        self._resuming = self._trainer is not None and self.trainer.state.fn == TrainerFn.FITTING
        if self._resuming:
            reopen_epoch_stopped_by_max_steps(checkpoint)  # one saved before vtok did; Lightning restores loops after this
            forget_the_ended_epochs_places(checkpoint)
            if saved_mid_epoch(checkpoint):
                self._run_out_to_restore = state.get("run_out_loaders")
        if self.autoencoder.config.bottleneck == "kl" and "kl_scale" not in state and "batch_step" in state:
            self._warn_about_the_kl_scale(state.get("clip"))

    @staticmethod
    def _warn_about_the_kl_scale(clip: dict[str, Any] | None) -> None:
        """A checkpoint from before the KL was divided by the clip's pixel values: the same weight now
        pulls far less; says by how much for the checkpoint's training clip."""
        if clip:
            factor = f"{3 * clip['num_frames'] * clip['size'][0] * clip['size'][1]:,}"
        else:
            factor = "3·T·H·W"
        log.warning(
            "this checkpoint was trained with the KL summed over the latent; vtok now divides it by the clip's pixel "
            "values (the scale the published weight 1e-6 assumes), so the same loss.bottleneck_weights.kl pulls %s "
            "times less; to go on with the old objective, multiply that weight by %s", factor, factor,
        )  # fmt: skip


def _part_parameters(autoencoder: VideoAutoencoder, part: str) -> list[torch.nn.Parameter]:
    if part == "encoder":
        return list(autoencoder.encoder_parameters())
    if part == "decoder":
        return list(autoencoder.decoder_parameters())
    if part == "quantizer":
        return list(autoencoder.quantizer.parameters())
    raise ValueError(f"freeze: {part!r} is not one of encoder, quantizer, decoder")


def _clip(parameters: Any, max_norm: float | None) -> torch.Tensor:
    """Clips to ``max_norm`` (``None``: measures only) and returns the total norm before clipping."""
    return torch.nn.utils.clip_grad_norm_(list(parameters), float("inf") if max_norm is None else max_norm)
