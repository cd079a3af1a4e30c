"""Training checkpoint -> self-contained ``save_pretrained`` folder, and loading either of them.

An export is diffusers' folder layout: ``config.json`` (the model's flat config plus vtok's
metadata under private ``_vtok_*`` keys, which ``from_pretrained`` keeps in ``model.config`` and
never passes to the constructor) and ``*.safetensors`` (no pickles). It holds the EMA weights when
the run kept them, and never the discriminator, the LPIPS network or optimizer state. Loading
needs torch + diffusers + vtok only; training checkpoints are read with ``weights_only=True``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from diffusers.utils import SAFETENSORS_WEIGHTS_NAME

from vtok.error_text import first_line, run_folder_hint
from vtok.jsonfile import read_json_object
from vtok.vae import VideoAutoencoder
from vtok.vae.export_config import (
    EXPORT_FORMAT,
    ExportConfigError,
    check_export_config,
    identity_metadata,
)
from vtok.vae.strict_loading import IncompleteWeightsError

log = logging.getLogger(__name__)

CHECKPOINT_KEY = "vtok"  # where the training module records the network's config in a checkpoint


def not_a_checkpoint_reason(path: Path) -> str | None:
    """Why ``path``, a folder or a file of an export folder, is no training checkpoint (``None``: it may be one)."""
    config = VideoAutoencoder.config_name
    if path.is_dir():
        export = f" (an export? it holds {config})" if (path / config).is_file() else ""
        return f"{path} is a folder{export}, not a training checkpoint: give a .ckpt file written by `vtok fit`"
    if (path.name == config or path.suffix == ".safetensors") and (path.parent / config).is_file():
        return (
            f"{path} is a file of the export folder {path.parent}: give the folder itself to load the export "
            "(a training checkpoint is a .ckpt file written by `vtok fit`)"
        )
    return None


def load_failure_reason(path: Path, error: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` could not read ``path``, never with torch's advice to load it
    with ``weights_only=False`` (which runs whatever code the file holds)."""
    try:
        with path.open("rb") as handle:
            torch_format = handle.read(4) == b"PK\x03\x04"  # torch.save's zip (and Lightning's), whole or cut short
    except OSError:
        torch_format = True  # unreadable: torch's reason says why
    if not torch_format:
        return f"{path} is not a torch checkpoint (a file written by `vtok fit` / torch.save)"
    if "weights_only" in str(error):
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        held = f" ({found.group(1)})" if found else ""
        return (
            f"{path} is a torch file holding Python objects{held} beyond tensors and plain data, which vtok never "
            "unpickles (that could run any code); give a .ckpt file written by `vtok fit`"
        )
    return f"{path} is not a readable torch checkpoint ({first_line(error, None)})"


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The training checkpoint at ``path``, loaded with ``weights_only=True``.

    Raises:
        FileNotFoundError: nothing there.
        ValueError: a folder or a file of an export folder, a file that is not a torch checkpoint, or not
            one written by vtok's training.
    """
    path = Path(path).expanduser()  # "~/runs/x" from Python, as a shell would expand it
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    wrong_kind = not_a_checkpoint_reason(path)
    if wrong_kind:
        raise ValueError(wrong_kind)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # the weights-only unpickler raises many types for foreign bytes
        raise ValueError(load_failure_reason(path, error)) from None
    if not isinstance(checkpoint, dict) or CHECKPOINT_KEY not in checkpoint or "state_dict" not in checkpoint:
        raise ValueError(
            f"{path} is not a vtok training checkpoint (no '{CHECKPOINT_KEY}' record); "
            "export checkpoints written by `vtok fit`"
        )
    record = checkpoint[CHECKPOINT_KEY]
    if record.get("autoencoder_class") != VideoAutoencoder.__name__:
        raise ValueError(
            f"{path} holds a {record.get('autoencoder_class')!r}, not a {VideoAutoencoder.__name__}; "
            "this version of vtok cannot export it"
        )
    return checkpoint


def autoencoder_from_checkpoint(checkpoint: dict[str, Any], use_ema: bool = True) -> VideoAutoencoder:
    """The network in a training checkpoint (its EMA weights when kept and ``use_ema``), in eval mode."""
    record = checkpoint[CHECKPOINT_KEY]
    try:
        model = VideoAutoencoder(**record["autoencoder_config"])
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"the checkpoint's recorded network config cannot build a model ({error})") from None
    prefix = "ema.module." if use_ema and record.get("has_ema") else "autoencoder."
    state = {k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    if not state:
        raise ValueError(f"the checkpoint holds no weights under '{prefix}' (pass use_ema=False for the live weights)")
    try:  # strict: a missing or unexpected weight is an error, never random
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"the checkpoint's weights do not fit its recorded config: {str(error)[:500]}") from None
    return model.eval()


def export_metadata(model: VideoAutoencoder, record: dict[str, Any], use_ema: bool) -> dict[str, Any]:
    """The ``_vtok_*`` keys written into an export's config.json."""
    compression = model.compression
    pairs = model.latent_frame_multiple  # 2 on a CogVideoX backbone: an odd number of latent frames
    latent_frames = "1 + k" if pairs == 1 else f"1 + {pairs}k"
    return {
        "_vtok_format": EXPORT_FORMAT,
        **identity_metadata(model),
        "_vtok_frame_rule": f"T = 1 + k*{model.frame_multiple} frames -> {latent_frames} latent frames; "
        f"H, W multiples of {compression.spatial}",
        "_vtok_input_range": [-1.0, 1.0],
        "_vtok_bits_per_token": model.bits_per_token,
        "_vtok_training_step": record.get("batch_step"),
        "_vtok_weights": "ema" if use_ema and record.get("has_ema") else "live",
        "_vtok_clip": record.get("clip"),
        "_vtok_joint_training": record.get("joint_training"),  # None: a checkpoint from before it was recorded
    }


