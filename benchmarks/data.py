"""Clips per second delivered by the data loaders: video files (from a manifest) against WebDataset shards.

Generates sample clips, runs ``vtok prepare`` on them, lists every clip ``--repeat`` times (so an
epoch outlasts the measurement, as on a real dataset) in a manifest and in shards, then times the
training loader of each path (the first batches, which include starting the workers, are not
counted). Prints one JSON line per measurement. Small CPU sizes by default:

    python benchmarks/data.py --workers 2 --size 64 --frames 17
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path

from vtok.data import write_sample_clips
from vtok.data.datamodule import VideoDataModule
from vtok.data.manifest import read_jsonl
from vtok.data.prepare import PrepareOptions, prepare_dataset
from vtok.data.shard_writer import write_shards


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="loader workers (and prepare's processes)")
    parser.add_argument("--size", type=int, default=64, help="clip height and width")
    parser.add_argument("--frames", type=int, default=17, help="frames per clip")
    parser.add_argument("--videos", type=int, default=32, help="generated videos")
    parser.add_argument("--video-frames", type=int, default=48, help="frames per generated video")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--batches", type=int, default=40, help="batches timed per path")
    parser.add_argument("--repeat", type=int, default=8, help="times each clip is listed (longer epochs)")
    parser.add_argument("--shard-mb", type=float, default=0.25, help="shard size (small, so every worker gets shards)")
    parser.add_argument("--dir", default=None, help="where the clips and shards go (default: a temporary folder)")
    return parser.parse_args()


def clips_per_second(module: VideoDataModule, batches: int, warmup: int) -> float:
    module.setup("fit")
    loader = module.train_dataloader()
    seen, epoch, start = 0, 0, None
    while seen < batches + warmup:
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)
        for batch in loader:
            seen += 1
            if seen == warmup:
                start, clips = time.perf_counter(), 0
            elif seen > warmup:
                clips += batch["video"].shape[0]
            if seen == batches + warmup:
                break
        epoch += 1
    return clips / (time.perf_counter() - start)


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    folder = Path(args.dir or tempfile.mkdtemp(prefix="vtok-bench-"))
    side = round(args.size * 1.25)
    videos = folder / f"videos_{args.videos}x{args.video_frames}f_{side}"
    write_sample_clips(videos, args.videos, args.video_frames, side, side)
    out = folder / f"prepared_{videos.name}"
    start = time.perf_counter()
    summary = prepare_dataset(str(videos), out, PrepareOptions(workers=args.workers, progress=False))
    seconds = time.perf_counter() - start
    records = read_jsonl(out / "manifest.jsonl")  # absolute paths: no re-encoding here
    copies = [{**r, "source": f"{r['source']}#{i}"} for i in range(args.repeat) for r in records]  # distinct keys
    (out / "long.jsonl").write_text("".join(json.dumps(record) + "\n" for record in copies))
    if not (out / "shards" / "index.json").exists():
        write_shards(copies, out, out / "shards", args.shard_mb)
    common = {"workers": args.workers, "size": args.size, "frames": args.frames, "batch_size": args.batch_size,
              "videos": args.videos, "repeat": args.repeat, "video_frames": args.video_frames, "cpus": os.cpu_count(),
              "cpu": platform.processor() or platform.machine()}  # fmt: skip
    if summary.probed:  # the seconds include starting the worker pool (a few seconds: it imports torch)
        print(json.dumps({"benchmark": "prepare", "files": summary.probed, "seconds": round(seconds, 2),
                          "files_per_s": round(summary.probed / seconds, 1), **common}))  # fmt: skip
    settings = dict(num_frames=args.frames, size=args.size, batch_size=args.batch_size, num_workers=args.workers, val_fraction=0)
    for path, module in (
        ("files", VideoDataModule(path=str(out / "long.jsonl"), **settings)),
        ("shards", VideoDataModule(shards=str(out / "shards"), **settings)),
    ):
        rate = clips_per_second(module, args.batches, warmup=max(args.workers, 1))
        print(json.dumps({"benchmark": "data_loading", "path": path, "clips_per_s": round(rate, 1), **common}), flush=True)


if __name__ == "__main__":
    main()
