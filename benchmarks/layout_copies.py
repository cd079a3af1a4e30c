"""Which operations of one eager training step copy or re-layout memory on CUDA, counted without a GPU.

An H200 profile of vtok's eager step (torch.profiler, 17x256x256, batch 2, bf16) spent 31 % of the
step's kernel time in copies (``aten::copy_``) and in the layout transposes cuDNN makes inside its
convolutions (``nchwToNhwcKernel`` / ``nhwcToNchwKernel``), not in the convolutions themselves. This
benchmark finds where they come from: one forward + L1/KL loss + backward of a preset runs on fake
tensors (``FakeTensorMode``: real shapes, strides and dtypes, nothing computed) under CPU bf16
autocast, and every copy a CUDA step would make is counted with the bytes it moves (read + write)
and attributed to the vtok source line that made it (backward operators through anomaly mode's
tracebacks of their forward). On the code profiled then, the model gave 334 copy launches for the
343 ``aten::copy_`` measured, and 190 / 95 cuDNN transposes for 188 / 95 measured.

The CPU does not follow CUDA's layout rules, so these are modelled (from PyTorch's sources:
``aten/src/ATen/native/cudnn/ConvShared.cpp``, ``Convolution.cpp``, ``cuda/UpSampleNearest3d.cu``
and ``rms_norm_symint`` in ``layer_norm.cpp``):

* convolution: cuDNN runs channels-last-3d (NDHWC) when the input or the weight suggests it, else
  channels-first (NCDHW); ``input.contiguous(fmt)`` and ``weight.contiguous(fmt)`` copy when not
  already in it, and the output is in ``fmt``. With NCDHW, cuDNN's bf16 3D kernels are NDHWC
  inside: one ``nchwToNhwc`` transpose per operand in and one ``nhwcToNchw`` per result out
  (counted as cuDNN-internal, not as copies).
* convolution_backward: ``input.contiguous(fmt)`` again (the saved input, not the forward's copy),
  ``grad_output.to(fmt)`` and ``weight.contiguous(fmt)``; the input and weight gradients in ``fmt``.
* rms_norm: an input that suggests channels-last takes the composite path (the CPU's, traced
  operator by operator); any other runs ``aten._fused_rms_norm``, whose kernels read X (and dY)
  contiguous, copying them when they are not, and write Y and dX contiguous.
* upsample_nearest3d: the CUDA kernel is NCDHW only: ``input.contiguous()``, and a contiguous
  temporary output copied into a channels-last output; backward ``grad_output.contiguous()``.
* ``F.interpolate`` runs outside autocast (CUDA's autocast has no rule for it; the CPU's upcasts).

The summary splits the copies into layout copies (everything but dtype casts and ``cat``), dtype
casts (``_to_copy``) and ``cat`` (causal padding: a copy by nature), lists the ``slice_backward``
zero fills apart (a fill, not a copy) and counts the copy-kernel launches (every copy but ``cat``,
which is its own kernel). ``--top`` lists the sites that move the most bytes. ``--baselines`` runs
diffusers' VAEs through the same rules (not autocast's float32 rule for their group and layer
norms, which vtok's norms do not use); their sites name only the benchmark's own lines.

    python -m benchmarks.layout_copies                          # kl_4x8x8, 17x256x256, batch 2
    python -m benchmarks.layout_copies --channels-last --top 20 # apply_speed_options(channels_last=True)
"""

from __future__ import annotations

import argparse
import re
import traceback
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch._prims_common import suggest_memory_format
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from benchmarks.common import autocast, sig
from benchmarks.models import Subject, add_model_args, build_subject, measure_each_model_here
from benchmarks.roofline import unique_bytes
from vtok.vae import layout as vtok_layout

CL = torch.channels_last_3d
ROOT = str(Path(__file__).resolve().parents[1]) + "/"  # sites are the repository's source lines
THIS_FILE = str(Path(__file__).resolve())
# aten operators that launch a copy kernel (or, for cat, a copy-like one) on CUDA
COPY_OPS = frozenset({"clone", "copy_", "_to_copy", "slice_backward", "select_backward", "constant_pad_nd", "cat",
                      "index_put"})  # fmt: skip
