"""The models the benchmarks compare, behind one interface: a vtok preset and diffusers' video VAEs
(Wan 2.1, CogVideoX, LTX-Video) built from their default configs, and VidTok's FSQ tokenizer
(``AutoencoderVidTok``) from its released FSQ-262,144 4x8x8 config, all with random weights.

Every model trains on the same objective: per-pixel L1 plus its bottleneck's own term, weighted as
vtok weighs it (KL 1e-6 for the Gaussian VAEs, summed over latent elements and averaged over the
batch; entropy and commitment for GQ; nothing for FSQ, VidTok's included: diffusers' FSQ has no
entropy term, which VidTok's own training adds). Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from benchmarks.common import child_argv, emit, resolve_run_args, run_isolated, setup_logging, split_list
from vtok import VideoAutoencoder
from vtok.losses import AutoencoderLoss
from vtok.losses.objective import DEFAULT_BOTTLENECK_WEIGHTS
from vtok.vae import Compression
from vtok.vae.gaussian import GaussianBottleneck

# name -> (diffusers class, (temporal, spatial) compression of its default config)
BASELINES: dict[str, tuple[str, tuple[int, int]]] = {
    "wan": ("AutoencoderKLWan", (4, 8)),
    "cogvideox": ("AutoencoderKLCogVideoX", (4, 8)),
    "ltx": ("AutoencoderKLLTXVideo", (8, 32)),
    "vidtok": ("AutoencoderVidTok", (4, 8)),
}
# Arguments that differ from the diffusers class's defaults: VidTok's FSQ-262,144 causal 4x8x8 tokenizer
# (microsoft/VidTok configs/vidtok_fsq_causal_488_262144.yaml: z 6 channels of 8 levels; ch 128,
# ch_mult [1, 2, 4, 4] and 2 blocks per level are diffusers' defaults; 157 M parameters).
BASELINE_CONFIGS: dict[str, dict[str, Any]] = {"vidtok": {"regularizer": "fsq", "z_channels": 6, "double_z": False}}
# Test-size widths (``--tiny``): the same architectures, narrow enough for CI on a CPU.
TINY: dict[str, dict[str, Any]] = {
    "vtok": {"block_out_channels": [16, 32], "latent_channels": 8},
    "wan": {"base_dim": 16, "z_dim": 8, "num_res_blocks": 1},
    "cogvideox": {"block_out_channels": (32, 32, 32, 32), "latent_channels": 8, "layers_per_block": 1},
    "ltx": {"block_out_channels": (16, 32, 64, 64), "decoder_block_out_channels": (16, 32, 64, 64),
            "layers_per_block": (1, 1, 1, 1, 1), "decoder_layers_per_block": (1, 1, 1, 1, 1), "latent_channels": 16},
    "vidtok": {"ch": 16, "num_res_blocks": 1},
}  # fmt: skip
DEFAULT_CONFIG = "configs/kl_4x8x8.yaml"

log = logging.getLogger("benchmarks.models")


def add_model_args(parser: argparse.ArgumentParser, baselines: str = "wan,cogvideox,ltx") -> None:
    """``--config --set --baselines --tiny`` (and the internal ``--only``)."""
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="vtok preset; its model.autoencoder section is built")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a field of the preset's autoencoder, e.g. --set 'block_out_channels=[64,128]'")  # fmt: skip
    parser.add_argument("--baseline-set", action="append", default=[], metavar="KEY=VALUE",
                        help="override an argument of every baseline's diffusers class, e.g. --baseline-set base_dim=40 "
                             "(to compare both architectures scaled down alike)")  # fmt: skip
    parser.add_argument("--baselines", default=baselines, help=f"comma-separated, of {','.join(BASELINES)} ('' for none)")
    parser.add_argument("--tiny", action="store_true", help="test-size widths for every model (CI smoke runs)")
    parser.add_argument("--only", default=None, help="measure this one model here (vtok or a baseline name)")


def load_preset(path: str | Path, tiny: bool = False, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The ``model.autoencoder`` section of a preset, with the test-size widths when ``tiny``, then
    ``KEY=VALUE`` overrides (YAML values)."""
    config = yaml.safe_load(Path(path).read_text())["model"]["autoencoder"]
    return {**config, **(TINY["vtok"] if tiny else {}), **parse_overrides(overrides)}


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["KEY=VALUE", ...]`` -> ``{KEY: VALUE}``, each value read as YAML (``[64,128]``, ``40``, ``true``)."""
    parsed = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"overrides take KEY=VALUE, got {item!r}")
        parsed[key.strip()] = yaml.safe_load(value)
    return parsed


def preset_name(path: str | Path) -> str:
    return Path(path).stem


@dataclass
class Subject:
    """One model under measurement.

    Args:
        name: ``vtok:<preset>`` or a baseline's name.
        module: the network.
        compression: ``(temporal, spatial)`` factors.
        discrete: whether it tokenizes.
        overrides: the ``KEY=VALUE`` changes to its default architecture (``--set`` for vtok,
            ``--baseline-set`` for a baseline), recorded with its numbers.
    """

    name: str
    module: nn.Module
    compression: tuple[int, int]
    discrete: bool = False
    overrides: Sequence[str] = ()

    @property
    def is_vtok(self) -> bool:
        return isinstance(self.module, VideoAutoencoder)

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.module.parameters())

    def check(self, frames: int, size: int) -> None:
        """``ValueError`` naming valid sizes when a clip does not fit this model's compression (or,
        for CogVideoX, whose decoder rebuilds frames from an odd number of latent frames, its clips of 1 + 8k frames)."""
        Compression(*self.compression).check_clip(frames, size, size)
        if self.name == "cogvideox" and (frames - 1) % 8:
            below = frames - 1 - (frames - 1) % 8
            raise ValueError(
                f"CogVideoX's decoder rebuilds clips of 1 + 8k frames only (an odd number of latent frames), got "
                f"frames={frames}; use {below + 1} or {below + 9}"
            )

    @property
    def is_vidtok(self) -> bool:
        """VidTok's tokenizer, which runs whole through its ``forward``: that pads the clip's causal past
        (its ``encode`` alone does not) and quantizes with FSQ."""
        return type(self.module).__name__ == "AutoencoderVidTok"

    def loss(self, video: torch.Tensor) -> torch.Tensor:
        """L1 plus the bottleneck's own weighted term, for one batch."""
        if self.is_vtok:
            return _VTOK_LOSS(video, self.module(video))["loss"]
        if self.is_vidtok:  # FSQ: L1 alone, as for vtok's FSQ presets
            return (self.module(video).sample.float() - video.float()).abs().mean()
        posterior = self.module.encode(video).latent_dist
        reconstruction = self.module.decode(posterior.sample()).sample
        l1 = (reconstruction.float() - video.float()).abs().mean()
        # vtok's own KL (per pixel value, log-variance bounded as diffusers bounds it) on the baseline's posterior
        features = torch.cat([posterior.mean, posterior.logvar], dim=1)
        kl = GaussianBottleneck(posterior.mean.shape[1])(features, sample=False, pixel_values=video[0].numel()).losses["kl"]
        return l1 + DEFAULT_BOTTLENECK_WEIGHTS["kl"] * kl

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """Deterministic latents (the posterior mean, or quantized codes)."""
        if self.is_vtok:
            return self.module.encode(video)
        if self.is_vidtok:
            return self.module(video, encoder_mode=True)[0]
        return self.module.encode(video).latent_dist.mode()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        if self.is_vtok or self.is_vidtok:  # VidTok's decode returns the frames themselves
            return self.module.decode(latents)
        return self.module.decode(latents).sample

    def tokenize(self, video: torch.Tensor) -> torch.Tensor:
        if self.is_vidtok:
            return self.module(video, encoder_mode=True)[1]
        return self.module.tokenize(video)


