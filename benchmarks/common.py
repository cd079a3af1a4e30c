"""What the benchmarks share: device, precision and size defaults, timing, peak memory, FLOPs and
MFU, one subprocess per model, and JSON lines on stdout.

Peak memory is the CUDA caching allocator's ``max_memory_allocated`` on a GPU and the growth of
the process's peak resident set (``VmHWM``, reset before the measurement) on a CPU. FLOPs come
from ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add counts 2); MFU divides the
achieved FLOP rate by the device's dense bf16 peak from :data:`PEAK_BF16_TFLOPS`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import IO, Any, ContextManager

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode
from torch.utils.weak import WeakIdKeyDictionary

log = logging.getLogger(__name__)

# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity), matched in order against the device name.
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.4),  # SXM and HBM3 parts
    ("H200 NVL", 835.0),  # 1,671 with sparsity on NVIDIA's sheet, as the H100 NVL
    ("H200", 989.4),  # SXM
    ("A100", 312.0),
)

# Clip sizes when none are given: what CI runs on a CPU, and the sizes on a GPU.
SMOKE = {"frames": 9, "size": 32, "batch_size": 1, "steps": 2, "warmup": 1}
FULL = {"frames": 17, "size": 256, "batch_size": 2, "steps": 10, "warmup": 3}

GIB = 2**30


def add_run_args(parser: argparse.ArgumentParser, full: dict[str, int] | None = None, timing: bool = True) -> None:
    """``--device --precision --frames --size --batch-size`` and (``timing``) ``--steps --warmup``;
    sizes left unset are filled by :func:`resolve_run_args` (``SMOKE`` on a CPU, ``full`` on CUDA)."""
    full = {**FULL, **(full or {})}
    if not timing:
        full = {k: v for k, v in full.items() if k not in ("steps", "warmup")}
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's; 1 on a shared CPU, where idle threads spin)")  # fmt: skip
    parser.add_argument("--precision", choices=["bf16", "fp32"], default=None,
                        help="bf16 autocast or fp32 (default: bf16 on CUDA, fp32 on CPU)")  # fmt: skip
    for name, help_text in (("frames", "frames per clip"), ("size", "height and width"), ("batch-size", "clips per step"),
                            ("steps", "timed steps"), ("warmup", "untimed steps first")):  # fmt: skip
        key = name.replace("-", "_")
        if key not in full:
            continue
        parser.add_argument(f"--{name}", type=int, default=None, help=f"{help_text} (CPU {SMOKE[key]}, CUDA {full[key]})")
    parser.set_defaults(_full_sizes=full)


def resolve_run_args(args: argparse.Namespace) -> argparse.Namespace:
    """Fills the device, precision and sizes left unset, from the device; sets ``--threads``."""
    if args.threads:
        torch.set_num_threads(args.threads)
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    on_cuda = torch.device(args.device).type == "cuda"
    args.precision = args.precision or ("bf16" if on_cuda else "fp32")
    for key in args._full_sizes:
        if getattr(args, key) is None:
            setattr(args, key, (args._full_sizes if on_cuda else SMOKE)[key])
    return args


def autocast(device: str, precision: str) -> ContextManager:
    """bf16 autocast on ``device`` for ``"bf16"``, nothing for ``"fp32"``."""
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def synchronize(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: str) -> str:
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()}, {len(os.sched_getaffinity(0))} cores usable"


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``'s, e.g. ``AMD EPYC 9654 96-Core Processor``), else the architecture."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        return f"{platform.processor() or platform.machine()} CPU"


def peak_tflops(device: str) -> float | None:
    """The device's dense bf16 peak in TFLOP/s, or ``None`` (a CPU, or a GPU not in the table)."""
    if torch.device(device).type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_TFLOPS if key in name), None)


def sig(value: float, digits: int = 4) -> float:
    """``value`` rounded to ``digits`` significant digits (figures that span many magnitudes)."""
    return float(f"{value:.{digits}g}")


def mfu(flops_per_s: float | None, peak: float | None) -> float | None:
    """Model FLOP utilisation: achieved FLOP/s over the peak (``None`` when either is unknown)."""
    if flops_per_s is None or peak is None:
        return None
    return round(flops_per_s / (peak * 1e12), 4)