def write_export(model: VideoAutoencoder, out: str | Path, metadata: dict[str, Any]) -> Path:
    """``save_pretrained`` (safetensors) and vtok's metadata into its config.json, written into a hidden
    staging folder inside ``out`` and moved into place when complete, config.json last. Weights files of an
    earlier save that the new one does not write (a sharded save's index and shards, whose index diffusers
    would read first) are removed; other files in ``out`` are kept. An error while saving leaves ``out``
    as it was (or absent, when it was).
    """
    out = Path(out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".vtok-export-", dir=out))  # same file system: each move is a rename
    try:
        model.save_pretrained(staging, safe_serialization=True)
        config_path = staging / model.config_name
        config = json.loads(config_path.read_text())
        config.update(metadata)
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        _move_into_place(staging, out, model.config_name)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created and not any(out.iterdir()):
            out.rmdir()
        raise
    staging.rmdir()
    return out


def _move_into_place(staging: Path, out: Path, config_name: str) -> None:
    """The files of ``staging`` into ``out``: the weights, then the earlier save's other weights files
    removed (an index before its shards, so it never names missing ones), then the config."""
    written = {path.name for path in staging.iterdir()}
    for name in sorted(written - {config_name}):
        os.replace(staging / name, out / name)
    stem = SAFETENSORS_WEIGHTS_NAME.split(".")[0]  # "diffusion_pytorch_model": diffusers' weights, shards and indexes
    stale = [path for path in out.iterdir() if path.name.startswith(stem) and path.name not in written]
    for path in sorted(stale, key=lambda path: not path.name.endswith(".json")):
        if path.is_file():
            path.unlink()
    os.replace(staging / config_name, out / config_name)


def export_checkpoint(
    checkpoint_path: str | Path,
    out: str | Path,
    use_ema: bool = True,
    latent_stats: dict[str, list[float]] | None = None,
    latent_stats_protocol: dict[str, Any] | None = None,
) -> Path:
    """Writes the export folder for a training checkpoint.

    Args:
        checkpoint_path: a ``.ckpt`` written by ``vtok fit``.
        out: the folder to write (created).
        use_ema: export the EMA weights when the checkpoint has them.
        latent_stats: per-channel ``{"mean": [...], "std": [...]}`` of the latents, stored as
            ``_vtok_latent_mean`` / ``_vtok_latent_std`` for diffusion models trained on them.
        latent_stats_protocol: what ``latent_stats`` were measured on (clip frames, size, stride or
            fps, crop, number of videos and of skipped files), stored as ``_vtok_latent_stats_protocol``.
            Optional: exports without it (older ones included) load alike.
    """
    return export_read_checkpoint(read_checkpoint(checkpoint_path), out, use_ema, latent_stats, latent_stats_protocol)


