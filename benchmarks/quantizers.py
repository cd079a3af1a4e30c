"""The quantizers' cost: vtok's FSQ and GroupLFQ (GQ) against vector-quantize-pytorch's FSQ and LFQ
at 2^16 and 2^18 codes, their share of a full training step of the matching preset, and the
memory of GQ's entropy loss against single-group LFQ.

Every quantizer runs forward and backward (its codes' mean square plus its own weighted losses)
on latents of the preset's shape for the clip (``[B, d, 1 + (T-1)/4, S/8, S/8]``). Sizes:
FSQ levels ``[8, 8, 8, 8, 4, 4]`` (2^16) and ``[8] * 6`` (2^18); GQ 16 bits in 2 groups and 18
bits in 3 groups (the gq preset); LFQ over the whole codebook (one group), entropy weight 0.1,
commitment 0.25, temperature 0.01 for both. ``tensor_peak_bytes`` is the peak of the tensors one
forward + backward creates (counted by ``benchmarks.common.TensorMemory``, any device); the
``gq_loss_memory`` lines count it on fake tensors at the run's size and at 17x256x256, batch 2
(which needs no memory at all that way). The share of a step times the preset's whole bottleneck (projections
included) against ``benchmarks.train_step`` on the same preset and clip, run eagerly in its own process
(``share_of_step``). The presets train with encoder and decoder compiled on a GPU (the bottleneck stays
eager), which no time slot here holds: ``--step-json`` reads the step from a compiled run's line instead
(``benchmarks.train_step --compile``, e.g. ``gpu_suite.sh a``'s ``train_step.jsonl``) and adds
``share_of_compiled_step``. A line of the same preset is used where there is one, else one of another
preset at the same clip size (the shipped 4x8x8 presets share encoder and decoder; their bottlenecks
differ, so over the kl preset's step, whose Gaussian bottleneck costs less, the share errs high).

    python -m benchmarks.quantizers                        # CPU: 9x32x32 clips, batch 1
    python -m benchmarks.quantizers --device cuda          # 17x256x256, batch 2, bf16
    python -m benchmarks.quantizers --device cuda --step-json OUT/train_step.jsonl
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from vector_quantize_pytorch import FSQ as ReferenceFSQ
from vector_quantize_pytorch import LFQ as ReferenceLFQ

from benchmarks.common import (
    FULL, GIB, PeakMemory, TensorMemory, add_run_args, autocast, emit, environment, resolve_run_args, run_isolated,
    setup_logging, sig, split_list, time_steps, warm_up,
)  # fmt: skip
from benchmarks.models import load_preset, preset_name
from vtok import VideoAutoencoder
from vtok.losses.objective import DEFAULT_BOTTLENECK_WEIGHTS
from vtok.tokenizers import FSQ, GroupLFQ
from vtok.vae import Compression

log = logging.getLogger("benchmarks.quantizers")

FSQ_LEVELS = {16: [8, 8, 8, 8, 4, 4], 18: [8] * 6}
GQ_GROUPS = {16: 2, 18: 3}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(parser, full={"steps": 20, "warmup": 5})
    parser.add_argument("--bits", default="16,18", help="log2 of the codebook sizes")
    parser.add_argument("--presets", default="configs/fsq_4x8x8.yaml,configs/gq_4x8x8.yaml",
                        help="presets whose training step the bottleneck's share is taken of ('' to skip)")  # fmt: skip
    parser.add_argument("--tiny", action="store_true", help="test-size widths for the presets' training steps")
    parser.add_argument("--full-size-memory", action=argparse.BooleanOptionalAction, default=True,
                        help="also count GQ's and LFQ's loss memory at 17x256x256, batch 2 (fake tensors)")  # fmt: skip
    parser.add_argument("--step-json", default=None, metavar="FILE",
                        help="benchmarks.train_step's JSON lines with a compiled vtok step (--compile) at this run's "
                             "clip size: each bottleneck's share of that step too")  # fmt: skip
    return parser.parse_args()


def quantizers(bits: int) -> dict[str, nn.Module]:
    """The four quantizers compared at a codebook of ``2^bits`` codes."""
    levels = FSQ_LEVELS[bits]
    return {
        "vtok_fsq": FSQ(levels),
        "vqp_fsq": ReferenceFSQ(levels, dim=len(levels), channel_first=True),
        "vtok_gq": GroupLFQ(bits, GQ_GROUPS[bits]),
        "vqp_lfq": reference_lfq(bits),
    }


def reference_lfq(bits: int) -> nn.Module:
    """vector-quantize-pytorch's LFQ over all ``2^bits`` codes (one group), with vtok's loss weights."""
    return ReferenceLFQ(codebook_size=2**bits, dim=bits, entropy_loss_weight=DEFAULT_BOTTLENECK_WEIGHTS["entropy"],
                        commitment_loss_weight=DEFAULT_BOTTLENECK_WEIGHTS["commitment"])  # fmt: skip


def objective(quantizer: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """Codes' mean square plus the quantizer's own weighted losses (vtok's weights for both libraries)."""
    out = quantizer(z)
    if isinstance(out, tuple):  # vector-quantize-pytorch: (codes, indices[, aux loss])
        codes, aux = out[0], (out[2] if len(out) > 2 else 0.0)
        return codes.float().square().mean() + aux
    if hasattr(out, "latents"):  # vtok's bottleneck module: projections around the quantizer
        codes, losses = out.latents, out.losses
    else:
        codes, losses = out.codes, out.losses
    return codes.float().square().mean() + sum(DEFAULT_BOTTLENECK_WEIGHTS[k] * v for k, v in losses.items())


def latent_shape(args: argparse.Namespace, channels: int, compression: Compression) -> tuple[int, ...]:
    return (args.batch_size, channels, *compression.latent_shape(args.frames, args.size, args.size))


def step_fn(quantizer: nn.Module, shape: tuple[int, ...], args: argparse.Namespace) -> Callable[[], None]:
    z = torch.randn(shape, device=args.device, requires_grad=True)

    def step() -> None:
        with autocast(args.device, args.precision):
            loss = objective(quantizer, z)
        loss.backward()
        z.grad = None
        quantizer.zero_grad(set_to_none=True)

    return step


def tensor_peak(fn: Callable[[], None]) -> int:
    with TensorMemory() as memory:
        fn()
    return memory.peak


def measure(name: str, quantizer: nn.Module, shape: tuple[int, ...], args: argparse.Namespace) -> dict[str, object]:
    quantizer.to(args.device)
    step = step_fn(quantizer, shape, args)
    try:
        peak = tensor_peak(step)
        warm_up(step, args.warmup, args.device)
        with PeakMemory(args.device) as memory:
            seconds = time_steps(step, args.steps, args.device)
    except torch.OutOfMemoryError as error:
        return {"quantizer": name, "error": f"out of memory: {str(error).splitlines()[0]}"}
    finally:  # hand the cached blocks back (LFQ at 2^18 leaves ~70 GiB), so the next one or a child process finds them
        del step
        if torch.device(args.device).type == "cuda":
            torch.cuda.empty_cache()
    return {"quantizer": name, "ms_per_step": sig(seconds * 1e3), "tensor_peak_bytes": peak, **memory.record()}


def gq_loss_memory(bits: int, positions_shape: tuple[int, ...]) -> dict[str, object]:
    """Peak tensor memory of GQ's and single-group LFQ's forward + backward at ``2^bits``, on fake tensors."""
    peaks = {}
    for name, make in (("gq", lambda: GroupLFQ(bits, GQ_GROUPS[bits])), ("lfq", lambda: reference_lfq(bits))):
        with FakeTensorMode():
            quantizer = make()
            z = torch.randn(positions_shape[0], bits, *positions_shape[1:], requires_grad=True)
            peaks[name] = tensor_peak(lambda: objective(quantizer, z).backward())
    return {
        "benchmark": "gq_loss_memory", "codes": 2**bits, "groups": GQ_GROUPS[bits], "latent_positions": math.prod(positions_shape),
        "gq_gib": sig(peaks["gq"] / GIB), "single_group_lfq_gib": sig(peaks["lfq"] / GIB),
        "lfq_over_gq": sig(peaks["lfq"] / peaks["gq"]), "counted_on": "fake tensors (fp32)",
    }  # fmt: skip


def train_step(preset: str, args: argparse.Namespace) -> dict[str, object]:
    """``benchmarks.train_step``'s record of ``preset`` at the run's size (``error`` when it failed)."""
    argv = ["--config", preset, "--baselines", "", "--device", args.device, "--precision", args.precision,
            "--frames", str(args.frames), "--size", str(args.size), "--batch-size", str(args.batch_size),
            "--steps", str(args.steps), "--warmup", str(args.warmup), *(["--tiny"] if args.tiny else []),
            *(["--threads", str(args.threads)] if args.threads else [])]  # fmt: skip  (the share compares like with like)
    # not echoed: the step's line is no record of this benchmark; the share line carries its figure (or error)
    return run_isolated("benchmarks.train_step", argv, ["vtok"], echo=False)[-1]


def compiled_step(path: str, preset: str, args: argparse.Namespace) -> dict[str, object]:
    """The compiled vtok training step in ``path`` (``benchmarks.train_step`` lines) measured at this run's
    clip size, precision, widths and device, ``preset``'s where there is one, else another preset's:
    ``{"compiled_train_step_seconds", "compiled_step_of"}``, or ``{"compiled_step_error"}``."""
    wanted = {"frames": args.frames, "size": args.size, "batch_size": args.batch_size, "precision": args.precision,
              "tiny": args.tiny, "overrides": []}  # fmt: skip
    device = environment(args)["device"]
    try:
        lines = [json.loads(line) for line in Path(path).read_text().splitlines() if line.startswith("{")]
    except (OSError, ValueError) as error:
        return {"compiled_step_error": f"cannot read {path}: {error}"}
    fits = [r for r in lines if r.get("benchmark") == "train_step" and r.get("compile") and "error" not in r
            and str(r.get("model", "")).startswith("vtok:") and r.get("device") == device
            and not r.get("activation_checkpointing") and all(r.get(k) == v for k, v in wanted.items())]  # fmt: skip
    if not fits:
        clip = f"{args.frames}x{args.size}x{args.size}, batch {args.batch_size}, {args.precision}, tiny={args.tiny}"
        return {"compiled_step_error": f"no compiled vtok train_step line in {path} at {clip} on {device}"}
    own = [r for r in fits if r["model"] == f"vtok:{preset_name(preset)}"]
    record = (own or fits)[-1]  # the latest, where a file holds several runs
    return {"compiled_train_step_seconds": record["seconds_per_step"], "compiled_step_of": record["model"]}


def share_of_step(preset: str, args: argparse.Namespace, common: dict[str, object]) -> dict[str, object]:
    config = load_preset(preset, args.tiny)
    torch.manual_seed(0)
    bottleneck = VideoAutoencoder(**config).quantizer
    row = measure("vtok_bottleneck", bottleneck, latent_shape(args, bottleneck.input_channels, Compression(
        config.get("temporal_compression", 4), config.get("spatial_compression", 8))), args)  # fmt: skip
    step_record = train_step(preset, args)
    step = step_record.get("seconds_per_step")
    record = {"benchmark": "quantizer_share", "preset": preset_name(preset), **row, "train_step_seconds": step,
              "train_step_threads": step_record.get("threads"),
              **({"train_step_error": step_record["error"]} if "error" in step_record else {}),
              "share_of_step": share(row, step), "tiny": args.tiny, **common}  # fmt: skip
    if args.step_json:
        compiled = compiled_step(args.step_json, preset, args)
        record.update(compiled, share_of_compiled_step=share(row, compiled.get("compiled_train_step_seconds")))
    return record


def share(row: dict[str, object], step_seconds: float | None) -> float | None:
    """The bottleneck's time (``row``'s ``ms_per_step``) over a step's, or ``None`` where either is missing."""
    if step_seconds is None or "ms_per_step" not in row:
        return None
    return sig(row["ms_per_step"] / 1e3 / step_seconds)


def main() -> None:
    args = resolve_run_args(parse_args())
    setup_logging()
    compression = Compression(4, 8)
    common = {"frames": args.frames, "size": args.size, "batch_size": args.batch_size, **environment(args)}
    # the steps first, while this process holds next to no device memory: the step runs in a child
    # process on the same GPU, which the quantizers below (LFQ at 2^18: ~70 GiB) would crowd out
    for preset in split_list(args.presets):
        log.info("share of a %s training step", preset_name(preset))
        emit(share_of_step(preset, args, common))
    for bits in (int(b) for b in split_list(args.bits)):
        for name, quantizer in quantizers(bits).items():
            channels = bits if "gq" in name or "lfq" in name else len(FSQ_LEVELS[bits])
            log.info("%s at 2^%d codes", name, bits)
            row = measure(name, quantizer, latent_shape(args, channels, compression), args)
            emit({"benchmark": "quantizer", "codes": 2**bits, **row, **common})
        if bits in GQ_GROUPS:  # at this run's size, and at the issue's (fake tensors need no memory)
            full = [(FULL["frames"], FULL["size"], FULL["batch_size"])] if args.full_size_memory else []
            for sizes in sorted({(args.frames, args.size, args.batch_size), *full}):
                shape = (sizes[2], *compression.latent_shape(sizes[0], sizes[1], sizes[1]))
                clip = {"frames": sizes[0], "size": sizes[1], "batch_size": sizes[2]}
                emit({**gq_loss_memory(bits, shape), **common, **clip})


if __name__ == "__main__":
    main()