HALVES = (("enc", "vae/encoder.py"), ("dec", "vae/decoder.py"))  # a site's half of the network, by its frames
_TRACEBACK_LINE = re.compile(r'File "([^"]+)", line (\d+), in (\S+)')


def layout(tensor: torch.Tensor) -> str:
    """``NCDHW`` / ``NDHWC`` (``both`` when either holds) or ``view~X`` (neither; X the suggested
    format) for a 5D tensor; ``dense`` or ``strided`` for any other."""
    if tensor.dim() != 5:
        return "dense" if tensor.is_contiguous() else "strided"
    first, last = tensor.is_contiguous(), tensor.is_contiguous(memory_format=CL)
    if first or last:
        return "both" if first and last else "NCDHW" if first else "NDHWC"
    return "view~" + ("NDHWC" if suggest_memory_format(tensor) == CL else "NCDHW")


def cudnn_format(x: torch.Tensor, weight: torch.Tensor) -> torch.memory_format:
    """The memory format cuDNN runs a convolution in: channels-last-3d when either operand suggests it."""
    return CL if CL in (suggest_memory_format(x), suggest_memory_format(weight)) else torch.contiguous_format


def format_name(memory_format: torch.memory_format) -> str:
    """``NDHWC`` for channels-last-3d, else ``NCDHW``."""
    return "NDHWC" if memory_format == CL else "NCDHW"


def _repository_frames(frames: Sequence[tuple[str, int]]) -> tuple[str, ...]:
    """``path:line`` (relative to the repository) of the frames in it, this file's excepted."""
    return tuple(f"{name[len(ROOT):]}:{line}" for name, line in frames if name.startswith(ROOT) and name != THIS_FILE)


def where() -> tuple[str, tuple[str, ...]]:
    """The phase (``fwd`` / ``bwd``) of the running operator and the repository frames that made it,
    outermost first: the Python stack forward, the forward's stack (anomaly mode's) in backward."""
    node = torch._C._current_autograd_node()
    if node is None:
        return "fwd", _repository_frames([(f.filename, f.lineno) for f in traceback.extract_stack()])
    lines = node.metadata.get("traceback_") or []
    matches = [m for m in map(_TRACEBACK_LINE.search, lines) if m]
    return "bwd", _repository_frames([(m.group(1), int(m.group(2))) for m in matches])


def short_site(frames: tuple[str, ...], depth: int = 2) -> str:
    """``enc`` / ``dec`` / ``-`` (the half of the network) and the innermost ``depth`` frames,
    innermost first, e.g. ``enc causal_conv.py:32 < causal_conv.py:78``."""
    halves = [half for half, path in HALVES if any(path in f for f in frames)]
    half = halves[0] if halves else "-"
    inner = [f.replace("vtok/vae/", "").replace("vtok/losses/", "losses/") for f in frames[-depth:]]
    return f"{half} " + " < ".join(reversed(inner)) if inner else half


@dataclass
class CopyEvent:
    """One copy a CUDA step makes."""

    kind: str  # the operator, or the CUDA kernel's internal copy, e.g. "conv weight.contiguous(NDHWC)"
    op: str  # the aten operator it belongs to
    phase: str
    site: str
    layouts: str  # "source->destination"
    bytes: int  # read + write


@dataclass
class ConvEvent:
    """One convolution (forward or backward): cuDNN's format and the operands' layouts."""

    phase: str
    cudnn_format: str
    input: str
    weight: str
    grad_output: str | None = None  # backward only