_VTOK_LOSS = AutoencoderLoss()  # L1 and the published bottleneck weights, no LPIPS


def build_subject(name: str, args: argparse.Namespace) -> Subject:
    """``"vtok"`` (the preset ``args.config`` with ``args.set``) or a baseline name (its diffusers
    defaults with ``args.baseline_set``), with ``args.tiny`` widths first when set; random weights,
    in train mode, on the CPU."""
    torch.manual_seed(0)
    if name == "vtok" or name.startswith("vtok:"):
        model = VideoAutoencoder(**load_preset(args.config, args.tiny, args.set))
        compression = (model.compression.temporal, model.compression.spatial)
        return Subject(f"vtok:{preset_name(args.config)}", model, compression, model.is_discrete, args.set)
    if name not in BASELINES:
        raise ValueError(f"unknown model {name!r}; choose vtok or one of {', '.join(BASELINES)}")
    import diffusers

    class_name, compression = BASELINES[name]
    config = {**BASELINE_CONFIGS.get(name, {}), **(TINY[name] if args.tiny else {}), **parse_overrides(args.baseline_set)}
    model = getattr(diffusers, class_name)(**config)
    if name == "vidtok" and model.regularizer != "fsq":
        raise ValueError("the vidtok baseline is VidTok's FSQ tokenizer: its KL loss is not implemented here")
    return Subject(name, model, compression, discrete=name == "vidtok", overrides=args.baseline_set)


def model_list(args: argparse.Namespace) -> list[str]:
    """``["vtok", *baselines]`` (checked), the models one run compares."""
    names = split_list(args.baselines)
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise SystemExit(f"unknown baselines {unknown}; choose from {', '.join(BASELINES)}")
    return ["vtok", *names]


def run_per_model(module: str, argv: Sequence[str], args: argparse.Namespace,
                  measure: Callable[[str, argparse.Namespace], dict[str, Any]]) -> None:  # fmt: skip
    """A benchmark's ``main``: without ``--only``, runs ``python -m module`` once per model of
    :func:`model_list`, each in its own process; with it, measures that model here."""
    setup_logging()
    if args.only is None:
        run_isolated(module, child_argv(argv), model_list(args))
        return
    resolve_run_args(args)
    log.info("%s %s: %dx%dx%d clips, batch %d, %s on %s", module, args.only, args.frames, args.size, args.size,
             args.batch_size, args.precision, args.device)  # fmt: skip
    emit(measure(args.only, args))


def measure_each_model_here(args: argparse.Namespace, measure: Callable[[str, argparse.Namespace], dict[str, Any]]) -> None:
    """A fake-tensor benchmark's ``main``: every model of :func:`model_list` (or ``--only`` one),
    one after another in this process (nothing is allocated, so none skews the next)."""
    setup_logging()
    for name in [args.only] if args.only else model_list(args):
        log.info("%s on fake tensors", name)
        emit(measure(name, args))