def environment(args: argparse.Namespace) -> dict[str, Any]:
    """What every JSON line says about where and how it was measured."""
    return {"device": device_name(args.device), "precision": args.precision, "threads": torch.get_num_threads(),
            "torch": torch.__version__}  # fmt: skip


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of one call of ``fn`` (forward and backward, if ``fn`` runs both)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def _rss_bytes(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            line = next(line for line in status if line.startswith(field + ":"))
        return int(line.split()[1]) * 1024
    except (OSError, StopIteration):
        return None


class PeakMemory:
    """Peak memory of what runs inside ``with``: CUDA ``max_memory_allocated``, or on a CPU the
    growth of the peak resident set over the resident set at entry (``None`` where it cannot be
    read). ``kind`` says which."""

    def __init__(self, device: str) -> None:
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.kind = "cuda_max_memory_allocated" if self.cuda else "cpu_peak_rss_growth"
        self.bytes: int | None = None

    def __enter__(self) -> "PeakMemory":
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            try:  # "5" resets the peak resident set (VmHWM) to the current one (Linux)
                with open("/proc/self/clear_refs", "w") as handle:
                    handle.write("5")
            except OSError:
                pass
            self._start = _rss_bytes("VmRSS")
            self._ru_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return self

    def __exit__(self, *exc: object) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            self.bytes = torch.cuda.max_memory_allocated(self.device)
            return
        peak = _rss_bytes("VmHWM")
        if peak is None or self._start is None:
            peak, self._start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, self._ru_start
        self.bytes = max(peak - self._start, 0)

    def record(self) -> dict[str, Any]:
        return {"peak_memory_gib": None if self.bytes is None else sig(self.bytes / GIB), "memory_kind": self.kind}


def warm_up(step: Callable[[], Any], calls: int, device: str) -> None:
    """Untimed calls (compilation, cuDNN's algorithm search, allocator growth)."""
    for _ in range(calls):
        step()
    synchronize(device)


def time_steps(step: Callable[[], Any], steps: int, device: str) -> float:
    """Seconds per call of ``step``, averaged over ``steps`` calls."""
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return (time.perf_counter() - start) / max(steps, 1)


class TensorMemory(TorchDispatchMode):
    """Peak bytes of the tensors created while active (alive at the same time), on any device and
    for fake tensors too, so a step's memory can be estimated without running it. Tensors that
    existed before (parameters) are not counted.

    Args:
        kind: names the kind of each operator's outputs (``kind(func)``); then ``peak_by_kind``
            splits the peak by kind. ``None``: one kind.
    """

    def __init__(self, kind: Callable[[Any], str] | None = None) -> None:
        super().__init__()
        self.kind = kind or (lambda func: "all")
        self.current = self.peak = 0
        self.peak_by_kind: dict[str, int] = {}
        self._live: dict[str, int] = defaultdict(int)
        self._sizes: WeakIdKeyDictionary = WeakIdKeyDictionary()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor):
                storage = tensor.untyped_storage()
                if storage not in self._sizes:
                    self._sizes[storage] = size = storage.nbytes()
                    kind = self.kind(func)
                    self.current += size
                    self._live[kind] += size
                    if self.current > self.peak:
                        self.peak, self.peak_by_kind = self.current, dict(self._live)
                    weakref.finalize(storage, self._release, kind, size)
        return out

    def _release(self, kind: str, size: int) -> None:
        self.current -= size
        self._live[kind] -= size


# Operators that read a device value on the host, or whose output shape depends on the data
# (which needs the values on the host first): each is a host-device synchronisation on a GPU.
SYNCING_OPS = frozenset({
    "_local_scalar_dense", "_unique2", "unique_dim", "unique_consecutive", "nonzero", "masked_select",
    "bincount", "histc", "repeat_interleave", "_assert_async",
})  # fmt: skip


class SyncCounter(TorchDispatchMode):
    """Counts the operators in :data:`SYNCING_OPS` (``.item()``, ``bool(tensor)``,
    ``torch.unique``, boolean indexing, ...) that run while active. On a CPU this finds, without a
    GPU, the places where a GPU run would wait for the device to answer a value; copies to the host
    (``.cpu()``, ``.tolist()``, ``torch.equal``) are not among them (none runs in a measured step:
    checked by reading). ``calls`` lists each as
    ``(operator, "file:line")`` of the Python code that ran it.

    Args:
        ignore: substrings of file paths whose calls are not counted, for values that live on
            the host on a GPU run too (e.g. ``"torch/optim/"``: the optimizers' step counters).
    """

    def __init__(self, ignore: Sequence[str] = ()) -> None:
        super().__init__()
        self.ignore = tuple(ignore)
        self.calls: list[tuple[str, str]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        name = func.overloadpacket.__name__
        if name in SYNCING_OPS or (name == "index" and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] if len(args) > 1 else ())
        )):  # fmt: skip
            where = _caller()
            if not any(part in where for part in self.ignore):
                self.calls.append((name, where))
        return func(*args, **(kwargs or {}))

    @property
    def count(self) -> int:
        return len(self.calls)


