"""Where an eager training step's time goes, estimated without a GPU: every operator of one
forward + backward, its FLOPs and the bytes it reads and writes, and the time it needs at the
H100's bf16 peak or at its memory bandwidth, whichever is longer (a roofline per operator).

Eager PyTorch runs (almost) one kernel per operator, so the sum over operators is a lower bound
on the eager step time, and the convolutions' share of it bounds the MFU an eager step can reach:
convolutions at full peak and every elementwise kernel (normalisation, activation, residual add,
dtype cast, padding copy) at full bandwidth. ``torch.compile`` closes the gap by fusing the
elementwise kernels into fewer passes over memory. The table also breaks down the memory alive at
the step's peak by the kind of operator that made each tensor (what the backward pass keeps).

Runs on fake tensors (``FakeTensorMode``: real shapes and dtypes, nothing allocated or computed),
so the full 17x256x256 size takes seconds on a CPU. CUDA's behaviour is modelled where the CPU's
differs: bf16 autocast with normalisations in float32 (``benchmarks.footprint``), and vtok's RMS
norm as one fused kernel forward and one backward (``aten._fused_rms_norm`` on CUDA; the CPU
decomposes it). A model, not a measurement: ``benchmarks.profile_step`` measures the kernels on a GPU.

    python -m benchmarks.roofline                               # vtok preset, Wan 2.1, CogVideoX
    python -m benchmarks.roofline --baselines '' --set 'block_out_channels=[128,256,512]' --top 15
"""

from __future__ import annotations

import argparse
import math
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import flop_registry

from benchmarks.common import GIB, PEAK_BF16_TFLOPS, TensorMemory, autocast, sig
from benchmarks.footprint import norms_in_float32
from benchmarks.models import add_model_args, build_subject, measure_each_model_here

# HBM bandwidth in TB/s of the devices the tables were measured on.
MEMORY_TBPS = {"H100": 3.35, "H200": 4.8}

# Operator name -> category: the first rule whose substring the name contains.
CATEGORIES: tuple[tuple[str, str], ...] = (
    ("conv", "convolution"), ("mm", "matmul"), ("linear", "matmul"),
    ("rms_norm", "normalisation"), ("group_norm", "normalisation"), ("layer_norm", "normalisation"),
    ("linalg_vector_norm", "normalisation"), ("clamp", "normalisation"),
    ("silu", "activation"), ("gelu", "activation"), ("sigmoid", "activation"),
    ("_to_copy", "dtype cast"), ("copy_", "layout copy"), ("clone", "layout copy"), ("cat", "padding / concat"),
    ("pad", "padding / concat"), ("upsample", "resampling"), ("pixel_shuffle", "resampling"),
    ("add", "add / mul"), ("mul", "add / mul"), ("div", "add / mul"), ("sub", "add / mul"),
    ("sum", "reduction"), ("mean", "reduction"), ("abs", "loss"), ("sgn", "loss"),
)  # fmt: skip
# No kernel: allocation, metadata, and views that the schema does not mark as aliasing.
FREE_OPS = frozenset({"detach", "empty", "empty_like", "empty_strided", "new_empty_strided", "ones_like", "zeros_like",
                      "new_zeros", "new_ones", "fill_", "zero_", "_local_scalar_dense", "_unsafe_view"})  # fmt: skip


def category(op_name: str) -> str:
    return next((kind for key, kind in CATEGORIES if key in op_name), "other")


def unique_bytes(tensor: torch.Tensor) -> int:
    """Bytes a kernel touches reading ``tensor``: broadcast (stride 0) dimensions count once."""
    elements = math.prod(size for size, stride in zip(tensor.shape, tensor.stride()) if stride != 0)
    return elements * tensor.element_size()


@dataclass
class OpCost:
    calls: int = 0
    flops: int = 0
    bytes: int = 0
    seconds: float = 0.0


class RooflineMode(TorchDispatchMode):
    """Records each operator's FLOPs, bytes and roofline time.

    Args:
        peak_flops: the device's bf16 peak in FLOP/s.
        bandwidth: its memory bandwidth in bytes/s.
    """

    def __init__(self, peak_flops: float, bandwidth: float) -> None:
        super().__init__()
        self.peak_flops, self.bandwidth = peak_flops, bandwidth
        self.costs: dict[str, OpCost] = defaultdict(OpCost)
        self.in_norm = False  # inside the fused-norm stand-in: its outputs are the norm's

    def record(self, name: str, flops: int, nbytes: int) -> None:
        cost = self.costs[name]
        cost.calls += 1
        cost.flops += flops
        cost.bytes += nbytes
        cost.seconds += max(flops / self.peak_flops, nbytes / self.bandwidth)

    def kind(self, func: object) -> str:
        """The category of ``func``'s outputs, for :class:`~benchmarks.common.TensorMemory`."""
        return "normalisation" if self.in_norm else category(func.overloadpacket.__name__)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = func.overloadpacket.__name__
        returns = func._schema.returns
        is_view = bool(returns) and returns[0].alias_info is not None and not returns[0].alias_info.is_write
        if not is_view and name not in FREE_OPS and name != "device":
            inputs = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
            if name == "copy_":
                inputs = inputs[1:]  # the destination is written, not read
            outputs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
            nbytes = sum(unique_bytes(t) for t in inputs) + sum(t.numel() * t.element_size() for t in outputs)
            flops = flop_registry[func.overloadpacket](*args, **kwargs, out_val=out) if func.overloadpacket in flop_registry else 0
            self.record(name, flops, nbytes)
        return out