class CudaLayoutMode(TorchDispatchMode):
    """Records, per operator, the copies and layout conversions CUDA would make (see the module's
    docstring for the rules) and the convolutions' layouts. Enter inside ``FakeTensorMode`` and
    :func:`cuda_functional`."""

    def __init__(self) -> None:
        super().__init__()
        self.copies: list[CopyEvent] = []
        self.convs: list[ConvEvent] = []
        self.cudnn_internal: Counter = Counter()  # transposes and their bytes, by direction
        self.zero_fills: list[int] = []  # bytes written by each slice_backward's zeros
        self.rms_norms: Counter = Counter()  # "fused" / "composite"

    def record_copy(self, kind: str, op: str, src: torch.Tensor, destination: str, moved: int | None = None) -> None:
        """One copy of ``src`` into ``destination`` layout (``moved`` bytes; by default read + write of ``src``)."""
        phase, frames = where()
        moved = 2 * src.nbytes if moved is None else moved
        self.copies.append(CopyEvent(kind, op, phase, short_site(frames), f"{layout(src)}->{destination}", moved))

    def record_transposes(self, into: Sequence[torch.Tensor], out_of: Sequence[torch.Tensor]) -> None:
        """cuDNN's own transposes around an NCDHW convolution: NCDHW->NDHWC per operand ``into``
        it, NDHWC->NCDHW per result ``out_of`` it."""
        for direction, tensors in (("nchw_to_nhwc", into), ("nhwc_to_nchw", out_of)):
            for tensor in tensors:
                self.cudnn_internal[direction] += 1
                self.cudnn_internal[direction + "_bytes"] += 2 * tensor.nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        if name == "convolution":
            return self._convolution(func, args, kwargs)
        if name == "convolution_backward":
            return self._convolution_backward(func, args, kwargs)
        if name in ("upsample_nearest3d", "upsample_nearest3d_backward") and not args[0].is_contiguous():
            what = "input" if name == "upsample_nearest3d" else "grad_output"
            self.record_copy(f"{name} {what}.contiguous()", name, args[0], "NCDHW")
        out = func(*args, **kwargs)
        if name == "upsample_nearest3d" and not out.is_contiguous():
            self.record_copy("upsample temp output -> output.copy_()", name, out, layout(out))
        if name in COPY_OPS:
            self._copy_op(name, args, kwargs, out)
        return out

    def _copy_op(self, name: str, args: tuple, kwargs: dict, out: Any) -> None:
        """A visible copy operator: its source, destination layout and bytes."""
        inputs = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        returns = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        if not returns:
            return
        result = returns[0]
        src = inputs[1] if name == "copy_" else inputs[0] if inputs else result
        if name == "cat":  # an expanded (stride-0) input is read once per distinct element
            read = sum(unique_bytes(t) for t in inputs)
            self.record_copy(name, name, result, layout(result), read + result.nbytes)
        elif name in ("slice_backward", "select_backward"):  # zeros of the full input, then a copy_ of the slice
            self.zero_fills.append(result.nbytes)
            self.record_copy(f"{name} (copy_ part; + zeros fill)", name, src, layout(result), 2 * src.nbytes)
        else:
            kind = name
            if name == "_to_copy":
                kind = f"_to_copy {str(src.dtype)[6:]}->{str(result.dtype)[6:]}"
                kind += "" if src.dim() == 5 else " (param/1D)"
            self.record_copy(kind, name, src, layout(result), src.nbytes + result.nbytes)

    def _convolution(self, func, args: tuple, kwargs: dict) -> torch.Tensor:  # noqa: ANN001
        x, weight = args[0], args[1]
        memory_format = cudnn_format(x, weight)
        fmt = format_name(memory_format)
        for operand, tensor in (("input", x), ("weight", weight)):
            if not tensor.is_contiguous(memory_format=memory_format):
                self.record_copy(f"conv {operand}.contiguous({fmt})", "convolution", tensor, fmt)
        out = func(*args, **kwargs).contiguous(memory_format=memory_format)
        if memory_format != CL:
            self.record_transposes([x, weight], [out])
        self.convs.append(ConvEvent("fwd", fmt, layout(x), layout(weight)))
        return out

    def _convolution_backward(self, func, args: tuple, kwargs: dict) -> tuple:  # noqa: ANN001
        grad, x, weight, mask = args[0], args[1], args[2], args[10]
        memory_format = cudnn_format(x, weight)
        fmt = format_name(memory_format)
        if not x.is_contiguous(memory_format=memory_format):
            self.record_copy(f"conv_bwd input.contiguous({fmt})", "convolution_backward", x, fmt)
        if not grad.is_contiguous(memory_format=memory_format):
            self.record_copy(f"conv_bwd grad_output.to({fmt})", "convolution_backward", grad, fmt)
        if mask[0] and not weight.is_contiguous(memory_format=memory_format):
            self.record_copy(f"conv_bwd weight.contiguous({fmt})", "convolution_backward", weight, fmt)
        out = tuple(o.contiguous(memory_format=memory_format) if o is not None and o.dim() == 5 else o
                    for o in func(*args, **kwargs))  # fmt: skip
        if memory_format != CL:
            if mask[0]:
                self.record_transposes([grad, weight], [x])
            if mask[1]:
                self.record_transposes([x, grad], [weight])
        self.convs.append(ConvEvent("bwd", fmt, layout(x), layout(weight), layout(grad)))
        return out


