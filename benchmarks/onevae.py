"""OneVAE's techniques measured at a fixed small budget (labelled: small models, few steps).

(i)  continuous prior: a vtok KL model is trained first in this script; an FSQ tokenizer
     fine-tuned from it (encoder and decoder copied, quantizer projections fitted to its latents
     at the first batch, as ``vtok fit --model.init_from`` does) is compared with one trained
     from scratch (same data, steps and seed): validation PSNR against steps, and how many steps each needs to reach the from-scratch
     run's final PSNR;
(ii) 1 vs 2 FSQ tokens per position at the same budget;
(iii) first-frame strengthening on vs off at 4x16x16: PSNR of the first frame and of the rest.
One JSON line per measurement.

    python -m benchmarks.onevae                          # the recorded CPU figures (tiny budget)
    python -m benchmarks.onevae --steps 4 --prior-steps 4 --size 32 --frames 5   # smoke
    python -m benchmarks.onevae --device cuda --size 128 --frames 17 --steps 3000 --prior-steps 3000 \\
        --width 64 --eval-every 250                      # the GPU setting
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from benchmarks.budget_training import Budget, prepare_clips, train
from torch.utils.data import DataLoader

from vtok import VideoAutoencoder
from vtok.data import ClipSpec, EpochSampler, VideoClipDataset
from vtok.vae.prior_projections import fit_projections, latent_moments
from vtok.vae.priors import transfer_weights

LEVELS = [8, 5, 5, 5]  # 1,000 codes: small enough that tokens, not the codebook, limit quality


def backbone(width: int, spatial: int = 8) -> dict[str, Any]:
    return {"latent_channels": 8, "block_out_channels": [width, 2 * width], "layers_per_block": 1, "spatial_compression": spatial}


def fsq(width: int, spatial: int = 8, **extra: Any) -> VideoAutoencoder:
    torch.manual_seed(0)
    return VideoAutoencoder(bottleneck="fsq", fsq_levels=LEVELS, **backbone(width, spatial), **extra)


def first_batch(files: list[str], budget: Budget) -> torch.Tensor:
    """The first training batch :func:`train` will see (same dataset, sampler and seed)."""
    dataset = VideoClipDataset(files, ClipSpec(budget.frames), (budget.size, budget.size), seed=0)
    loader = DataLoader(dataset, batch_size=budget.batch_size, sampler=EpochSampler(len(dataset), seed=0), drop_last=True)
    return next(iter(loader))["video"]


def prior_vs_scratch(args: argparse.Namespace, budget: Budget, data: tuple[list[str], list[str]]) -> dict:
    torch.manual_seed(0)
    prior = VideoAutoencoder(**backbone(args.width))
    train(prior, *data, replace(budget, steps=args.prior_steps, eval_every=0))
    scratch_run = train(fsq(args.width), *data, budget)
    tuned = fsq(args.width)
    transfer_weights(prior.cpu(), tuned)
    with torch.no_grad():  # as vtok fit does at the first batch: the projections fitted to the prior's latents
        kept, _ = fit_projections(tuned.quantizer, *latent_moments(tuned.encode(first_batch(data[0], budget), discrete=False)))
    tuned_run = train(tuned, *data, budget)
    target = scratch_run.final_psnr
    scratch_steps, tuned_steps = scratch_run.steps_to_reach(target), tuned_run.steps_to_reach(target)
    return {
        "measurement": "prior_vs_scratch",
        "prior_steps": args.prior_steps,
        "scratch_psnr_by_step": scratch_run.psnr_by_step,
        "from_prior_psnr_by_step": tuned_run.psnr_by_step,
        "target_psnr_db": round(target, 3),
        "steps_to_target": {"scratch": scratch_steps, "from_prior": tuned_steps},
        "speedup": round(scratch_steps / tuned_steps, 2) if tuned_steps else None,
        "projections_variance_kept": round(kept, 4),
    }


def tokens_per_position(args: argparse.Namespace, budget: Budget, data: tuple[list[str], list[str]]) -> dict:
    result = {"measurement": "tokens_per_position"}
    for k in (1, 2):
        model = fsq(args.width, tokens_per_position=k)
        result[f"k{k}_psnr_db"] = round(train(model, *data, budget).final["all"], 3)
        result[f"k{k}_bits_per_pixel"] = round(model.bits_per_pixel(budget.frames, budget.size, budget.size), 4)
    return result


def first_frame(args: argparse.Namespace, budget: Budget, data: tuple[list[str], list[str]]) -> dict:
    result = {"measurement": "first_frame_strengthening", "compression": "4x16x16"}
    plain = fsq(args.width, spatial=16, tokens_per_position=2)
    start = {k: v.clone() for k, v in plain.state_dict().items()}
    for name, extra in (("off", 0), ("on", 2)):
        model = fsq(args.width, spatial=16, tokens_per_position=2, first_frame_tokens=extra)
        model.load_state_dict(start, strict=extra == 0)  # the same starting weights; the extra path starts at zero
        psnr = train(model, *data, budget).final
        result[name] = {
            "first_frame_psnr_db": round(psnr["first_frame"], 3),
            "other_frames_psnr_db": round(psnr["other_frames"], 3),
            "bits_per_pixel": round(model.bits_per_pixel(budget.frames, budget.size, budget.size), 4),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300, help="training steps of every tokenizer")
    parser.add_argument("--prior-steps", type=int, default=300, help="training steps of the KL prior")
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--width", type=int, default=16, help="channels of the first level")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--only", choices=["prior", "tokens", "first_frame"], help="run one measurement")
    args = parser.parse_args()
    budget = Budget(args.steps, args.frames, args.size, lr=args.lr, eval_every=args.eval_every, device=args.device)
    measurements = {"prior": prior_vs_scratch, "tokens": tokens_per_position, "first_frame": first_frame}
    with tempfile.TemporaryDirectory() as folder:
        data = prepare_clips(Path(folder), args.frames, args.size)
        for name, measure in measurements.items():
            if args.only in (None, name):
                row = measure(args, budget, data)
                row.update(steps=args.steps, clip=f"{args.frames}x{args.size}x{args.size}", width=args.width, device=args.device)
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