class _FusedRMSNorm(torch.autograd.Function):
    """CUDA's fused RMS norm as the roofline sees it: one kernel forward (read x and the gain,
    write y and one float per row), one backward (read dy, x and the row statistics, write dx;
    the gain's gradient reduces in the same pass)."""

    @staticmethod
    def forward(ctx, x, shape, weight, eps, mode):  # noqa: ANN001, ANN205
        mode.in_norm = True
        try:
            y = torch.empty_like(x)  # fake tensors hold no values: only the kernel's output matters
        finally:
            mode.in_norm = False
        rows = x.numel() // math.prod(shape)
        mode.record("_fused_rms_norm", 0, x.numel() * x.element_size() * 2 + rows * 4)
        ctx.save_for_backward(x, weight)
        ctx.mode, ctx.rows = mode, rows
        return y

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001, ANN205
        x, weight = ctx.saved_tensors
        ctx.mode.in_norm = True
        try:
            grad_x = torch.empty_like(x)
            grad_weight = torch.empty_like(weight) if weight is not None else None
        finally:
            ctx.mode.in_norm = False
        ctx.mode.record("_fused_rms_norm_backward", 0, x.numel() * x.element_size() * 3 + ctx.rows * 4)
        return grad_x, None, grad_weight, None, None


@contextmanager
def fused_rms_norm(mode: RooflineMode) -> Iterator[None]:
    """``F.rms_norm`` costed as CUDA's one fused kernel each way (enter
    :func:`~benchmarks.footprint.norms_in_float32` after it for autocast's float32 inputs)."""
    original = F.rms_norm

    def rms_norm(x, shape, weight=None, eps=None):  # noqa: ANN001, ANN202
        return _FusedRMSNorm.apply(x, tuple(shape), weight, eps, mode)

    F.rms_norm = rms_norm
    try:
        yield
    finally:
        F.rms_norm = original


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--gpu", choices=sorted(MEMORY_TBPS), default="H100", help="whose peak and bandwidth")
    parser.add_argument("--top", type=int, default=10, help="operators listed per model")
    add_model_args(parser, baselines="wan,cogvideox")
    return parser.parse_args()


def roofline(name: str, args: argparse.Namespace) -> dict[str, object]:
    peak = dict(PEAK_BF16_TFLOPS)[args.gpu] * 1e12
    mode = RooflineMode(peak, MEMORY_TBPS[args.gpu] * 1e12)
    with FakeTensorMode():
        subject = build_subject(name, args)
        subject.check(args.frames, args.size)
        video = torch.rand(args.batch_size, 3, args.frames, args.size, args.size) * 2 - 1
        with TensorMemory(mode.kind) as memory, mode, fused_rms_norm(mode), norms_in_float32():  # last: upcast first
            with autocast("cpu", "bf16"):
                loss = subject.loss(video)
            loss.backward()
    seconds = sum(c.seconds for c in mode.costs.values())
    flops = sum(c.flops for c in mode.costs.values())
    by_category: dict[str, OpCost] = defaultdict(OpCost)
    for op, cost in mode.costs.items():
        total = by_category[category(op)]
        total.calls, total.flops = total.calls + cost.calls, total.flops + cost.flops
        total.bytes, total.seconds = total.bytes + cost.bytes, total.seconds + cost.seconds
    share = lambda c: round(c.seconds / seconds, 3)  # noqa: E731
    top = sorted(mode.costs.items(), key=lambda item: -item[1].seconds)[: args.top]
    return {
        "benchmark": "roofline", "model": subject.name, "params_m": round(subject.parameters / 1e6, 2), "gpu": args.gpu,
        "frames": args.frames, "size": args.size, "batch_size": args.batch_size,
        "kernels": sum(c.calls for c in mode.costs.values()), "tflop_per_step": sig(flops / 1e12),
        "gb_moved_per_step": sig(sum(c.bytes for c in mode.costs.values()) / 1e9),
        "eager_step_ms_lower_bound": sig(seconds * 1e3), "eager_mfu_upper_bound": round(flops / peak / seconds, 3),
        "time_share_by_category": {k: share(c) for k, c in sorted(by_category.items(), key=lambda i: -i[1].seconds)},
        "top_ops": [{"op": op, "calls": c.calls, "share": share(c), "gb": sig(c.bytes / 1e9), "tflop": sig(c.flops / 1e12)}
                    for op, c in top],
        "estimated_peak_gib": sig(memory.peak / GIB),
        "peak_gib_by_category": {k: sig(v / GIB, 3) for k, v in sorted(memory.peak_by_kind.items(), key=lambda i: -i[1]) if v},
        "overrides": subject.overrides, "tiny": args.tiny,
    }  # fmt: skip


def main() -> None:
    measure_each_model_here(parse_args(), roofline)


if __name__ == "__main__":
    main()
