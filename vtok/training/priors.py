"""``model.init_from``: start training from a continuous prior (OneVAE, 2508.09857)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from vtok.export import load_autoencoder
from vtok.jsonfile import read_json_object
from vtok.vae import VideoAutoencoder
from vtok.vae.prior_projections import VARIANCE_FLOOR, fit_projections, latent_moments
from vtok.vae.priors import autoencoder_from_diffusers, transfer_weights

log = logging.getLogger(__name__)

# What a model built on a diffusers prior keeps from the configured one: the bottleneck, and the
# decoder options (which a diffusers backbone cannot honour: passed on so that they are refused,
# not dropped).
CARRIED_FIELDS = (
    "bottleneck", "fsq_levels", "tokens_per_position", "gq_bits", "gq_groups", "gq_single_token",
    "gq_temperature", "first_frame_tokens", "temporal_compression", "spatial_compression", "latent_channels",
    "decoder_causal", "decoder_timestep_conditioning", "decoder_noise_channels",
)  # fmt: skip


def is_vtok_prior(source: str) -> bool:
    """A vtok training checkpoint (a file) or export folder, as opposed to a diffusers VAE."""
    path = Path(source).expanduser()
    if path.is_file():
        return True
    config = path / VideoAutoencoder.config_name
    return config.is_file() and read_json_object(config).get("_class_name") == VideoAutoencoder.__name__


def initialise_from_prior(
    source: str, configured: VideoAutoencoder, frozen_for_good: Sequence[str] = ()
) -> tuple[VideoAutoencoder, bool]:
    """The model to train: ``configured`` with a vtok prior's weights, or a model built on the
    diffusers VAE at ``source`` with ``configured``'s bottleneck settings; and whether the prior is
    continuous (a discrete model's quantizer projections then start fresh, to be fitted to its
    latents: :mod:`vtok.vae.prior_projections`).

    Args:
        source: the prior (``model.init_from``).
        configured: the model as configured.
        frozen_for_good: the parts (``encoder``, ``quantizer``) frozen for the whole run: a discrete prior must
            give them whole.

    Raises:
        ValueError / FileNotFoundError: the prior is missing, not a video VAE, or its compression,
            latent width or backbone differ from the configured ones (the message names them), or a part frozen
            for good would not be the prior's.
    """
    if Path(source).suffix in (".ckpt", ".pt", ".pth", ".safetensors") and not Path(source).expanduser().exists():
        raise FileNotFoundError(f"model.init_from {source}: no such file")  # a file name, not a Hub id to look up
    if is_vtok_prior(source):
        prior = load_autoencoder(source)
        configured = _on_the_backbone_of(prior, configured)
        report = transfer_weights(prior, configured)
        if prior.is_discrete:
            _refuse_frozen_parts_not_from_prior(prior, configured, report, frozen_for_good)
            return configured, False
        _refuse_frozen_first_frame_tokens(configured, frozen_for_good)
        return configured, True
    _refuse_frozen_first_frame_tokens(configured, frozen_for_good)
    settings = {k: configured.config[k] for k in CARRIED_FIELDS}
    model = autoencoder_from_diffusers(source, **settings)
    log.info("built on the %s prior at %s (%s)", model.config.backbone_class, source, model.compression)
    return model, True


def _on_the_backbone_of(prior: VideoAutoencoder, configured: VideoAutoencoder) -> VideoAutoencoder:
    """``configured`` rebuilt on the prior's diffusers backbone where the prior has one (a vtok model trained on a
    diffusers VAE: stage 2 of such a run, or a new run from its weights) and the config names none: only the prior
    records that backbone (its class and config); a config's default is vtok's own, which the prior's weights do
    not fit. The configured bottleneck and decoder settings are kept, as when starting from the diffusers VAE."""
    backbone = prior.config.get("backbone_class")
    if backbone is None or configured.config.get("backbone_class") is not None:
        return configured
    settings = {key: configured.config[key] for key in CARRIED_FIELDS}
    model = VideoAutoencoder(**settings, backbone_class=backbone, backbone_config=dict(prior.config["backbone_config"]))
    log.info("built on the prior's %s backbone (recorded in its config)", backbone)
    return model


def _refuse_frozen_first_frame_tokens(configured: VideoAutoencoder, frozen: Sequence[str]) -> None:
    """From a continuous prior, the first-frame tokens' read-back projection starts at zero (only the regular
    projections are fitted to the prior's latents): a quantizer frozen for the whole run kept it at zero, and
    the extra tokens, still counted in the bits per pixel, changed nothing."""
    if "quantizer" in frozen and configured.config.get("first_frame_tokens", 0):
        raise ValueError(
            "model.freeze keeps the quantizer fixed for the whole run, but the first-frame tokens' projections start "
            "at zero from a continuous prior and would stay so (their tokens would change nothing): set "
            "model.freeze_steps to train them after N batches, or leave the quantizer out of model.freeze"
        )


def _refuse_frozen_parts_not_from_prior(
    prior: VideoAutoencoder, configured: VideoAutoencoder, report: dict[str, list[str]], frozen: Sequence[str]
) -> None:
    """Stage 2 freezes stage 1's tokenizer; with other quantizer settings (a flag of stage 1's not repeated) the
    quantizer's projections were random, or stage 1's dropped, and frozen so for the whole run, with an INFO line."""
    for part in frozen:
        prefix = f"{part}."
        missing = [name for kind in ("new", "dropped") for name in report[kind] if name.startswith(prefix)]
        if missing:
            gq = ("gq_bits", "gq_groups", "gq_single_token", "gq_temperature")
            own = ("fsq_levels",) if prior.config["bottleneck"] == "fsq" else gq
            fields = ("bottleneck", "tokens_per_position", "first_frame_tokens", *own)
            settings = ", ".join(f"{k}={prior.config[k]!r}" for k in fields if prior.config.get(k) != configured.config.get(k))
            raise ValueError(
                f"model.freeze keeps the {part} fixed for the whole run, but the prior at model.init_from does not give it "
                f"({', '.join(missing[:3])} would be {'random' if missing[0] in report['new'] else 'left out'}): configure "
                f"the prior's quantizer ({settings or 'its settings'}), or set model.freeze_steps to train it after N batches"
            )


@torch.no_grad()
def fit_quantizer_to_prior(autoencoder: VideoAutoencoder, averaged: VideoAutoencoder | None, video: torch.Tensor) -> None:
    """Fits the quantizer's projections to the continuous prior's latents of ``video`` (the first
    batch, all ranks' together), in the EMA copy ``averaged`` too, so that the decoder starts by
    reading the prior's latent (:mod:`vtok.vae.prior_projections`)."""
    bottleneck = autoencoder.quantizer
    count, total, outer = latent_moments(autoencoder.encode(video, discrete=False))
    fitted = fit_projections(bottleneck, count, total, outer)
    if fitted is None:
        log.warning(
            "the quantizer is as wide as the prior's latent: it reads the latent as it is, with no projections "
            "to fit to its scale (a latent_channels other than the quantizer's width gives fitted ones)"
        )
        return
    parameters = [*bottleneck.project_in.parameters(), *bottleneck.project_out.parameters()]
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        for parameter in parameters:  # the same moments on every rank; rank 0's result, bit for bit
            torch.distributed.broadcast(parameter, 0)
    if averaged is not None:
        copies = [*averaged.quantizer.project_in.parameters(), *averaged.quantizer.project_out.parameters()]
        for copy, parameter in zip(copies, parameters):
            copy.copy_(parameter)
    log.info(
        "fitted the quantizer's projections to the prior's latents (%d positions of the first batch): its %d "
        "input channels hold %.1f%% of the latent's variance",
        int(count), bottleneck.regular_channels, 100 * fitted[0],
    )  # fmt: skip
    latent_channels = total.shape[0]
    if fitted[1] < min(bottleneck.regular_channels, latent_channels):
        log.warning(
            "the prior's latent varies along only %d of its %d directions (the others hold under %g of the largest's "
            "variance: collapsed channels?): %d of the quantizer's %d input channels are left as initialised",
            fitted[1], latent_channels, VARIANCE_FLOOR, bottleneck.regular_channels - fitted[1], bottleneck.regular_channels,
        )  # fmt: skip
