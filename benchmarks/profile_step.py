"""Where a measured training step's time and memory go: torch.profiler over a few steps of one
model (vtok by default), the operators and kernels that take the device's time, and the memory
split into weights, gradients and the activations kept for the backward pass.

The counterpart of ``benchmarks.roofline`` (an estimate on fake tensors): this one runs the step.
On a GPU it times CUDA kernels; on a CPU (smoke sizes) the operators' CPU time.

    python -m benchmarks.profile_step                           # CPU: 9x32x32, batch 1
    python -m benchmarks.profile_step --device cuda --top 20    # 17x256x256, batch 2, bf16
    python -m benchmarks.profile_step --device cuda --compile   # the fused kernels of torch.compile
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict

import torch
from torch.autograd.profiler_util import EventList
from torch.profiler import ProfilerActivity, profile

from benchmarks.common import GIB, add_run_args, autocast, environment, sig, synchronize, time_steps, warm_up
from benchmarks.models import add_model_args, build_subject, run_per_model
from benchmarks.roofline import category
from benchmarks.train_step import add_speed_args, prepare, recompute_and_compile, speed_options


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(parser)
    add_model_args(parser, baselines="")
    add_speed_args(parser)
    parser.add_argument("--top", type=int, default=15, help="operators and kernels listed")
    return parser.parse_args(argv)


def self_time(event: object, on_cuda: bool) -> float:
    """An averaged event's own time in microseconds, on the device (CUDA) or the CPU."""
    return event.self_device_time_total if on_cuda else event.self_cpu_time_total


def saved_activation_bytes(step_loss: object) -> int:
    """Bytes of the distinct tensors autograd keeps for the backward pass of ``step_loss()``
    (activations, and the bf16 copies of the weights that autocast makes: 2 bytes a parameter)."""
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = step_loss()
    loss.backward()
    return sum(storages.values())


def summarise(events: EventList, on_cuda: bool, steps: int, top: int) -> dict[str, object]:
    """Per-step milliseconds of the top operators (aten) and kernels, and shares by category.

    On a GPU the total is the kernels' time. A kernel counts under the aten operator that launched
    it: a dtype cast's under ``aten::copy_`` (so casts fall in the copies category), and the fused
    kernels of ``torch.compile``, launched outside any aten operator, under "compiled kernels".
    """
    ops = [e for e in events if e.key.startswith("aten::")]
    kernels = [e for e in events if on_cuda and e.device_type == torch.autograd.DeviceType.CUDA
               and not getattr(e, "is_user_annotation", False)]  # fmt: skip
    op_total = sum(self_time(e, on_cuda) for e in ops)
    total = (sum(e.self_device_time_total for e in kernels) if on_cuda else op_total) or 1.0
    by_category: dict[str, float] = defaultdict(float)
    for event in ops:
        by_category[category(event.key.removeprefix("aten::"))] += self_time(event, on_cuda)
    if on_cuda and total > op_total:
        by_category["compiled kernels"] = total - op_total
    row = lambda e, time: {"name": e.key[:120], "calls_per_step": e.count // steps,  # noqa: E731
                           "ms_per_step": sig(time / 1e3 / steps), "share": round(time / total, 3)}  # fmt: skip
    return {
        "device_ms_per_step" if on_cuda else "op_ms_per_step": sig(total / 1e3 / steps),
        "share_by_category": {k: round(v / total, 3) for k, v in sorted(by_category.items(), key=lambda i: -i[1])},
        "top_ops": [row(e, self_time(e, on_cuda)) for e in sorted(ops, key=lambda e: -self_time(e, on_cuda))[:top]],
        "top_kernels": [row(e, e.self_device_time_total) for e in sorted(kernels, key=lambda e: -e.self_device_time_total)[:top]],
    }


def measure(name: str, args: argparse.Namespace) -> dict[str, object]:
    on_cuda = torch.device(args.device).type == "cuda"
    subject = build_subject(name, args)
    subject.check(args.frames, args.size)
    prepare(subject, args)
    recompute_and_compile(subject, args)
    video = torch.rand(args.batch_size, 3, args.frames, args.size, args.size, device=args.device) * 2 - 1

    def loss() -> torch.Tensor:
        with autocast(args.device, args.precision):
            return subject.loss(video)

    def step() -> None:
        loss().backward()
        subject.module.zero_grad(set_to_none=True)

    warm_up(step, max(args.warmup, 1), args.device)
    weights = sum(p.numel() * p.element_size() for p in subject.module.parameters())
    saved = saved_activation_bytes(loss)
    subject.module.zero_grad(set_to_none=True)
    if on_cuda:
        torch.cuda.reset_peak_memory_stats(args.device)
    seconds = time_steps(step, args.steps, args.device)
    peak = torch.cuda.max_memory_allocated(args.device) if on_cuda else None
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if on_cuda else [])]
    with profile(activities=activities) as profiler:
        for _ in range(args.steps):
            step()
        synchronize(args.device)
    return {
        "benchmark": "profile_step", "model": subject.name, "params_m": round(subject.parameters / 1e6, 2),
        "frames": args.frames, "size": args.size, "batch_size": args.batch_size, "steps": args.steps,
        "step_ms": sig(seconds * 1e3), **summarise(profiler.key_averages(), on_cuda, args.steps, args.top),
        "memory_gib": {"weights": sig(weights / GIB), "gradients": sig(weights / GIB),
                       "saved_for_backward": sig(saved / GIB), "peak": sig(peak / GIB) if peak is not None else None},
        "tiny": args.tiny, "overrides": subject.overrides, **speed_options(args, subject.is_vtok), **environment(args),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.only is None:
        args.only = "vtok"  # one model per run: profiles are long; --only wan profiles a baseline
    run_per_model("benchmarks.profile_step", argv, args, measure)


if __name__ == "__main__":
    main()
