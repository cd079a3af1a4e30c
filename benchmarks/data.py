"""Clips per second delivered by the data loaders: video files (from a manifest) against WebDataset
shards, and decoding H.264 sources at 720p or 1080p with decord against PyAV.

Generates sample clips, runs ``vtok prepare`` on them, lists every clip ``--repeat`` times (so an
epoch outlasts the measurement, as on a real dataset) in a manifest and in shards, then times the
training loader of each path (the first batches, which include starting the workers, are not
counted). Prints one JSON line per measurement. Small CPU sizes by default:

    python -m benchmarks.data --workers 2 --size 64 --frames 17

The ``sources`` path writes ``--source-videos`` H.264 videos of ``--source-frames`` frames at each
``--sources`` resolution (``144p`` by default, a smoke size; ``720p``, ``1080p``, ``360p`` or ``HxW``) and
times the loader cropping and resizing them to ``--size`` clips, for each reader ``--backends`` and
worker count ``--workers`` (e.g. ``1,2,4,8``). A source longer than 48 frames plays 48 generated frames
forth and back (motion without cuts), so long sources, where PyAV decodes from the file's start and decord
seeks to the keyframe before the clip, cost little more to write. x264 places the keyframes by its defaults,
which depend on the content and size; each line records the sources' longest keyframe interval. With
``--step-clips-per-s`` (a training step's clips/s, from ``benchmarks/train_step.py``) each line also gives
the loader's margin over it:

    python -m benchmarks.data --paths sources --sources 720p,1080p --workers 1,2 --size 256 --step-clips-per-s 2.4
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import cpu_model
from vtok.data import write_sample_clips
from vtok.data.datamodule import VideoDataModule
from vtok.data.manifest import read_jsonl
from vtok.data.prepare import PrepareOptions, prepare_dataset
from vtok.data.shard_writer import write_shards
from vtok.data.synthetic import synthetic_clip
from vtok.data.writers import write_video

log = logging.getLogger("benchmarks.data")
RESOLUTIONS = {"144p": (144, 256), "360p": (360, 640), "720p": (720, 1280), "1080p": (1080, 1920)}
GENERATED_FRAMES = 48  # generated frames per source; a longer source plays them forth and back


def resolution(text: str) -> tuple[int, int]:
    """``"720p"`` or ``"HxW"`` -> ``(height, width)``."""
    if text in RESOLUTIONS:
        return RESOLUTIONS[text]
    height, sep, width = text.lower().partition("x")
    if not (sep and height.isdigit() and width.isdigit()):
        raise argparse.ArgumentTypeError(f"resolution {text!r} is not one of {', '.join(RESOLUTIONS)} or HxW")
    return int(height), int(width)


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity (``taskset`` pins the loader benchmark to a few
    cores in ``gpu_suite.sh``), or every CPU where the platform has no affinity call."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="2", help="loader workers, one count or a list (1,2,4); prepare uses the largest")
    parser.add_argument("--size", type=int, default=64, help="clip height and width")
    parser.add_argument("--frames", type=int, default=17, help="frames per clip")
    parser.add_argument("--videos", type=int, default=32, help="generated videos")
    parser.add_argument("--video-frames", type=int, default=48, help="frames per generated video")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--batches", type=int, default=40, help="batches timed per path")
    parser.add_argument("--rounds", type=int, default=0,
                        help="time at least this many batches per worker (rounds of the worker pool), so that the rate "
                             "of many workers does not rest on one batch each")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=8, help="times each clip is listed (longer epochs)")
    parser.add_argument("--shard-mb", type=float, default=0.25, help="shard size (small, so every worker gets shards)")
    parser.add_argument("--dir", default=None, help="where the clips and shards go (default: a temporary folder)")
    parser.add_argument("--paths", default="files,shards", help="what to time: files, shards, sources")
    parser.add_argument("--sources", default="144p", help="source resolutions for the sources path: 720p, 1080p, HxW, ...")
    parser.add_argument("--source-videos", type=int, default=4, help="H.264 videos written per source resolution")
    parser.add_argument("--source-frames", type=int, default=40, help="frames per source video")
    parser.add_argument("--backends", default="decord,pyav", help="readers for the sources path")
    parser.add_argument("--step-clips-per-s", type=float, default=None, help="a training step's clips/s, to compare with")
    args = parser.parse_args()
    args.workers = [int(w) for w in args.workers.split(",")]
    args.paths = args.paths.split(",")
    return args


def timed_batches(args: argparse.Namespace, workers: int) -> int:
    """Batches timed with ``workers`` workers: ``--batches``, or ``--rounds`` per worker when that is more."""
    return max(args.batches, args.rounds * workers)


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


def prepare_repeated(videos: Path, out: Path, repeat: int, workers: int) -> tuple[list[dict], Any, float]:
    """``vtok prepare`` on ``videos`` into ``out``, and ``out/long.jsonl`` listing every record
    ``repeat`` times; returns the repeated records, prepare's summary and its seconds."""
    start = time.perf_counter()
    summary = prepare_dataset(str(videos), out, PrepareOptions(workers=workers, progress=False))
    seconds = time.perf_counter() - start
    records = read_jsonl(out / "manifest.jsonl")  # absolute paths: no re-encoding here
    copies = [{**r, "source": f"{r['source']}#{i}"} for i in range(repeat) for r in records]  # distinct keys
    (out / "long.jsonl").write_text("".join(json.dumps(record) + "\n" for record in copies))
    return copies, summary, seconds


