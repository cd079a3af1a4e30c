"""``vtok prepare --data P --out D``: verify, describe and optionally re-encode or shard a dataset.

The work is in :mod:`vtok.data.prepare`; this is the command line around it.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import get_args

from tqdm.contrib.logging import logging_redirect_tqdm

from vtok.commands.folder_lock import FolderBusy, folder_lock
from vtok.commands.outputs import output_folder
from vtok.data.prepare import PrepareOptions, PrepareSummary, prepare_dataset
from vtok.data.readers import ReaderBackend

PREPARING = ".prepare.lock"  # held in --out while a run writes there


def build_parser() -> argparse.ArgumentParser:
    defaults = PrepareOptions()
    parser = argparse.ArgumentParser(
        prog="vtok prepare",
        description=(
            "Check that every video decodes the way training reads it, and write D/manifest.jsonl (path, "
            "verified frames, fps, size, duration, codec, keyframe interval) and D/rejected.jsonl (path, "
            "reason). Train with --data.path D/manifest.jsonl, or --data.shards D/shards after --shards. "
            "A second run skips the files already listed."
        ),
    )
    parser.add_argument(
        "--data", type=os.path.expanduser, required=True,
        help="a folder, a glob pattern or a manifest (.jsonl/.csv/.txt) of videos",
    )
    parser.add_argument("--out", type=os.path.expanduser, required=True, help="output folder")
    parser.add_argument("--workers", type=int, default=defaults.workers, help="decoding processes; 0 decodes in this process (default: %(default)s)")
    parser.add_argument("--backend", choices=get_args(ReaderBackend), default=defaults.backend, help="video reader, as in training (default: %(default)s)")
    parser.add_argument("--min-frames", type=int, default=defaults.min_frames, help="reject videos with fewer decodable frames, e.g. one clip's span (default: %(default)s)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=defaults.timeout,
        help="seconds a file's decoding may go without progress before it is rejected as stalled, above 0; with "
        "--workers 0 there is no deadline (default: %(default)s)",
    )
    parser.add_argument(
        "--every-frame",
        action="store_true",
        help="decode every frame, not only the first, middle and last: finds damage inside a file (keeps the frames "
        "before it) at the cost of decoding the whole dataset once",
    )
    parser.add_argument("--reencode", action="store_true", help="re-encode accepted videos to D/videos as H.264 with short keyframe intervals")
    parser.add_argument(
        "--short-side", type=int, default=None,
        help="with --reencode: scale the short side to N pixels (never enlarges; both sides even, as H.264 needs: 17 gives 16)",
    )  # fmt: skip
    parser.add_argument("--keyframe-interval", type=int, help=f"with --reencode: at most N frames between keyframes (default: {defaults.keyframe_interval})")
    parser.add_argument("--crf", type=int, help=f"with --reencode: H.264 quality, 0-51, lower is better (default: {defaults.crf})")
    parser.add_argument("--shards", action="store_true", help="also write WebDataset shards to D/shards (shard-%%06d.tar and index.json)")
    parser.add_argument("--shard-size", type=float, help=f"with --shards: target shard size in MB (default: {defaults.shard_mb:g})")
    parser.add_argument("--shard-samples", type=int, default=None, help="with --shards: also close a shard after N videos (default: size only)")
    parser.add_argument("--seed", type=int, help=f"with --shards: seed of the order videos are written into shards (default: {defaults.seed})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> PrepareSummary:
    """Runs the command; prints the summary and returns it.

    Raises:
        ValueError: bad arguments (``--out`` a file, ``--timeout`` not above 0, ...), no video found, or none
            usable (``vtok`` reports it in one line).
        FileNotFoundError: ``--data`` names nothing that exists.
    """
    args = build_parser().parse_args(argv)
    for name in ("workers", "min_frames", "short_side", "keyframe_interval", "shard_samples"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "workers" else 1):
            raise ValueError(f"--{name.replace('_', '-')} must be at least {0 if name == 'workers' else 1}, got {value}")
    for mode, flags in (("reencode", ("keyframe_interval", "crf", "short_side")), ("shards", ("shard_size", "shard_samples", "seed"))):
        given = [f"--{flag.replace('_', '-')}" for flag in flags if getattr(args, flag) is not None]
        if given and not getattr(args, mode):
            verb = "applies" if len(given) == 1 else "apply"
            raise ValueError(f"{', '.join(given)} only {verb} with --{mode}; add --{mode}")
    if args.shard_size is not None and not 0 < args.shard_size < math.inf:  # before the scan, not after hours of it
        raise ValueError(f"--shard-size must be a positive number of MB, got {args.shard_size:g}")
    if args.crf is not None and not 0 <= args.crf <= 51:
        raise ValueError(f"--crf must be in 0-51 (H.264's range), got {args.crf}")
    if not 0 < args.timeout <= threading.TIMEOUT_MAX:  # nan looped for ever, inf overflowed the pool's clock
        raise ValueError(
            f"--timeout must be a number of seconds above 0 and at most {threading.TIMEOUT_MAX:.3g}, got {args.timeout:g}"
        )
    output_folder(args.out)
    given = {"keyframe_interval": args.keyframe_interval, "crf": args.crf, "shard_mb": args.shard_size, "seed": args.seed}
    options = PrepareOptions(
        **{key: value for key, value in given.items() if value is not None},  # the others keep their defaults
        workers=args.workers,
        backend=args.backend,
        min_frames=args.min_frames,
        timeout=args.timeout,
        every_frame=args.every_frame,
        reencode=args.reencode,
        short_side=args.short_side,
        shards=args.shards,
        shard_samples=args.shard_samples,
        progress=not args.no_progress,
    )
    try:
        # two runs into one --out appended to and rewrote one manifest at once: lines twice, or lost
        with folder_lock(Path(args.out), PREPARING, wait=False), logging_redirect_tqdm([logging.getLogger("vtok")]):
            summary = prepare_dataset(args.data, args.out, options)  # log lines above the progress bar, not through it
    except FolderBusy:
        raise ValueError(
            f"another vtok prepare is still writing into --out {args.out}: wait for it, or give this one another --out"
        ) from None
    except KeyboardInterrupt:
        print(
            f"vtok prepare: interrupted; every file checked so far is recorded in {args.out} (and every shard closed "
            "so far indexed): run the same command again to carry on",
            file=sys.stderr,
        )
        raise SystemExit(130) from None
    print(summary.describe())
    return summary
