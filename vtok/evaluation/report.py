"""What an evaluation writes: ``metrics.json``, ``per_video.csv`` and ``report.md``."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from vtok.data.sources import printable_path
from vtok.evaluation.pictures import ERROR_GAIN

log = logging.getLogger(__name__)

HEADLINE = [  # (metrics.json key, label in the report)
    ("psnr", "PSNR (dB)"),
    ("ssim", "SSIM"),
    ("lpips", "LPIPS (VGG)"),
    ("high_frequency_ratio", "high-frequency energy, reconstruction / original (blur < 1)"),
    ("fvd", "FVD (I3D)"),
    ("codebook_usage", "codebook usage"),
    ("perplexity", "perplexity"),
    ("bits_per_pixel", "bits per pixel"),
    ("latent_values_per_pixel", "latent values per pixel"),
    ("tokens_per_second_of_video", "tokens per second of video"),
    ("compression", "compression (t x h x w)"),
    ("encode_frames_per_s", "encode frames/s"),
    ("decode_frames_per_s", "decode frames/s"),
    ("videos", "videos (one clip each)"),
    ("skipped_files", "skipped files"),
    ("enlarged_videos", "videos smaller than the protocol size (compared enlarged)"),
]


NOT_FINITE = "not a finite number (NaN or inf)"


def finite_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """``metrics`` with every NaN or inf, which JSON cannot hold, made null (nested ones too), and each
    top-level number so made given a ``<key>_skipped`` reason, right after it, unless it has one."""
    finite: dict[str, Any] = {}
    for key, value in metrics.items():
        if key in finite:
            continue  # the reason given just below for the metric before it
        finite[key] = finite_or_none(value)
        if isinstance(value, float) and finite[key] is None and not metrics.get(f"{key}_skipped"):
            finite[f"{key}_skipped"] = NOT_FINITE
    return finite


def finite_or_none(value: Any) -> Any:
    """``value`` with NaN and inf floats, in it or in its dicts and lists, made ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, list):
        return [finite_or_none(item) for item in value]
    return value


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _cell(metrics: dict[str, Any], key: str) -> str:
    value = metrics[key]
    if value is not None:
        return _number(value)
    reason = metrics.get(f"{key}_skipped")
    if reason:
        return f"skipped: {reason}"
    return "n/a (continuous latents)" if metrics.get("mode") == "continuous" else "n/a"


def _mode_line(metrics: dict[str, Any]) -> str:
    """Mode, the noise level and seed of the decoded latents (when noised), and the batch size."""
    protocol, timestep = metrics["protocol"], metrics["decode_timestep"]
    line = f"Mode: {metrics['mode']}"
    if timestep:
        line += f"; latents decoded at noise level t = {timestep:g} (noise seed {protocol.get('noise_seed')}, per clip)"
    return line + (f"; batch size {protocol['batch_size']}." if protocol.get("batch_size") else ".")


def _data_line(data: dict[str, str]) -> str:
    real = f" (real path `{data['real_path']}`)" if data.get("real_path") not in (None, data["path"]) else ""
    return f"Data: `{data['path']}`{real}."