class _FusedRMSNorm(torch.autograd.Function):
    """``aten._fused_rms_norm`` as CUDA runs it: X (and dY) read contiguous, copied when they are
    not; Y and dX written contiguous."""

    @staticmethod
    def forward(ctx, x, shape, weight, eps, mode):  # noqa: ANN001, ANN205
        if not x.is_contiguous():
            mode.record_copy("rms_norm fwd X.expect_contiguous()", "_fused_rms_norm", x, "dense")
        ctx.save_for_backward(x, weight)
        ctx.mode = mode
        return torch.empty(x.shape, dtype=x.dtype, device=x.device)

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001, ANN205
        x, weight = ctx.saved_tensors
        for what, tensor in (("dY", grad), ("X", x)):
            if not tensor.is_contiguous():
                kind = f"rms_norm bwd {what}.expect_contiguous()"
                ctx.mode.record_copy(kind, "_fused_rms_norm_backward", tensor, "dense")
        grad_weight = None if weight is None else torch.empty_like(weight)
        return torch.empty(x.shape, dtype=x.dtype, device=x.device), None, grad_weight, None, None


@contextmanager
def cuda_functional(mode: CudaLayoutMode) -> Iterator[None]:
    """``F.rms_norm`` and ``F.interpolate`` as CUDA runs them (see the module's docstring), and vtok's
    network layout as it picks it on CUDA (``vtok/vae/layout.py``), for the duration of the ``with``."""
    rms_norm, interpolate, picked_layout = F.rms_norm, F.interpolate, vtok_layout.network_layout

    def cuda_rms_norm(x, shape, weight=None, eps=None):  # noqa: ANN001, ANN202
        if suggest_memory_format(x) in (CL, torch.channels_last):  # rms_norm_symint's composite fallback
            mode.rms_norms["composite"] += 1
            return rms_norm(x, shape, weight, eps)
        mode.rms_norms["fused"] += 1
        return _FusedRMSNorm.apply(x, tuple(shape), weight, eps, mode)

    def cuda_interpolate(*args: Any, **kwargs: Any) -> torch.Tensor:
        with torch.autocast("cpu", enabled=False):
            return interpolate(*args, **kwargs)

    F.rms_norm, F.interpolate = cuda_rms_norm, cuda_interpolate
    vtok_layout.network_layout = lambda device: picked_layout(torch.device("cuda"))
    try:
        yield
    finally:
        F.rms_norm, F.interpolate, vtok_layout.network_layout = rms_norm, interpolate, picked_layout


def trace_step(subject: Subject, video: torch.Tensor) -> CudaLayoutMode:
    """One bf16-autocast forward + loss + backward of ``subject`` on ``video`` (fake tensors), recorded."""
    mode = CudaLayoutMode()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Anomaly Detection has been enabled")
        with cuda_functional(mode), torch.autograd.set_detect_anomaly(True, check_nan=False), mode:
            with autocast("cpu", "bf16"):
                loss = subject.loss(video)
            loss.backward()
    return mode


