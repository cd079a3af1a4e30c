"""The adversarial half of the objective: hinge loss, LeCAM regularisation (2104.03310) and the
adaptive generator weight of VQGAN (2012.09841).

Designed for one backward per step under DDP without ``find_unused_parameters``: the generator
term calls the discriminator with its parameters frozen (so no gradient reaches them from it), and
the discriminator term is computed every step, multiplied by 0 before ``start_step``, so every
discriminator parameter gets a gradient (of zero) and DDP all-reduces once. The training module does not
step the discriminator's optimizer on those zeros (see ``vtok.training.module``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from vtok.losses.checks import refuse_negative
from vtok.losses.discriminators import DiscriminatorKind, DiscriminatorNorm, build_discriminator


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Parameters of ``module`` do not require grad inside the block (the graph skips them)."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)


def adaptive_weight(
    reconstruction_loss: torch.Tensor, generator_loss: torch.Tensor, last_layer: torch.Tensor, maximum: float = 1e4
) -> torch.Tensor:
    """``‖∇ L_rec‖ / ‖∇ L_G‖`` at the decoder's last layer, so neither term drowns the other. On several ranks
    (every rank computes it at the same training batch) the gradients are averaged over them first, as
    DDP averages the step's: the weight of N ranks x batch B is that of one process with batch N·B (each
    rank's own batch moved it by about 4% at batch 1). Accumulated batches still weigh each batch alone."""
    rec_grad = torch.autograd.grad(reconstruction_loss, last_layer, retain_graph=True)[0]
    gen_grad = torch.autograd.grad(generator_loss, last_layer, retain_graph=True)[0]
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        both = torch.stack([rec_grad, gen_grad])
        dist.all_reduce(both)
        rec_grad, gen_grad = both / dist.get_world_size()
    return (rec_grad.norm() / (gen_grad.norm() + 1e-4)).clamp(0.0, maximum).detach()


class AdversarialLoss(nn.Module):
    """PatchGAN discriminator and the hinge GAN terms for generator and discriminator.

    Steps count training batches.

    Args:
        discriminator: ``"patch3d"`` (over clips) or ``"patch2d"`` (over frames).
        channels: width of the discriminator's first layer.
        layers: strided layers after the first.
        norm: ``"spectral"`` or ``"group"`` normalisation in the discriminator.
        weight: generator adversarial weight (times the adaptive weight when that is on).
        start_step: batches before the adversarial terms switch on (reconstruction first).
        adaptive: scale the generator term by the gradient-norm ratio at the decoder's last layer.
        lecam_weight: weight of the LeCAM regulariser in the discriminator loss (0 turns it off).
        lecam_decay: decay of the running means of the real and fake logits LeCAM anchors to.
    """

    def __init__(
        self,
        discriminator: DiscriminatorKind = "patch3d",
        channels: int = 64,
        layers: int = 3,
        norm: DiscriminatorNorm = "spectral",
        weight: float = 0.2,
        start_step: int = 0,
        adaptive: bool = True,
        lecam_weight: float = 0.01,
        lecam_decay: float = 0.99,
    ) -> None:
        super().__init__()
        refuse_negative("model.adversarial", weight=weight, start_step=start_step, lecam_weight=lecam_weight, layers=layers)
        if not 0 <= lecam_decay < 1 or channels < 1:  # a decay above 1 grew the anchors geometrically (non-finite later)
            raise ValueError(
                f"model.adversarial.lecam_decay must be in [0, 1) (got {lecam_decay}) and channels at least 1 (got {channels})"
            )
        self.discriminator = build_discriminator(discriminator, channels, layers, norm)
        self.weight = weight
        self.start_step = start_step
        self.adaptive = adaptive
        self.lecam_weight = lecam_weight
        self.lecam_decay = lecam_decay
        self.register_buffer("ema_real", torch.zeros(()))
        self.register_buffer("ema_fake", torch.zeros(()))

    def _apply(self, fn: Any, recurse: bool = True) -> "AdversarialLoss":
        """As ``nn.Module._apply`` (``.to``, ``.half()``), with LeCAM's anchors kept in float32 at least: under
        ``trainer.precision: bf16-true`` they were cast to bfloat16, where a 1 % step rounds away once the gap to
        the logits' mean is under ~40 % of the anchor (an anchor at 1.0 stayed there with the logits at 1.3)."""
        super()._apply(fn, recurse)
        for name in ("ema_real", "ema_fake"):
            anchor = getattr(self, name)
            if anchor.is_floating_point() and torch.finfo(anchor.dtype).bits < 32:
                setattr(self, name, anchor.float())
        return self

    def started(self, step: int) -> bool:
        """Whether the adversarial terms are on at training batch ``step``."""
        return step >= self.start_step

    def _update_anchor(self, anchor: torch.Tensor, mean_logit: torch.Tensor) -> None:
        """Moves a LeCAM anchor towards ``mean_logit``, unless that is not finite: a non-finite batch
        (whose step the module skips) would otherwise leave NaN in the anchor for good, and with it
        every later loss, even while the term is weighted 0 (0 · NaN is NaN). Decided on the device. The anchor
        and the logits' mean are float32, whatever the discriminator's precision (see :meth:`_apply`)."""
        moved = anchor.lerp(mean_logit.to(anchor.dtype), 1 - self.lecam_decay)
        anchor.copy_(torch.where(torch.isfinite(moved), moved, anchor))

    def generator_terms(
        self, reconstruction: torch.Tensor, reconstruction_loss: torch.Tensor, last_layer: torch.Tensor, step: int
    ) -> dict[str, torch.Tensor]:
        """``loss`` (weighted, 0 before the start), ``generator`` (unweighted) and ``adaptive_weight``."""
        zero = reconstruction.new_zeros((), dtype=torch.float32)
        if not self.started(step):
            return {"loss": zero, "generator": zero, "adaptive_weight": zero}
        with frozen(self.discriminator):
            generator = -self.discriminator(reconstruction).float().mean()
        weight = self.weight * (
            adaptive_weight(reconstruction_loss, generator, last_layer) if self.adaptive else torch.ones_like(zero)
        )
        return {"loss": weight * generator, "generator": generator.detach(), "adaptive_weight": weight}

    def discriminator_terms(self, real: torch.Tensor, fake: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        """``loss`` (hinge + LeCAM, times 0 before the start) and its parts, for the discriminator."""
        real_logits = self.discriminator(real).float()
        fake_logits = self.discriminator(fake.detach()).float()
        hinge = F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()
        lecam = (
            F.relu(real_logits - self.ema_fake).square().mean() + F.relu(self.ema_real - fake_logits).square().mean()
        )
        with torch.no_grad():
            self._update_anchor(self.ema_real, real_logits.mean())
            self._update_anchor(self.ema_fake, fake_logits.mean())
        factor = 1.0 if self.started(step) else 0.0
        return {
            "loss": factor * (hinge + self.lecam_weight * lecam),
            "hinge": hinge.detach(),
            "lecam": lecam.detach(),
            "logits_real": real_logits.detach().mean(),
            "logits_fake": fake_logits.detach().mean(),
        }