def report_markdown(metrics: dict[str, Any]) -> str:
    """The report: headline metrics, model and protocol, skipped files with reasons, pictures."""
    model, protocol, pictures = metrics["model"], metrics["protocol"], metrics["pictures"]
    frames = protocol["frames"]
    rate = f"{protocol['fps']} fps" if protocol.get("fps") else f"stride {protocol['stride']}"
    real = ", ".join(f"{fps:g}" for fps in protocol.get("clip_fps") or [])
    rate += f" (clips at {real} fps)" if real else ""
    lines = [
        f"# Evaluation of `{model['path']}`",
        "",
        f"Model: training step {model.get('training_step')}, {model.get('weights')} weights, "
        f"bottleneck {model.get('bottleneck')}, compression {metrics['compression']}; run on {metrics['device']}.",
        *([f"Weights sha256: `{model['weights_sha256']}`."] if model.get("weights_sha256") else []),
        *([_data_line(metrics["data"])] if metrics.get("data") else []),
        _mode_line(metrics),
        f"Protocol: {frames} frames at {rate}, {protocol['height']}x{protocol['width']}, centre clip, centre crop.",
        "",
        "| metric | value |",
        "|---|---|",
        *(f"| {label} | {_cell(metrics, key)} |" for key, label in HEADLINE),
        "",
    ]
    if metrics.get("group_codebook_usage") is not None:
        lines += [
            f"Per group of the single-token GQ (averaged over the groups): codebook usage "
            f"{metrics['group_codebook_usage']:.4g}, perplexity {metrics['group_perplexity']:.4g}.",
            "",
        ]
    if metrics.get("first_frame_codebook_usage") is not None:
        lines += [
            f"First latent frame's extra tokens (first-frame strengthening, averaged over their slots): codebook "
            f"usage {metrics['first_frame_codebook_usage']:.4g}, perplexity {metrics['first_frame_perplexity']:.4g}.",
            "",
        ]
    if metrics.get("lpips_weights_sha256") and metrics["lpips"] is not None:
        lines += [f"LPIPS backbone (VGG16) sha256: `{metrics['lpips_weights_sha256']}`.", ""]
    if metrics["fvd"] is not None:
        lines += [
            f"FVD over {metrics['fvd_clips']} clips (comparable only with FVDs over as many: a small sample adds a "
            f"large bias); detector sha256: `{metrics['fvd_weights_sha256']}`.",
            "",
        ]
    if metrics["skipped"]:
        skipped = [f"- `{printable_path(s['path'])}`: {s['reason']}" for s in metrics["skipped"]]
        lines += ["## Skipped files", "", *skipped, ""]
    if pictures:
        lines += [
            "## Pictures",
            "",
            "Each picture has three rows over evenly spaced frames: the **original** (top), the "
            f"**reconstruction** (middle) and the **absolute error amplified {ERROR_GAIN:g}x** (bottom: mean "
            f"over RGB in [0, 1] pixel units times {ERROR_GAIN:g}, so white is an error of 1/{ERROR_GAIN:g} of "
            "the full range or more). The videos show the original (left) next to the reconstruction (right).",
            "",
        ]
        for picture in pictures:  # links quoted: a space in a file name ended the link (the picture showed as text)
            path = printable_path(picture["path"])
            video = f" ([side-by-side video]({quote(picture['video'])}))" if "video" in picture else ""
            lines += [f"### `{path}`{video}", "", f"![{path}]({quote(picture['grid'])})", ""]
    return "\n".join(lines)


# in an evaluation's --out: the run's pictures until its metrics.json is written (never data: see
# without_evaluation_pictures); an interrupted run leaves the earlier run's pictures and report as they were
STAGED_PICTURES = ".pictures-partial"


@contextmanager
def staged_pictures(out: Path) -> Iterator[Path]:
    """The folder an evaluation into ``out`` writes its pictures in while it runs (:data:`STAGED_PICTURES`,
    which :func:`write_outputs` moves into ``out/pictures``); emptied first (what a killed run left) and removed
    when the block ends, so a run that stops before :func:`write_outputs` leaves no pictures beside an earlier
    run's report."""
    staged = out / STAGED_PICTURES
    shutil.rmtree(staged, ignore_errors=True)
    try:
        yield staged
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def write_outputs(out: Path, metrics: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """Writes ``out/metrics.json``, ``out/per_video.csv``
    (path, psnr, ssim, lpips, high_frequency_ratio) and ``out/report.md``; moves this run's pictures from
    :data:`STAGED_PICTURES` into ``out/pictures`` and removes the pictures that an earlier evaluation into
    ``out`` listed and this one did not rewrite, so the folder shows this run only.

    Args:
        out: the evaluation folder (created).
        metrics: the summary, finite (:func:`finite_metrics`); its ``pictures`` lists the pictures written,
            with the video each shows.
        rows: one dict per video.
    """
    out.mkdir(parents=True, exist_ok=True)
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=["path", "psnr", "ssim", "lpips", "high_frequency_ratio"])
    writer.writeheader()
    writer.writerows({**row, "path": printable_path(row["path"])} for row in rows)
    texts = {
        "metrics.json": json.dumps(metrics, indent=2, allow_nan=False) + "\n",  # finite_metrics first
        "per_video.csv": table.getvalue(),
        "report.md": report_markdown(metrics),
    }
    # all three written aside before anything of an earlier run changes: a full disk left a metrics.json cut short
    # (not JSON, its list of pictures lost) beside the earlier run's table and report
    partials = {name: out / f".{name}.partial" for name in texts}
    try:
        for name, text in texts.items():
            partials[name].write_text(text, newline="")
    except BaseException:
        for partial in partials.values():
            partial.unlink(missing_ok=True)
        raise
    staged = out / STAGED_PICTURES
    for picture in sorted(staged.iterdir()) if staged.is_dir() else []:
        (out / "pictures").mkdir(exist_ok=True)
        os.replace(picture, out / "pictures" / picture.name)
    _remove_earlier_pictures(out, metrics["pictures"])
    for name, partial in partials.items():
        os.replace(partial, out / name)
    (out / PICTURES_WRITTEN).unlink(missing_ok=True)  # metrics.json lists them now