def copy_class(event: CopyEvent) -> str:
    """``dtype_casts`` (``_to_copy``), ``cat`` (a copy by nature) or ``layout_copies`` (the rest)."""
    if event.kind.startswith("_to_copy"):
        return "dtype_casts"
    return "cat" if event.kind.startswith("cat") else "layout_copies"


def total(events: Sequence[CopyEvent]) -> dict[str, float]:
    """How many ``events`` and the gigabytes they move."""
    return {"events": len(events), "gb": sig(sum(e.bytes for e in events) / 1e9)}


def top_sites(copies: Sequence[CopyEvent], top: int) -> list[dict[str, Any]]:
    """The ``top`` (copy kind, phase, site, layouts) groups that move the most bytes."""
    groups: dict[tuple[str, str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for event in copies:
        group = groups[(event.kind, event.phase, event.site, event.layouts)]
        group[0] += 1
        group[1] += event.bytes
    ranked = sorted(groups.items(), key=lambda item: -item[1][1])[:top]
    return [{"op": kind, "phase": phase, "site": site, "layouts": layouts, "count": count, "gb": sig(moved / 1e9)}
            for (kind, phase, site, layouts), (count, moved) in ranked]  # fmt: skip


def summarise(mode: CudaLayoutMode, top: int) -> dict[str, Any]:
    """The convolutions' layouts and the copies' totals of one recorded step."""
    forward = [c for c in mode.convs if c.phase == "fwd"]
    backward = [c for c in mode.convs if c.phase == "bwd"]
    by_class: dict[str, list[CopyEvent]] = defaultdict(list)
    for event in mode.copies:
        by_class[copy_class(event)].append(event)
    internal = mode.cudnn_internal
    return {
        "convolutions": {"forward": len(forward), "backward": len(backward)},
        "cudnn_formats": {"forward": dict(Counter(c.cudnn_format for c in forward)),
                          "backward": dict(Counter(c.cudnn_format for c in backward))},
        "conv_input_layouts": dict(Counter(c.input for c in forward)),
        "conv_weight_layouts": dict(Counter(c.weight for c in forward)),
        "conv_grad_output_layouts": dict(Counter(c.grad_output for c in backward)),
        "rms_norms": dict(mode.rms_norms),
        **{name: total(by_class[name]) for name in ("layout_copies", "dtype_casts", "cat")},
        "slice_backward_zero_fills": {"events": len(mode.zero_fills), "gb": sig(sum(mode.zero_fills) / 1e9)},
        "cudnn_internal_transposes": {d: {"count": internal[d], "gb": sig(internal[d + "_bytes"] / 1e9)}
                                      for d in ("nchw_to_nhwc", "nhwc_to_nchw")},
        "copy_kernel_launches": sum(1 for c in mode.copies if c.op != "cat"),
        "top_sites": top_sites(mode.copies, top),
    }  # fmt: skip


def layout_copies(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """The JSON record of one model (``--channels-last`` applies to vtok only)."""
    with FakeTensorMode():
        subject = build_subject(name, args)
        subject.check(args.frames, args.size)
        channels_last = args.channels_last and subject.is_vtok
        if channels_last:
            from vtok.training.speed import apply_speed_options  # vtok.training imports lightning: only when used

            apply_speed_options(subject.module, channels_last=True)
        video = torch.rand(args.batch_size, 3, args.frames, args.size, args.size) * 2 - 1
        mode = trace_step(subject, video)
    return {
        "benchmark": "layout_copies", "model": subject.name, "params_m": round(subject.parameters / 1e6, 2),
        "frames": args.frames, "size": args.size, "batch_size": args.batch_size, "precision": "bf16",
        "channels_last": channels_last, **summarise(mode, args.top), "tiny": args.tiny, "overrides": subject.overrides,
    }  # fmt: skip


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--channels-last", action="store_true", help="vtok in channels-last-3d memory format")
    parser.add_argument("--top", type=int, default=10, help="copy sites listed, the most bytes first")
    add_model_args(parser, baselines="")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    measure_each_model_here(parse_args(argv), layout_copies)


if __name__ == "__main__":
    main()
