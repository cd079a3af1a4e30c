"""What a training step and inference cost, without a GPU: parameters, FLOPs per clip and the
estimated peak memory of one forward + backward, for a vtok preset and diffusers' video VAEs.

Every model is built and run on fake tensors (``torch._subclasses.FakeTensorMode``): shapes,
dtypes and every operator are real, no memory is allocated and nothing is computed, so the full
17x256x256 case runs in seconds on a CPU. FLOPs are counted by ``FlopCounterMode``; the peak is
that of the tensors alive at once (``benchmarks.common.TensorMemory``) plus the weights, under
bf16 autocast with CUDA's rules (CPU autocast, plus the normalisations in float32 as CUDA's
autocast runs them). Against the H100 figures measured for the baselines (REFERENCES.md: Wan 2.1
26.2 / 51.5 GiB at batch 1 / 2, CogVideoX 51.7 at batch 1, LTX-Video 4.5 / 6.6) it gives
26.0 / 51.4, 50.3 and 4.5 / 6.6 GiB. Also prints the clips/s each model would reach on an H100
at a given MFU (``--mfu``).

    python -m benchmarks.footprint                              # 17x256x256, batch 2, all models
    python -m benchmarks.footprint --set patch_size=2 --baselines wan
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensorMode

from benchmarks.common import (
    GIB, PEAK_BF16_TFLOPS, TensorMemory, autocast, count_flops, sig, split_list,
)  # fmt: skip
from benchmarks.models import add_model_args, build_subject, measure_each_model_here

H100 = dict(PEAK_BF16_TFLOPS)["H100"]


@contextmanager
def norms_in_float32() -> Iterator[None]:
    """CUDA's autocast runs layer, group and RMS norms in float32; the CPU's does not. Inside CPU
    autocast, this makes ``torch.nn.functional``'s norms follow CUDA's rule, so saved activations
    get CUDA's dtypes (patched functions, so checkpointing's recomputation in backward follows too)."""
    originals = {name: getattr(F, name) for name in ("rms_norm", "group_norm", "layer_norm")}

    def in_float32(norm: Callable) -> Callable:
        def run(*args: object, **kwargs: object) -> torch.Tensor:
            if not torch.is_autocast_enabled("cpu"):  # a norm that turned autocast off keeps its dtype
                return norm(*args, **kwargs)
            upcast = lambda v: v.float() if isinstance(v, torch.Tensor) and v.is_floating_point() else v  # noqa: E731
            with torch.autocast("cpu", enabled=False):
                return norm(*map(upcast, args), **{k: upcast(v) for k, v in kwargs.items()})

        return run

    for name, norm in originals.items():
        setattr(F, name, in_float32(norm))
    try:
        yield
    finally:
        for name, norm in originals.items():
            setattr(F, name, norm)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    parser.add_argument("--activation-checkpointing", action="store_true", help="vtok recomputes its stages in backward")
    parser.add_argument("--mfu", default="0.35,0.45", help="utilisations to predict H100 clips/s at")
    add_model_args(parser)
    return parser.parse_args()


def footprint(name: str, args: argparse.Namespace) -> dict[str, object]:
    # VidTok's FSQ reads a value when it is built, which a fake tensor cannot give: real weights (0.6 GB on
    # the CPU at 157 M), fake inputs and activations
    real = build_subject(name, args) if name == "vidtok" else None
    with FakeTensorMode(allow_non_fake_inputs=real is not None):
        subject = real or build_subject(name, args)
        subject.check(args.frames, args.size)
        if subject.is_vtok and args.activation_checkpointing:
            subject.module.enable_gradient_checkpointing()
        weights = sum(p.numel() * p.element_size() for p in subject.module.parameters())
        video = torch.rand(args.batch_size, 3, args.frames, args.size, args.size) * 2 - 1

        def train_step() -> None:
            with norms_in_float32():  # through backward too: checkpointing recomputes forward there
                with autocast("cpu", args.precision):
                    loss = subject.loss(video)
                loss.backward()

        with TensorMemory() as memory:  # a pass of its own: the FLOP counter's hooks hold tensors longer
            train_step()
        train = count_flops(train_step)
        with torch.no_grad(), autocast("cpu", args.precision), norms_in_float32():
            latents = subject.encode(video)
            encode = count_flops(lambda: subject.encode(video))
            decode = count_flops(lambda: subject.decode(latents))
    per_clip = train / args.batch_size
    return {
        "benchmark": "footprint", "model": subject.name, "params_m": round(subject.parameters / 1e6, 2),
        "frames": args.frames, "size": args.size, "batch_size": args.batch_size, "precision": args.precision,
        "train_tflop_per_clip": sig(per_clip / 1e12), "encode_tflop_per_clip": sig(encode / args.batch_size / 1e12),
        "decode_tflop_per_clip": sig(decode / args.batch_size / 1e12),
        "estimated_train_peak_gib": sig((memory.peak + weights) / GIB),
        "h100_clips_per_s_at_mfu": {m: sig(float(m) * H100 * 1e12 / per_clip) for m in split_list(args.mfu)},
        "activation_checkpointing": subject.is_vtok and args.activation_checkpointing, "tiny": args.tiny, "overrides": subject.overrides,
    }  # fmt: skip


def main() -> None:
    measure_each_model_here(parse_args(), footprint)


if __name__ == "__main__":
    main()
