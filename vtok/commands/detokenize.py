"""``vtok detokenize --model M --tokens F --out V.mp4``: a token file back to video."""

from __future__ import annotations

import argparse
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from vtok.commands.device import add_device_argument, resolve_device
from vtok.commands.outputs import output_folder
from vtok.commands.protocol import check_fps
from vtok.data import to_uint8_frames, write_video
from vtok.data.writers import container_rate
from vtok.export import load_autoencoder
from vtok.tokenfiles import check_model_matches, check_token_grid, read_token_file
from vtok.vae import map_tokens

log = logging.getLogger(__name__)

DEFAULT_FPS = 24.0  # when the token file does not know its frame rate


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vtok detokenize", description=__doc__)
    p.add_argument(
        "--model", type=os.path.expanduser, required=True,
        help="the discrete model that wrote the tokens (export folder or checkpoint)",
    )
    p.add_argument("--tokens", type=os.path.expanduser, required=True, help="a token file written by `vtok tokenize`")
    p.add_argument("--out", type=os.path.expanduser, required=True, help="the mp4 to write (a path ending in .mp4)")
    p.add_argument("--fps", type=float, help="frame rate of the mp4, above 0 (default: the clip's, in the token file)")
    add_device_argument(p, workers=False)  # it reads one token file: no videos to decode ahead
    return p


def frame_rate(chosen: float | None, metadata: dict[str, str], tokens: str) -> float:
    """The mp4's frame rate: ``--fps`` when given, else the clip's recorded in the token file when finite and
    above 0, else :data:`DEFAULT_FPS` with a warning (0 records an unknown rate; NaN or below 0, an edited file)."""
    if chosen is not None:
        return chosen
    recorded = float(metadata["fps"])  # a number: read_token_header checks it
    if math.isfinite(recorded) and recorded > 0:
        return recorded
    log.warning("%s records fps %s: writing the mp4 at %g fps (choose with --fps)", tokens, metadata["fps"], DEFAULT_FPS)
    return DEFAULT_FPS


def main(argv: Sequence[str]) -> None:
    args = parser().parse_args(argv)
    check_fps(args.fps)
    if Path(args.out).suffix.lower() != ".mp4":
        raise ValueError(f"--out {args.out} must name an .mp4 file (H.264 in MP4 is what detokenize writes)")
    if Path(args.out).is_dir():
        raise ValueError(f"--out {args.out} is a folder; give the path of the .mp4 file to write")
    output_folder(Path(args.out).parent, f"--out {args.out}: its folder")  # before the decode, not after it
    device = resolve_device(args.device)
    tokens, metadata = read_token_file(args.tokens)
    fps = frame_rate(args.fps, metadata, args.tokens)
    container_rate(fps)  # one the mp4 can store: checked before the decode
    model = load_autoencoder(args.model)
    check_model_matches(metadata, model, args.tokens)
    check_token_grid(tokens, metadata, model, args.tokens)
    with torch.no_grad():
        video = model.to(device).detokenize(map_tokens(tokens, lambda t: t[None].to(device)))[0]  # ValueError for out-of-range indices
    try:
        path = write_video(args.out, to_uint8_frames(video), fps=fps)
    except OSError as error:  # PyAV's, without the path (a disk full, the folder gone since the check)
        raise ValueError(f"--out {args.out}: cannot be written ({error.strerror or error})") from None
    print(f"decoded {args.tokens} -> {path} ({video.shape[1]} frames, {video.shape[2]}x{video.shape[3]}, {fps:g} fps)")
