"""``vtok export --ckpt C --out D``: a training checkpoint becomes a ``from_pretrained`` folder."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any

import torch
from tqdm import tqdm

from vtok.commands.device import add_device_argument, resolve_device, resolve_workers
from vtok.commands.outputs import output_folder
from vtok.commands.protocol import add_protocol_arguments, clip_dataset, resolve_protocol
from vtok.data.read_ahead import read_ahead
from vtok.export import (
    CHECKPOINT_KEY,
    autoencoder_from_checkpoint,
    export_read_checkpoint,
    latent_statistics,
    read_checkpoint,
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vtok export", description=__doc__)
    p.add_argument("--ckpt", type=os.path.expanduser, required=True, help="training checkpoint written by `vtok fit`")
    p.add_argument("--out", type=os.path.expanduser, required=True, help="folder to write (config.json + safetensors)")
    p.add_argument("--no-ema", action="store_true", help="export the live weights even when the run kept an EMA")
    p.add_argument(
        "--latent-stats",
        metavar="DATA",
        type=os.path.expanduser,
        help="videos to measure per-channel latent mean/std on, encoded on --device (unreadable or too short ones "
        "are skipped and counted)",
    )
    p.add_argument("--max-videos", type=int, default=256, help="at most this many readable videos for --latent-stats")
    add_protocol_arguments(p)
    add_device_argument(p)  # where --latent-stats encodes
    return p


def _latent_stats(
    args: argparse.Namespace, checkpoint: dict[str, Any], device: torch.device, workers: int
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Per-channel latent statistics over the centre clips of the first ``--max-videos`` readable videos
    of ``--latent-stats``, encoded on ``device`` (``workers`` processes decoding ahead); unreadable ones
    are skipped with a warning and counted. Also returns what they were measured on: the clip protocol
    (frames, size, stride or fps, centre clip and crop), the number of videos used and of files skipped.

    Raises:
        ValueError: no video could be read (the message names the first reasons).
    """
    model = autoencoder_from_checkpoint(checkpoint, use_ema=not args.no_ema)
    protocol = resolve_protocol(args, model, checkpoint[CHECKPOINT_KEY].get("clip"))
    dataset = clip_dataset(protocol, args.latent_stats, model, args.backend)
    model = model.to(device)
    latents: list[torch.Tensor] = []
    skipped: list[dict[str, str]] = []
    loaded = read_ahead(dataset, workers=workers)
    with torch.no_grad():
        # each file's own clip or a skip, never a substitute: duplicates would bias the statistics
        for _, video, _, skip in tqdm(loaded, desc="latent statistics", unit="video", total=len(dataset)):
            if skip is not None:
                skipped.append(skip)
                continue
            latents.append(model.encode(video[None].to(device)).cpu())
            if len(latents) == args.max_videos:
                break
    if not latents:
        reasons = "; ".join(f"{s['path']}: {s['reason']}" for s in skipped[:3])
        raise ValueError(
            f"--latent-stats: none of the {len(skipped)} videos could be read ({reasons}); "
            "check the data path and the clip flags, or run `vtok prepare` on it"
        )
    print(f"latent statistics from {len(latents)} videos ({len(skipped)} skipped)")
    measured_on = {**protocol.as_dict(), "videos": len(latents), "skipped_files": len(skipped)}
    return latent_statistics(latents, model.quantizer.first_frame_channels), measured_on


def main(argv: Sequence[str]) -> None:
    args = parser().parse_args(argv)
    if args.max_videos < 1:
        raise ValueError(f"--max-videos must be at least 1, got {args.max_videos}")
    out = output_folder(args.out)
    device = resolve_device(args.device)
    workers = resolve_workers(args.workers, device)
    checkpoint = read_checkpoint(args.ckpt)  # once, for the statistics and the export
    stats, measured_on = _latent_stats(args, checkpoint, device, workers) if args.latent_stats else (None, None)
    folder = export_read_checkpoint(checkpoint, out, not args.no_ema, stats, latent_stats_protocol=measured_on)
    print(f"exported {args.ckpt} -> {folder}")
