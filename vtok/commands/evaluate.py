"""``vtok evaluate --model M --data P --out D``: reconstruction metrics of an export or a checkpoint."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vtok.commands.device import add_device_argument, resolve_device, resolve_workers
from vtok.commands.folder_lock import FolderBusy, folder_lock
from vtok.commands.outputs import output_folder
from vtok.commands.protocol import add_protocol_arguments, clip_dataset, resolve_protocol
from vtok.data.sources import printable_path
from vtok.evaluation.runner import EvaluationSettings, evaluate
from vtok.evaluation.ssim import check_ssim_size
from vtok.export import load_autoencoder_and_metadata
from vtok.tokenfiles import weights_sha256
from vtok.vae import VideoAutoencoder

log = logging.getLogger(__name__)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vtok evaluate", description=__doc__)
    p.add_argument("--model", type=os.path.expanduser, required=True, help="export folder (`vtok export`) or training checkpoint")
    p.add_argument(
        "--data", type=os.path.expanduser, required=True,
        help="videos: a folder, a glob or a manifest (.jsonl/.csv/.txt)",
    )
    p.add_argument(
        "--out", type=os.path.expanduser, required=True,
        help="folder for metrics.json, per_video.csv, report.md, pictures/",
    )
    add_device_argument(p)
    p.add_argument("--max-videos", type=int, help="evaluate at most this many readable videos")
    p.add_argument("--batch-size", type=int, default=4, help="clips per forward pass")
    p.add_argument("--lpips-weights", type=os.path.expanduser, help="vgg16-397923af.pth (default: $TORCH_HOME/hub/checkpoints/)")
    p.add_argument("--fvd-weights", type=os.path.expanduser, help="i3d_torchscript.pt (default: $TORCH_HOME/hub/checkpoints/)")
    p.add_argument("--pictures", type=int, default=4, help="pictures and side-by-side videos of the first N videos")
    p.add_argument("--mode", choices=["discrete", "continuous"],
                   help="tokens or the continuous latents of a jointly trained discrete model (default: the model's own)")
    p.add_argument("--decode-timestep", type=float, default=0.0,
                   help="decode latents noised to this level t in [0, 1] (a denoising decoder is told t; default 0)")
    p.add_argument("--noise-seed", type=int, default=0, help="seed of the latent noise of --decode-timestep")
    add_protocol_arguments(p)
    return p


def model_record(path: str, model: VideoAutoencoder, metadata: dict[str, Any]) -> dict[str, Any]:
    """What the outputs record about the model."""
    return {
        "path": path,
        "training_step": metadata.get("_vtok_training_step"),
        "weights": metadata.get("_vtok_weights"),
        "weights_sha256": weights_sha256(model),  # which weights, whatever their file was called or became
        "bottleneck": model.config.bottleneck,
        "codebook_size": model.codebook_size,
        "tokens_per_position": model.tokens_per_position,
    }


EVALUATING = ".evaluating.lock"  # in --out, held while an evaluation writes there


def main(argv: Sequence[str]) -> None:
    args = parser().parse_args(argv)
    for flag in ("max_videos", "batch_size"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be at least 1, got {getattr(args, flag)}")
    output_folder(args.out)
    device = resolve_device(args.device)
    workers = resolve_workers(args.workers, device)
    model, metadata = load_autoencoder_and_metadata(args.model)
    protocol = resolve_protocol(args, model, metadata.get("_vtok_clip"))
    if args.mode == "continuous" and model.is_discrete and metadata.get("_vtok_joint_training") is False:
        log.warning(
            "--mode continuous: this discrete model was trained without model.continuous_weight, so its decoder "
            "never learnt to read the continuous latents; the scores say little about it"
        )
    check_ssim_size(protocol.height, protocol.width)  # before any video is read
    # not its own pictures/*.mp4 (only those: --out may hold the data, as `--out .` does)
    dataset = clip_dataset(protocol, args.data, model, args.backend, Path(args.out) / "pictures")
    settings = EvaluationSettings(
        device, args.batch_size, args.max_videos, args.lpips_weights, args.fvd_weights, max(args.pictures, 0),
        args.mode, args.decode_timestep, args.noise_seed, protocol.fps, workers,
    )  # fmt: skip
    record, out = model_record(args.model, model, metadata), Path(args.out)
    new_folder = not out.exists()
    try:  # two evaluations into one --out replaced each other's metrics and deleted each other's pictures
        with folder_lock(out, EVALUATING, wait=False):
            data = {"path": printable_path(args.data), "real_path": printable_path(os.path.realpath(args.data))}
            metrics = evaluate(model, dataset, out, settings, protocol.as_dict(), record, data)
    except FolderBusy:
        raise ValueError(f"another vtok evaluate is still writing into --out {args.out}: give this one another --out") from None
    finally:  # an error before anything was written (the metric weights, --mode) leaves no folder behind
        if new_folder and out.is_dir() and [path.name for path in out.iterdir()] == [EVALUATING]:
            (out / EVALUATING).unlink()
            out.rmdir()
    shown = ", ".join(f"{key} {metrics[key]:.4g}" for key in ("psnr", "ssim", "lpips", "fvd") if metrics[key] is not None)
    print(f"evaluated {metrics['videos']} videos ({metrics['skipped_files']} skipped): {shown} -> {os.path.join(args.out, 'metrics.json')}")