def _caller() -> str:
    """``file:line`` of the innermost Python frame outside this file and torch's dispatch machinery."""
    frame = sys._getframe(2)
    while frame is not None and (
        frame.f_code.co_filename.endswith(("common.py", "_python_dispatch.py", "_ops.py", "_compile.py"))
        or "torch/_dynamo/" in frame.f_code.co_filename
    ):
        frame = frame.f_back
    return f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame is not None else "?"


def emit(record: dict[str, Any]) -> None:
    """One JSON line on stdout."""
    print(json.dumps(record), flush=True)


class Terminated(Exception):
    """SIGTERM reached this process while it ran a child (``timeout`` signals its whole process group:
    this process and the child alike)."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(signal.Signals(signum).name)


def _copy_stderr(stream: IO[str], tail: deque[str]) -> None:
    """Copies a child's stderr to this process's stderr line by line as it comes (so a log file gets a
    child's warnings and tracebacks, and keeps them if this process is killed), its last lines into ``tail``."""
    for line in stream:
        sys.stderr.write(line)
        sys.stderr.flush()
        tail.append(line)


def _failure(returncode: int | None, tail: Sequence[str], terminated: str | None) -> str:
    """One line saying why a child gave no record: the start of its last stderr line (where torch's out-of-memory
    message says so; its advice follows), with how it ended when that was a signal."""
    last = next((line.strip() for line in reversed(tail) if line.strip()), "")[:300]
    if terminated:
        why = f"{terminated} reached the benchmark while this model ran (a timeout?)"
    elif returncode is not None and returncode < 0:
        why = f"killed by {signal.Signals(-returncode).name}"
    else:
        return last or f"exit status {returncode}"
    return f"{why}; last stderr line: {last}" if last else why


def _run_child(command: Sequence[str], echo: bool) -> tuple[list[str], deque[str], int | None, str | None]:
    """Runs ``command``: its JSON lines on stdout are collected (and printed as they come when ``echo``),
    everything else it writes goes on to this process's stderr as it comes. Returns the JSON lines, the
    last lines of its stderr, its exit status, and the signal's name when SIGTERM reached this process
    first (the child is then ended and its exit status not waited for past a few seconds)."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    tail: deque[str] = deque(maxlen=50)
    copier = threading.Thread(target=_copy_stderr, args=(process.stderr, tail), daemon=True)
    copier.start()
    lines: list[str] = []
    terminated = None
    try:
        for line in process.stdout:
            if not line.startswith("{"):
                sys.stderr.write(line)  # stdout carries records only
                continue
            lines.append(line.rstrip("\n"))
            if echo:
                print(lines[-1], flush=True)
        process.wait()
    except Terminated as signal_name:
        terminated = str(signal_name)
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
    copier.join(timeout=5)
    return lines, tail, process.returncode, terminated


def run_isolated(module: str, argv: Sequence[str], models: Sequence[str], echo: bool = True) -> list[dict[str, Any]]:
    """Runs ``python -m module *argv --only MODEL`` once per model, one process each (so one
    model's memory, allocator state or compiled kernels never affect the next), and returns the
    JSON lines each prints. A process that fails gives ``{"model": ..., "error": ...}``. Each child's
    stderr reaches this process's stderr as it is written, and its records are printed as they come;
    on SIGTERM (a ``timeout``) this process records the error for the model that was running and exits
    with status 143.

    Args:
        echo: re-emit every returned line on stdout, as this process's own records (``False``
            where the caller only uses a figure from them, which must not read as a record of its own).
    """
    records = []
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if main_thread else None
    try:
        for model in models:
            log.info("%s: %s in its own process", module, model)
            command = [sys.executable, "-m", module, *argv, "--only", model]
            lines, tail, returncode, terminated = _run_child(command, echo)
            records.extend(json.loads(line) for line in lines)
            if returncode != 0 or not lines:
                record = {"benchmark": module.rsplit(".", 1)[-1], "model": model, "arguments": list(argv),
                          "error": _failure(returncode, tail, terminated)}  # which sizes and batch failed  # fmt: skip
                records.append(record)
                if echo:
                    emit(record)
                else:
                    log.error("%s %s: %s", module, model, record["error"])
            if terminated:
                raise SystemExit(128 + signal.SIGTERM)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    return records


def child_argv(argv: Sequence[str]) -> list[str]:
    """The command line without ``--only X`` (what a parent passes on to its per-model children)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--only":
            skip = True
        elif not arg.startswith("--only="):
            out.append(arg)
    return out


def split_list(text: str) -> list[str]:
    """``"a,b, c"`` -> ``["a", "b", "c"]``; empty items dropped."""
    return [item.strip() for item in text.split(",") if item.strip()]


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