def files_and_shards(args: argparse.Namespace, folder: Path, common: dict[str, Any]) -> None:
    """The original comparison: the same clips from a manifest of files and from shards."""
    side = round(args.size * 1.25)
    videos = folder / f"videos_{args.videos}x{args.video_frames}f_{side}"
    write_sample_clips(videos, args.videos, args.video_frames, side, side)
    out = folder / f"prepared_{videos.name}"
    copies, summary, seconds = prepare_repeated(videos, out, args.repeat, max(args.workers))
    if not (out / "shards" / "index.json").exists():
        write_shards(copies, out, out / "shards", args.shard_mb)
    if summary.probed:  # the seconds include starting the worker pool (a few seconds: it imports torch)
        print(json.dumps({"benchmark": "prepare", "files": summary.probed, "seconds": round(seconds, 2),
                          "files_per_s": round(summary.probed / seconds, 1), **common}))  # fmt: skip
    for workers in args.workers:
        settings = dict(num_frames=args.frames, size=args.size, batch_size=args.batch_size, num_workers=workers, val_fraction=0)
        for path in [p for p in ("files", "shards") if p in args.paths]:
            source = dict(path=str(out / "long.jsonl")) if path == "files" else dict(shards=str(out / "shards"))
            batches = timed_batches(args, workers)
            rate = clips_per_second(VideoDataModule(**source, **settings), batches, warmup=max(workers, 1))
            record = {"benchmark": "data_loading", "path": path, "clips_per_s": round(rate, 1), **common, "workers": workers,
                      "batches": batches}  # fmt: skip
            print(json.dumps(record), flush=True)


def forth_and_back(frames: torch.Tensor, count: int) -> Iterator[np.ndarray]:
    """``count`` frames that play ``frames`` forth and back (0 .. n-1, n-2 .. 1, 0 ..): no cut at the
    turns, where a loop's jump back to frame 0 would be a scene cut that makes x264 add a keyframe."""
    period = max(2 * len(frames) - 2, 1)
    for index in range(count):
        at = index % period
        yield frames[at if at < len(frames) else period - at].numpy()


def write_source(path: Path, frames: int, height: int, width: int, seed: int, threads: int) -> None:
    """One H.264 source of ``frames`` frames (up to :data:`GENERATED_FRAMES` generated ones, played forth and
    back); :func:`~vtok.data.write_video` writes it aside and renames it, so a stopped run never leaves half a source."""
    torch.set_num_threads(threads)
    clip = synthetic_clip(min(frames, GENERATED_FRAMES), height, width, seed=seed)
    write_video(path, forth_and_back(clip, frames))