# in an evaluation's --out: the pictures an earlier vtok noted as it wrote them, until metrics.json listed them
PICTURES_WRITTEN = ".pictures-written.jsonl"


def _noted_pictures(ledger: Path) -> list[dict[str, str]]:
    """The entries of a :data:`PICTURES_WRITTEN` file; none when there is none (a line cut short by a kill is
    left out, the others count)."""
    try:
        lines = ledger.read_text().splitlines()
    except OSError:
        return []
    entries = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue
    return entries


def recorded_pictures(out: Path) -> list[tuple[str, Path]]:
    """The picture files (each with the name ``metrics.json`` gives it) that an evaluation into ``out``
    recorded writing: those its ``metrics.json`` lists, and those a run stopped before writing it noted as it
    went; only files inside ``out/pictures`` count, and none when ``out`` holds neither record."""
    try:
        earlier = json.loads((out / "metrics.json").read_text()).get("pictures") or []
    except (OSError, ValueError, AttributeError):
        earlier = []  # no finished evaluation here, or not one of ours
    earlier += _noted_pictures(out / PICTURES_WRITTEN)
    if not earlier:
        return []
    folder = (out / "pictures").resolve()
    named = [(str(name), (out / str(name)).resolve()) for picture in earlier if isinstance(picture, dict)
             for key, name in picture.items() if key != "path"]  # fmt: skip
    return [(name, path) for name, path in named if path.parent == folder]


def without_evaluation_pictures(paths: list[str]) -> list[str]:
    """``paths`` in order without the picture videos an earlier ``vtok evaluate`` wrote (those its
    ``metrics.json`` lists), wherever its ``--out`` was: an evaluation into ``val/eval_a`` and then into
    ``val/eval_b`` would otherwise score ``eval_a``'s side-by-side videos as data; and those an evaluation still
    running, or one killed before its ``metrics.json``, staged (:data:`STAGED_PICTURES`, which folder listings
    enter like any other). Logs how many it left out."""
    folders = {Path(path).parent for path in paths if Path(path).parent.name == "pictures"}  # no file system calls
    pictures = {path for folder in folders for _, path in recorded_pictures(folder.parent)}
    kept = [path for path in paths if Path(path).parent.name != STAGED_PICTURES]
    kept = [path for path in kept if not pictures or Path(path).resolve() not in pictures]
    if len(kept) < len(paths):
        log.info("%d videos that an earlier vtok evaluate wrote (its pictures) are not taken as data", len(paths) - len(kept))
    return kept


def _remove_earlier_pictures(out: Path, pictures: list[dict[str, str]]) -> None:
    """Deletes the picture files listed in an earlier ``out/metrics.json`` that ``pictures`` does not
    list; only files vtok recorded writing there (inside ``out``) are touched."""
    kept = {name for picture in pictures for key, name in picture.items() if key != "path"}
    for name, path in recorded_pictures(out):
        if name not in kept:
            path.unlink(missing_ok=True)
