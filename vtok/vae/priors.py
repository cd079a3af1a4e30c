"""Discrete tokenizers initialised from continuous priors (OneVAE, 2508.09857).

Two kinds of prior:
- a vtok model (an export folder or a training checkpoint, loaded by the caller):
  :func:`transfer_weights` copies its encoder and decoder into a model with the same backbone.
  From a continuous prior to a discrete model, the encoder's last convolution keeps the
  posterior-mean half of its output channels and the quantizer's 1x1x1 projections start fresh;
  a decoder that reads noise channels beside the latent (WeTok) gets the prior's first convolution
  on its latent channels and zeros on the noise channels;
  from a discrete prior with the same bottleneck (a second training stage), everything is copied;
- a diffusers video VAE (``AutoencoderKLWan``, ``AutoencoderKLCogVideoX``,
  ``AutoencoderKLLTXVideo``, ``AutoencoderKLHunyuanVideo``) by local folder or hub id in the local
  cache: :func:`autoencoder_from_diffusers` builds a ``VideoAutoencoder`` on its encoder and
  decoder with the requested bottleneck and loads its weights. Nothing is downloaded.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import diffusers
import torch

from vtok.error_text import first_line, run_folder_hint
from vtok.jsonfile import read_json_object
from vtok.vae.autoencoder import VideoAutoencoder
from vtok.vae.compression import Compression
from vtok.vae.diffusers_backbone import PRIOR_CLASSES, prior_compression, prior_latent_channels
from vtok.vae.strict_loading import check_model_folder, check_weights_before_loading

log = logging.getLogger(__name__)

# The fields that describe a backbone (must match between a vtok prior and the model built on it).
BACKBONE_FIELDS = (
    "temporal_compression", "spatial_compression", "block_out_channels", "layers_per_block", "patch_size",
    "frame_padding", "resample_shortcut", "in_channels", "backbone_class",
)  # fmt: skip
# Those of a backbone built on a diffusers VAE: its own config describes it (vtok's widths and depths go unused).
DIFFUSERS_BACKBONE_FIELDS = ("temporal_compression", "spatial_compression", "backbone_class", "backbone_config")


def _listify(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _widened_inputs(prior: torch.Tensor, model: torch.Tensor) -> bool:
    """Whether the convolution weight ``model`` is ``prior`` with more input channels (dim 1)."""
    return (
        prior.ndim == model.ndim >= 2
        and prior.shape[1] < model.shape[1]
        and prior.shape[:1] + prior.shape[2:] == model.shape[:1] + model.shape[2:]
    )


def _decoder_differences(prior: Any, model: Any) -> dict[str, Any]:
    """The prior's decoder options that ``model``'s decoder cannot start from, with the prior's values: another
    time padding (the same weights would run on other frames), fewer noise channels (a prior's noise weights
    have no place), or no timestep conditioning where the prior has it (its trained modulation would be
    dropped). More noise channels or an added conditioning start at zero, so the decoder starts as the prior's."""
    different: dict[str, Any] = {}
    if prior.get("decoder_causal", True) != model.get("decoder_causal", True):
        different["decoder_causal"] = prior.get("decoder_causal", True)
    if prior.get("decoder_timestep_conditioning", False) and not model.get("decoder_timestep_conditioning", False):
        different["decoder_timestep_conditioning"] = True
    if prior.get("decoder_noise_channels", 0) > model.get("decoder_noise_channels", 0):
        different["decoder_noise_channels"] = prior.get("decoder_noise_channels", 0)
    return different


def transfer_weights(prior: VideoAutoencoder, model: VideoAutoencoder) -> dict[str, list[str]]:
    """Copies a prior's encoder, decoder (and, when they match, quantizer) into ``model``.

    Returns:
        ``{"copied": [...], "adapted": [...], "new": [...]}`` parameter names of ``model``, and ``"dropped"``:
        the prior's that ``model`` has no place for (a quantizer's projections where the new one has none).

    Raises:
        ValueError: a discrete prior for a continuous model, or a backbone that differs from the
            model's (the message names the fields and the values the prior has).
    """
    if prior.is_discrete and not model.is_discrete:
        raise ValueError("a discrete prior cannot start a continuous (kl) model; use a kl prior")
    fields = DIFFUSERS_BACKBONE_FIELDS if prior.config.get("backbone_class") else BACKBONE_FIELDS
    different = {
        name: _listify(prior.config.get(name))
        for name in (*fields, "latent_channels")  # a wider latent would take the log-variance channels
        if _listify(prior.config.get(name)) != _listify(model.config.get(name))
    }
    if different.keys() & {"backbone_class", "backbone_config"} and prior.config.get("backbone_class"):
        raise ValueError(  # a whole diffusers config: not one to write out on a command line
            f"the prior is built on another backbone ({prior.config['backbone_class']} with its own config) than the "
            "model: build it with the prior's backbone_class and backbone_config (model.init_from does so where the "
            "config names no backbone_class)"
        )
    different.update(_decoder_differences(prior.config, model.config))
    if different:
        settings = ", ".join(f"{k}={v}" for k, v in different.items())
        raise ValueError(f"the prior's backbone differs from the configured one; set {settings} to match it")
    source = prior.state_dict()
    report: dict[str, list[str]] = {"copied": [], "adapted": [], "new": []}
    target = model.state_dict()
    for name, tensor in target.items():
        if name not in source:
            report["new"].append(name)
            continue
        value = source[name]
        if value.shape == tensor.shape:
            tensor.copy_(value)
            report["copied"].append(name)
        elif name.startswith("encoder.conv_out.") and value.shape[0] == 2 * tensor.shape[0]:
            tensor.copy_(value[: tensor.shape[0]])  # the posterior-mean half of (mean, log-variance)
            report["adapted"].append(name)
        elif name == "decoder.conv_in.weight" and _widened_inputs(value, tensor):
            # A generative decoder reads [latent, noise] (the noise appended after the latent): the
            # prior's weights take the latent's input channels, the noise channels start at zero, so
            # the decoder starts as the prior's (and with zero noise decodes exactly as it does).
            tensor.zero_()
            tensor[:, : value.shape[1]].copy_(value)
            report["adapted"].append(name)
        else:
            report["new"].append(name)
    report["dropped"] = [name for name in source if name not in target]
    log.info(
        "initialised from a %s prior: %d tensors copied, %d adapted, %d new, %d of the prior's left out",
        "discrete" if prior.is_discrete else "continuous",
        len(report["copied"]), len(report["adapted"]), len(report["new"]), len(report["dropped"]),
    )  # fmt: skip
    return report


