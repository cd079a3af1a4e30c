"""The two decoder techniques of #8 measured at a fixed small budget (labelled: small models, few steps).

(i)  LTX-Video's denoising decoder: two 8x32x32 KL models with the ``ltx_8x32x32`` layout
     (patchify 4, non-causal decoder, narrower), one with ``decoder_timestep_conditioning`` and
     one without, trained identically; both then decode latents noised to t = 0.05 and 0.2
     (z_t = (1 - t)·z + t·ε, the same ε for both), the conditioned one told t, the plain one not.
     The latents' standard deviation is reported beside them: noise of level t matters relative
     to it (LTX-Video noises normalised latents).
(ii) WeTok's generative decoder: an 8x32x32 GQ model with noise channels (the ``gq_8x32x32_gd``
     layout, narrower) trained in stage 1 (L1 + the quantizer's terms), then stage 2 from it with
     the encoder and quantizer frozen and the adversarial objective on (``gq_8x32x32_gd_stage2``),
     for the same number of steps; stage 1 continued without the GAN for those steps is the control.
     Decoded with zero noise (the deterministic default) and with a seeded noise sample.

Both stages train through vtok's own ``AutoencoderModule`` and Lightning ``Trainer``. Reported:
PSNR, the high-frequency energy ratio (reconstruction over original above half the Nyquist
frequency: blur drives it below 1) and LPIPS when the VGG16 weights are in the torch hub cache.
One JSON line per measurement.

    python -m benchmarks.decoders                              # the recorded CPU figures (tiny budget)
    python -m benchmarks.decoders --steps 2 --stage2-steps 2 --frames 9 --size 32 --width 8   # smoke
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Trainer
from torch.utils.data import DataLoader

from benchmarks.budget_training import held_out_clips, prepare_clips
from vtok import VideoAutoencoder
from vtok.data import ClipSpec, EpochSampler, VideoClipDataset
from vtok.evaluation import high_frequency_energy, lpips_per_video, psnr_per_video
from vtok.evaluation.detectors import load_lpips
from vtok.losses import AdversarialLoss, AutoencoderLoss
from vtok.training import AutoencoderModule
from vtok.training.optim import OptimizerConfig

NOISE_LEVELS = (0.05, 0.2)  # the t, and the largest the denoising decoder is trained on


def layout(width: int, **extra: Any) -> dict[str, Any]:
    """The 8x32x32 presets' layout (patchify 4, four levels) at a width a CPU can train."""
    return {
        "temporal_compression": 8,
        "spatial_compression": 32,
        "patch_size": 4,
        "block_out_channels": [width, 2 * width, 4 * width, 4 * width],
        "layers_per_block": 1,
        **extra,
    }


def fit(module: AutoencoderModule, files: list[str], args: argparse.Namespace, steps: int, seed: int = 0) -> AutoencoderModule:
    """Trains ``module`` for ``steps`` batches of random training clips (a new epoch of clips on
    every pass over the files) with Lightning's Trainer; returns it on ``args.device``."""
    torch.manual_seed(seed)
    dataset = VideoClipDataset(files, ClipSpec(args.frames), (args.size, args.size), seed=seed)
    loader = DataLoader(dataset, batch_size=args.batch_size, sampler=EpochSampler(len(dataset), seed=seed), drop_last=True)
    trainer = Trainer(
        max_steps=steps, accelerator=args.device, devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, max_epochs=-1,
    )  # fmt: skip
    trainer.fit(module, train_dataloaders=loader)
    return module.to(args.device)  # Lightning's teardown leaves it on the CPU; the held-out clips are on the device


def scores(reconstruction: torch.Tensor, video: torch.Tensor, lpips: torch.nn.Module | None) -> dict[str, float | None]:
    return {
        "psnr_db": round(float(psnr_per_video(reconstruction, video).mean()), 3),
        "high_frequency_ratio": round(float(high_frequency_energy(reconstruction).sum() / high_frequency_energy(video).sum()), 4),
        "lpips": round(float(lpips_per_video(lpips, reconstruction, video).mean()), 4) if lpips is not None else None,
    }