def export_read_checkpoint(
    checkpoint: dict[str, Any],
    out: str | Path,
    use_ema: bool = True,
    latent_stats: dict[str, list[float]] | None = None,
    latent_stats_protocol: dict[str, Any] | None = None,
) -> Path:
    """:func:`export_checkpoint` of a checkpoint already read by :func:`read_checkpoint` (a caller that
    needs it first, as ``vtok export --latent-stats`` does, reads it once)."""
    model = autoencoder_from_checkpoint(checkpoint, use_ema)
    metadata = export_metadata(model, checkpoint[CHECKPOINT_KEY], use_ema)
    if latent_stats is not None:
        metadata["_vtok_latent_mean"], metadata["_vtok_latent_std"] = latent_stats["mean"], latent_stats["std"]
    if latent_stats_protocol is not None:
        metadata["_vtok_latent_stats_protocol"] = latent_stats_protocol
    return write_export(model, out, metadata)


def load_autoencoder(path: str | Path, use_ema: bool = True) -> VideoAutoencoder:
    """A ``VideoAutoencoder`` in eval mode from an export folder or a training checkpoint.

    Raises:
        FileNotFoundError: nothing at ``path``.
        ValueError: ``path`` is neither a vtok export nor a vtok training checkpoint, its weights are
            corrupted or incomplete, or its config.json was edited after export (see
            :mod:`vtok.vae.export_config`, which ``VideoAutoencoder.from_pretrained`` applies too).
    """
    path = Path(path).expanduser()
    if path.is_file():
        return autoencoder_from_checkpoint(read_checkpoint(path), use_ema)
    if not path.is_dir():
        raise FileNotFoundError(f"no export folder or checkpoint at {path}")
    config_path = path / VideoAutoencoder.config_name
    if not config_path.is_file():
        raise ValueError(f"{path} is not a vtok export: it has no {VideoAutoencoder.config_name}{run_folder_hint(path)}")
    check_export_config(read_json_object(config_path), path)  # from_pretrained checks it too; first, before the weights
    if not list(path.glob("*.safetensors")):
        raise ValueError(f"{path} has no .safetensors weights")
    try:
        model = VideoAutoencoder.from_pretrained(path, low_cpu_mem_usage=False)
    except (IncompleteWeightsError, ExportConfigError):
        raise  # name the tensors, or the edited config field; ValueErrors
    except Exception as error:  # safetensors and diffusers raise several types for damaged files
        # torch's load_state_dict heads its message with a line that names nothing; the tensor follows
        mismatch = [line.strip() for line in str(error).splitlines() if "size mismatch" in line]
        reason = mismatch[0][:300] + (f" (and {len(mismatch) - 1} more)" if len(mismatch) > 1 else "") if mismatch else first_line(error, 300)
        raise ValueError(f"the weights in {path} cannot be loaded ({reason})") from None
    return model.eval()


def load_autoencoder_and_metadata(path: str | Path, use_ema: bool = True) -> tuple[VideoAutoencoder, dict[str, Any]]:
    """:func:`load_autoencoder`, plus the model's ``_vtok_*`` metadata (training step, training clip,
    compression, ...): an export's keys as written, or what ``vtok export`` would write for a checkpoint.

    Raises:
        FileNotFoundError, ValueError: as :func:`load_autoencoder`.
    """
    path = Path(path).expanduser()
    if path.is_file():
        checkpoint = read_checkpoint(path)
        model = autoencoder_from_checkpoint(checkpoint, use_ema)
        return model, export_metadata(model, checkpoint[CHECKPOINT_KEY], use_ema)
    model = load_autoencoder(path, use_ema)
    return model, {key: value for key, value in model.config.items() if key.startswith("_vtok_")}


def latent_statistics(latents: list[torch.Tensor], first_frame_channels: int = 0) -> dict[str, list[float]]:
    """Per-channel mean and standard deviation over ``[B, C, t, h, w]`` latent tensors; the last
    ``first_frame_channels`` channels (first-frame tokens' values, zeros in later frames) over the first latent
    frame alone, the one that holds them (over every frame, the zeros shrank their spread, the more the longer
    the clips)."""
    every = latents[0].shape[1] - first_frame_channels
    mean, std = _moments([z[:, :every] for z in latents])
    if first_frame_channels:
        first_mean, first_std = _moments([z[:, every:, :1] for z in latents])
        mean, std = torch.cat([mean, first_mean]), torch.cat([std, first_std])
    return {"mean": mean.tolist(), "std": std.tolist()}


def _moments(latents: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and population standard deviation over every other dimension, in float64."""
    total = sum(z.shape[0] * math.prod(z.shape[2:]) for z in latents)
    sums = sum(z.double().sum(dim=(0, 2, 3, 4)) for z in latents)
    squares = sum(z.double().square().sum(dim=(0, 2, 3, 4)) for z in latents)
    mean = sums / total
    return mean, (squares / total - mean.square()).clamp_min(0).sqrt()
