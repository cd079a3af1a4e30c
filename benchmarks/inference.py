"""Inference throughput of a vtok preset against diffusers' video VAEs: encode, decode and (discrete
models) tokenize, in frames per second, each model in its own process.

Every model runs its own ``encode``/``decode`` (vtok's in causal temporal chunks, diffusers' with
their own frame caching; no spatial tiling for anyone) under ``torch.inference_mode`` at the same
clip size, batch and precision. One JSON line per model: frames/s of each operation and of
encode + decode together, the peak memory of encode + decode, and FLOPs per clip.

    python -m benchmarks.inference                                     # CPU: 9x32x32, batch 1
    python -m benchmarks.inference --config configs/fsq_4x8x8.yaml --baselines wan
    python -m benchmarks.inference --device cuda                       # 17x256x256, batch 2, bf16
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import torch

from benchmarks.common import PeakMemory, add_run_args, autocast, count_flops, environment, sig, time_steps, warm_up
from benchmarks.models import add_model_args, build_subject, run_per_model
from benchmarks.train_step import add_speed_args, prepare, recompute_and_compile, speed_options


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(parser, full={"steps": 5, "warmup": 2})
    add_model_args(parser)
    add_speed_args(parser)
    return parser.parse_args(argv)


def measure(name: str, args: argparse.Namespace) -> dict[str, object]:
    subject = build_subject(name, args)
    subject.check(args.frames, args.size)
    prepare(subject, args)
    subject.module.eval()
    video = torch.rand(args.batch_size, 3, args.frames, args.size, args.size, device=args.device) * 2 - 1

    def run(fn: Callable[[], object]) -> Callable[[], object]:
        def call() -> object:
            with torch.inference_mode(), autocast(args.device, args.precision):
                return fn()

        return call

    latents = run(lambda: subject.encode(video))()
    operations = {"encode": run(lambda: subject.encode(video)), "decode": run(lambda: subject.decode(latents))}
    if subject.discrete:
        operations["tokenize"] = run(lambda: subject.tokenize(video))
    frames = args.batch_size * args.frames
    record: dict[str, object] = {
        "benchmark": "inference", "model": subject.name, "params_m": round(subject.parameters / 1e6, 2),
        "frames": args.frames, "size": args.size, "batch_size": args.batch_size, "steps": args.steps,
        "warmup": args.warmup, "latent_shape": list(latents.shape[1:]),
    }  # fmt: skip
    for key, fn in operations.items():  # on the eager model
        record[f"{key}_tflop_per_clip"] = sig(count_flops(fn) / args.batch_size / 1e12)
    recompute_and_compile(subject, args)
    seconds = {}
    for key, fn in operations.items():
        warm_up(fn, args.warmup, args.device)
        seconds[key] = time_steps(fn, args.steps, args.device)
        record[f"{key}_frames_per_s"] = sig(frames / seconds[key])
    record["encode_decode_frames_per_s"] = sig(frames / (seconds["encode"] + seconds["decode"]))
    with PeakMemory(args.device) as memory:
        run(lambda: subject.decode(subject.encode(video)))()
    speed = speed_options(args, subject.is_vtok)  # compiled or eager
    record.update(memory.record(), tiny=args.tiny, overrides=subject.overrides, **speed, **environment(args))
    return record


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    run_per_model("benchmarks.inference", argv, parse_args(argv), measure)


if __name__ == "__main__":
    main()