def module_for(autoencoder: VideoAutoencoder, args: argparse.Namespace, **extra: Any) -> AutoencoderModule:
    return AutoencoderModule(autoencoder, loss=AutoencoderLoss(), optimizer=OptimizerConfig(lr=args.lr, warmup_steps=0), **extra)


def denoising(args: argparse.Namespace, data: tuple[list[str], list[str]], lpips: torch.nn.Module | None) -> dict:
    video = held_out_clips(data[1], args.frames, args.size, args.device)
    result: dict[str, Any] = {"measurement": "denoising_decoder", "layout": "ltx_8x32x32"}
    for name, conditioned in (("plain", False), ("denoising", True)):
        torch.manual_seed(0)
        model = VideoAutoencoder(
            **layout(args.width, latent_channels=args.latent_channels, decoder_causal=False),
            decoder_timestep_conditioning=conditioned, denoise_max_timestep=0.2,
        )  # fmt: skip
        autoencoder = fit(module_for(model, args), data[0], args, args.steps).autoencoder.eval()
        with torch.no_grad():
            latents = autoencoder.encode(video)
            noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(1)).to(latents)
            result[name] = {"latent_std": round(float(latents.std()), 4), "t=0": scores(autoencoder.decode(latents), video, lpips)}
            for t in NOISE_LEVELS:
                result[name][f"t={t}"] = scores(autoencoder.decode_noised(latents, t, noise), video, lpips)
    return result


@torch.no_grad()
def decoded(autoencoder: VideoAutoencoder, video: torch.Tensor, lpips: torch.nn.Module | None) -> dict[str, Any]:
    codes = autoencoder.indices_to_latents(autoencoder.tokenize(video))
    return {
        "zero_noise": scores(autoencoder.decode(codes), video, lpips),
        "sampled_noise": scores(autoencoder.decode(codes, noise_seed=0), video, lpips),
    }


def generative(args: argparse.Namespace, data: tuple[list[str], list[str]], lpips: torch.nn.Module | None) -> dict:
    video = held_out_clips(data[1], args.frames, args.size, args.device)
    gq = {"bottleneck": "gq", "gq_bits": args.gq_bits, "gq_groups": args.gq_groups, "decoder_noise_channels": 8}
    torch.manual_seed(0)
    stage1 = fit(module_for(VideoAutoencoder(**layout(args.width, latent_channels=args.gq_bits, **gq)), args), data[0], args, args.steps)
    state = {k: v.clone() for k, v in stage1.autoencoder.state_dict().items()}
    result: dict[str, Any] = {"measurement": "generative_decoder", "layout": "gq_8x32x32_gd", "stage1": decoded(stage1.autoencoder.eval(), video, lpips)}
    for name, adversarial in (("stage1_continued", None), ("stage2", AdversarialLoss(channels=2 * args.width, layers=2, start_step=0))):
        torch.manual_seed(0)
        model = VideoAutoencoder(**layout(args.width, latent_channels=args.gq_bits, **gq))
        model.load_state_dict(state)
        frozen = ["encoder", "quantizer"] if adversarial is not None else None
        module = fit(module_for(model, args, adversarial=adversarial, freeze=frozen), data[0], args, args.stage2_steps, seed=1)
        result[name] = decoded(module.autoencoder.eval(), video, lpips)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300, help="training steps of each model (stage 1)")
    parser.add_argument("--stage2-steps", type=int, default=150, help="steps of stage 2 and of its control")
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--width", type=int, default=16, help="channels of the first level")
    parser.add_argument("--latent-channels", type=int, default=32, help="of the KL models")
    parser.add_argument("--gq-bits", type=int, default=16)
    parser.add_argument("--gq-groups", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--only", choices=["denoising", "generative"], help="run one measurement")
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    lpips, lpips_skipped = load_lpips(None, torch.device(args.device), (args.size, args.size))
    measurements = {"denoising": denoising, "generative": generative}
    with tempfile.TemporaryDirectory() as folder:
        data = prepare_clips(Path(folder), args.frames, args.size)
        for name, measure in measurements.items():
            if args.only in (None, name):
                row = measure(args, data, lpips)
                row.update(
                    steps=args.steps, stage2_steps=args.stage2_steps, clip=f"{args.frames}x{args.size}x{args.size}",
                    width=args.width, device=args.device, lpips_skipped=lpips_skipped,
                )  # fmt: skip
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