PRIOR_REMEDY = "fetch the prior again (its weights file is missing, damaged or from another model)"


def load_diffusers_vae(source: str) -> torch.nn.Module:
    """A diffusers video VAE from a local folder or a hub id already in the local cache.

    A hub id names a VAE repository or a pipeline whose ``vae`` subfolder holds it.

    Raises:
        FileNotFoundError: not found locally (the message says what to download).
        ValueError: it is not one of the supported video VAEs.
        IncompleteWeightsError: its weights lack tensors its config builds, or hold others.
    """
    path = Path(source).expanduser()
    local = path.exists()
    if local:
        folder = path / "vae" if (path / "vae" / "config.json").is_file() and not (path / "config.json").is_file() else path
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"{source} has no config.json: not a diffusers model folder{run_folder_hint(path)}")
        class_name = read_json_object(folder / "config.json").get("_class_name")
        if class_name not in PRIOR_CLASSES:
            raise ValueError(f"{source} holds a {class_name!r}, not a video VAE; supported: {', '.join(PRIOR_CLASSES)}")
        vae_class = getattr(diffusers, class_name)
        check_model_folder(folder, None, PRIOR_REMEDY)  # a config alone (a download cut short): diffusers' traceback
        check_weights_before_loading(vae_class, folder, {}, PRIOR_REMEDY)  # diffusers left a missing tensor on "meta"
        try:
            return vae_class.from_pretrained(folder)
        except OSError as error:  # a weights file diffusers cannot read (cut short): a traceback
            raise ValueError(f"{source}: its weights cannot be read ({first_line(error)}); {PRIOR_REMEDY}") from None
    if path.is_absolute() or source.startswith((".", "~")) or source.count("/") > 1:
        raise FileNotFoundError(f"no model folder at {source} (a hub id is 'owner/name')")
    errors = []
    for subfolder in (None, "vae"):
        try:
            vae = diffusers.AutoModel.from_pretrained(source, subfolder=subfolder, local_files_only=True)
        except (OSError, ValueError, EnvironmentError) as error:
            errors.append(first_line(error))
            continue
        if type(vae).__name__ not in PRIOR_CLASSES:
            raise ValueError(f"{source} holds a {type(vae).__name__}, not a video VAE; supported: {', '.join(PRIOR_CLASSES)}")
        check_weights_before_loading(type(vae), source, {"subfolder": subfolder}, PRIOR_REMEDY)
        return vae
    raise FileNotFoundError(
        f"{source!r} is neither a local folder nor a model in the local Hugging Face cache (vtok never downloads "
        f"at run time). Fetch it first, e.g. `huggingface-cli download {source} --include 'vae/*'`, or pass the "
        f"VAE folder's path. ({'; '.join(errors)})"
    )


def autoencoder_from_diffusers(source: str, **config: Any) -> VideoAutoencoder:
    """A ``VideoAutoencoder`` whose encoder and decoder are the diffusers VAE at ``source``, with
    its weights, and the bottleneck settings in ``config`` (compression and latent width come
    from the prior; when ``config`` names them, they must agree).

    Raises:
        ValueError: the prior's compression or latent width differs from the configured one.
    """
    vae = load_diffusers_vae(source)
    found = Compression(*prior_compression(vae))
    for key, value in (("temporal_compression", found.temporal), ("spatial_compression", found.spatial),
                       ("latent_channels", prior_latent_channels(vae))):  # fmt: skip
        if config.get(key, value) != value:
            raise ValueError(f"the prior {source} has {key}={value}, but the config asks for {config[key]}; set {key}={value}")
        config[key] = value
    backbone_config = {k: _listify(v) for k, v in vae.config.items() if not k.startswith("_")}
    config.update(backbone_class=type(vae).__name__, backbone_config=backbone_config)
    model = VideoAutoencoder(**config)
    model.encoder.vae.load_state_dict(vae.state_dict())
    return model