def write_sources(folder: Path, count: int, frames: int, height: int, width: int) -> None:
    """``folder/sample_XXXX.mp4``, ``count`` sources (those there already are kept), written in parallel on
    the CPUs this process may use (a few 1080p sources of hundreds of frames take minutes on one core)."""
    folder.mkdir(parents=True, exist_ok=True)
    height, width = height + height % 2, width + width % 2  # H.264 needs even sizes
    missing = [index for index in range(count) if not (folder / f"sample_{index:04d}.mp4").exists()]
    jobs = min(len(missing), usable_cpus())
    if jobs <= 1:
        for index in missing:
            write_source(folder / f"sample_{index:04d}.mp4", frames, height, width, index, torch.get_num_threads())
        return
    # spawned, not forked: a fork after PyAV's or OpenMP's threads ran can hang in the child
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        threads = max(1, usable_cpus() // jobs)
        done = [pool.submit(write_source, folder / f"sample_{index:04d}.mp4", frames, height, width, index, threads)
                for index in missing]  # fmt: skip
        for future in done:
            future.result()


def sources(args: argparse.Namespace, folder: Path, common: dict[str, Any]) -> None:
    """H.264 sources at each resolution, decoded by each reader with each worker count."""
    for name in args.sources.split(","):
        height, width = resolution(name)
        videos = folder / f"sources_{args.source_videos}x{args.source_frames}f_{height}x{width}"
        log.info("writing %d H.264 videos at %dx%d", args.source_videos, width, height)
        write_sources(videos, args.source_videos, args.source_frames, height, width)
        most = max(timed_batches(args, workers) + workers for workers in args.workers)  # batches one measurement reads
        repeat = max(1, -(-most * args.batch_size // args.source_videos))
        copies, _, _ = prepare_repeated(videos, folder / f"prepared_{videos.name}", repeat, max(args.workers))
        # where x264 put keyframes depends on the content and the size (its scene-cut detection): decord's cost
        intervals = [record["keyframe_interval"] for record in copies if record.get("keyframe_interval")]
        for backend in args.backends.split(","):
            for workers in args.workers:
                module = VideoDataModule(path=str(folder / f"prepared_{videos.name}" / "long.jsonl"), num_frames=args.frames,
                                         size=args.size, batch_size=args.batch_size, num_workers=workers, val_fraction=0,
                                         backend=backend)  # fmt: skip
                batches = timed_batches(args, workers)
                rate = clips_per_second(module, batches, warmup=max(workers, 1))
                record = {"benchmark": "data_loading", "path": "sources", "source": name, "source_height": height,
                          "source_width": width, "backend": backend, "clips_per_s": round(rate, 2), **common,
                          "workers": workers, "videos": args.source_videos, "video_frames": args.source_frames,
                          "repeat": repeat, "batches": batches,
                          "longest_keyframe_interval": max(intervals, default=None)}  # fmt: skip
                if args.step_clips_per_s:
                    record["step_clips_per_s"] = args.step_clips_per_s
                    record["loader_over_step"] = round(rate / args.step_clips_per_s, 2)
                print(json.dumps(record), flush=True)


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    folder = Path(args.dir or tempfile.mkdtemp(prefix="vtok-bench-"))
    common = {"workers": max(args.workers), "size": args.size, "frames": args.frames, "batch_size": args.batch_size,
              "videos": args.videos, "repeat": args.repeat, "video_frames": args.video_frames, "cpus": usable_cpus(),
              "cpu": cpu_model()}  # fmt: skip
    if {"files", "shards"} & set(args.paths):
        files_and_shards(args, folder, common)
    if "sources" in args.paths:
        sources(args, folder, common)


if __name__ == "__main__":
    main()
