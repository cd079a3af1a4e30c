"""``vtok export --ckpt C --out D``: a training checkpoint becomes a ``from_pretrained`` folder."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

import torch
from tqdm import tqdm

from vtok.commands.protocol import add_protocol_arguments, protocol_dataset
from vtok.export import autoencoder_from_checkpoint, export_checkpoint, latent_statistics, read_checkpoint

log = logging.getLogger(__name__)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vtok export", description=__doc__)
    p.add_argument("--ckpt", required=True, help="training checkpoint written by `vtok fit`")
    p.add_argument("--out", required=True, help="folder to write (config.json + safetensors)")
    p.add_argument("--no-ema", action="store_true", help="export the live weights even when the run kept an EMA")
    p.add_argument("--latent-stats", metavar="DATA", help="videos to measure per-channel latent mean/std on")
    p.add_argument("--max-videos", type=int, default=256, help="at most this many videos for --latent-stats")
    add_protocol_arguments(p)
    return p


def main(argv: Sequence[str]) -> None:
    args = parser().parse_args(argv)
    stats = None
    if args.latent_stats:
        checkpoint = read_checkpoint(args.ckpt)
        model = autoencoder_from_checkpoint(checkpoint, use_ema=not args.no_ema)
        dataset = protocol_dataset(args, args.latent_stats, model, checkpoint["vtok"].get("clip"))
        latents = []
        with torch.no_grad():
            for index in tqdm(range(min(len(dataset), args.max_videos)), desc="latent statistics", unit="video"):
                latents.append(model.encode(dataset[(0, index)]["video"][None]))
        stats = latent_statistics(latents)
    folder = export_checkpoint(args.ckpt, args.out, use_ema=not args.no_ema, latent_stats=stats)
    print(f"exported {args.ckpt} -> {folder}")
