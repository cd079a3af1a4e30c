"""Training-step throughput of a vtok preset against diffusers' video VAEs, side by side.

One forward and backward of the same objective for every model (L1 plus the bottleneck's own
term, see ``benchmarks/models.py``) at the same clip size, batch and precision, each model in
its own process. Per model, one JSON line: clips/s, seconds per step, peak memory, FLOPs per
clip (forward + backward, counted on one extra step), achieved TFLOP/s, MFU against the
device's bf16 peak, and the host-device synchronisations one step performs. Warm-up steps are
not timed. Speed options (``--channels-last``, ``--compile``, ``--activation-checkpointing``)
apply to the vtok model; the baselines run as diffusers ships them.

    python -m benchmarks.train_step                                    # CPU: 9x32x32, batch 1, 2 steps
    python -m benchmarks.train_step --config configs/fsq_4x8x8.yaml --baselines wan
    python -m benchmarks.train_step --device cuda                      # 17x256x256, batch 2, bf16
"""

from __future__ import annotations

import argparse
import sys

import torch

from benchmarks.common import (
    PeakMemory, SyncCounter, add_run_args, autocast, count_flops, environment, mfu, peak_tflops, sig, time_steps,
    warm_up,
)  # fmt: skip
from benchmarks.models import Subject, add_model_args, build_subject, run_per_model


def add_speed_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--channels-last", action="store_true", help="vtok in channels-last-3d memory format")
    parser.add_argument("--compile", action="store_true", help="torch.compile vtok's encoder and decoder")
    parser.add_argument("--compile-mode", default=None, help="torch.compile mode, e.g. max-autotune")
    parser.add_argument("--activation-checkpointing", action="store_true", help="recompute vtok's stages in backward")
    parser.add_argument("--cudnn-benchmark", action=argparse.BooleanOptionalAction, default=True,
                        help="let cuDNN pick the fastest convolution algorithms (every model)")  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(parser)
    add_model_args(parser)
    add_speed_args(parser)
    return parser.parse_args(argv)


def speed_options(args: argparse.Namespace, is_vtok: bool) -> dict[str, object]:
    """The speed options a record ran with: the baselines get cuDNN's autotuning only (see :func:`prepare`)."""
    if not is_vtok:
        return {"cudnn_benchmark": args.cudnn_benchmark}
    return {"channels_last": args.channels_last, "compile": args.compile, "compile_mode": args.compile_mode,
            "activation_checkpointing": args.activation_checkpointing, "cudnn_benchmark": args.cudnn_benchmark}  # fmt: skip


def prepare(subject: Subject, args: argparse.Namespace) -> None:
    """Sets ``--cudnn-benchmark`` (every model), moves the model to the device and applies
    ``--channels-last`` (vtok only); the options that change the work but not the model's FLOPs come
    after they are counted, in :func:`recompute_and_compile`."""
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    subject.module.to(args.device).train()
    if subject.is_vtok and args.channels_last:
        from vtok.training.speed import apply_speed_options  # vtok.training imports lightning: only when used

        apply_speed_options(subject.module, channels_last=True)


def recompute_and_compile(subject: Subject, args: argparse.Namespace) -> None:
    """``--activation-checkpointing`` and ``--compile`` on vtok's encoder and decoder, after FLOPs are
    counted on the eager model: a recomputed forward is work, not model FLOPs (MFU, not HFU)."""
    if not subject.is_vtok:
        return
    if args.activation_checkpointing:
        subject.module.enable_gradient_checkpointing()
    if args.compile:
        from vtok.training.speed import apply_speed_options

        apply_speed_options(subject.module, compile_networks=True, compile_mode=args.compile_mode)


def measure(name: str, args: argparse.Namespace) -> dict[str, object]:
    subject = build_subject(name, args)
    subject.check(args.frames, args.size)
    prepare(subject, args)
    video = torch.rand(args.batch_size, 3, args.frames, args.size, args.size, device=args.device) * 2 - 1

    def step() -> None:
        with autocast(args.device, args.precision):
            loss = subject.loss(video)
        loss.backward()
        subject.module.zero_grad(set_to_none=True)

    with SyncCounter() as syncs:
        flops = count_flops(step)
    recompute_and_compile(subject, args)
    warm_up(step, args.warmup, args.device)
    with PeakMemory(args.device) as memory:
        seconds = time_steps(step, args.steps, args.device)
    peak = peak_tflops(args.device)
    return {
        "benchmark": "train_step", "model": subject.name, "params_m": round(subject.parameters / 1e6, 2),
        "frames": args.frames, "size": args.size, "batch_size": args.batch_size, "steps": args.steps, "warmup": args.warmup,
        "clips_per_s": sig(args.batch_size / seconds), "seconds_per_step": sig(seconds), **memory.record(),
        "tflop_per_clip": sig(flops / args.batch_size / 1e12), "achieved_tflops": sig(flops / seconds / 1e12),
        "mfu": mfu(flops / seconds, peak), "peak_tflops": peak, "host_syncs_per_step": syncs.count,
        "tiny": args.tiny, "overrides": subject.overrides, **speed_options(args, subject.is_vtok), **environment(args),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    run_per_model("benchmarks.train_step", argv, parse_args(argv), measure)


if __name__ == "__main__":
    main()
