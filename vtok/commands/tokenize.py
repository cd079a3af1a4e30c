"""``vtok tokenize --model M --data P --out D``: token files for downstream models, one per video.

Writes ``D/tokens/<stem>-<8 hex of its real path>.safetensors`` (see :mod:`vtok.tokenfiles`),
``D/index.jsonl`` (one line per tokenized video: path as given, real path, token file, shape, frames) and
``D/skipped.jsonl`` (unreadable videos with the reason); both cover the whole folder, so a dataset can be tokenized part by
part into one ``D`` (runs with other ``--data``: the earlier runs' lines are kept; runs at the same time each add
theirs; a video deleted since its tokenization stays listed, its token file kept, while a skipped one deleted
since is dropped from skipped.jsonl). Resumable: a video
whose token file is already complete is not read again, whichever way its path is written.
An output folder belongs to one model and one clip protocol: every token file records the model's
weights hash and the protocol, as does D/settings.json (written by the folder's first run), and a run into a
folder of another model or other clip settings (--frames, --size, --stride, --fps) is refused; give it a new --out.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from vtok.commands.device import add_device_argument, resolve_device, resolve_workers
from vtok.commands.folder_lock import folder_lock
from vtok.commands.outputs import output_folder
from vtok.commands.protocol import add_protocol_arguments, clip_dataset, resolve_protocol
from vtok.data import file_key
from vtok.data.manifest import changed_since_checked, read_jsonl
from vtok.data.read_ahead import read_ahead
from vtok.data.readers import MISSING_FILE
from vtok.data.sources import RealPaths, printable_path
from vtok.export import load_autoencoder_and_metadata
from vtok.jsonfile import read_json_object
from vtok.tokenfiles import (
    read_token_header,
    settings_mismatch,
    token_metadata,
    tokenize_settings,
    tokenizer_sha256,
    weights_sha256,
    write_token_file,
)
from vtok.vae import map_tokens, regular_indices

log = logging.getLogger(__name__)
SETTINGS_FILE = "settings.json"  # the model and clip protocol of an output folder's token files


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vtok tokenize", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=os.path.expanduser, required=True, help="discrete model: export folder or training checkpoint")
    p.add_argument(
        "--data", type=os.path.expanduser, required=True,
        help="videos: a folder, a glob or a manifest (.jsonl/.csv/.txt)",
    )
    p.add_argument("--out", type=os.path.expanduser, required=True, help="folder for tokens/, index.jsonl and skipped.jsonl")
    add_device_argument(p)
    add_protocol_arguments(p, whole_video=True)
    return p


def _entry(out: Path, token_path: Path, metadata: dict[str, str], shape: list[int]) -> dict[str, Any]:
    return {
        "path": metadata["source"],
        **({"real_path": metadata["source_real"]} if "source_real" in metadata else {}),  # not in older files
        "tokens": str(token_path.relative_to(out)),
        "shape": shape,
        "frames": int(metadata["frames"]),
        "fps": float(metadata["fps"]),
    }


def _video(record: dict[str, Any], real: RealPaths) -> str:
    """Which video an index or skip record is about: its recorded real path; for a record of an earlier vtok
    that has none, its path resolved from this run's folder (a relative path of a run started elsewhere names
    another video: two datasets' ``videos/a.mp4`` were taken for one, and one's token file removed)."""
    return record.get("real_path") or printable_path(real(record["path"]))


def _write_lines(path: Path, records: list[dict[str, Any]]) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text("".join(json.dumps(record) + "\n" for record in records))
    os.replace(temporary, path)


def _token_path(out: Path, source: str, real: Callable[[str], str] = os.path.realpath) -> Path:
    """Where ``source``'s token file goes: named by its stem and its real path (``real(source)``), so every
    spelling of the video (relative, absolute, through a symlinked folder) names one file."""
    return out / "tokens" / f"{file_key(source, real(source))}.safetensors"


def _already_tokenized(
    out: Path, files: Sequence[str], existing: dict[Path, tuple[dict[str, str], list[int]]]
) -> tuple[dict[int, dict[str, Any]], dict[int, Path]]:
    """Index entries (under this run's spelling of each path) of the ``files`` whose token file is among the
    ``existing`` ones, by position in ``files``: the file of :func:`_token_path`, else one whose recorded
    source is the same video spelt another way (token files were once named by the path as written); and the
    token files left out because their video changed since (another size or modification time), by position. A
    video no longer there keeps its token file (the rerun of a manifest whose videos were deleted since their
    tokenization, a folder of links to a disk not mounted now, removed them all)."""
    real = RealPaths()
    by_video: dict[str, Path] = {}
    for token_path, header in existing.items():
        by_video.setdefault(_video(_entry(out, token_path, *header), real), token_path)
    found, changed = {}, {}
    for index, source in enumerate(files):
        token_path = _token_path(out, source, real)
        token_path = token_path if token_path in existing else by_video.get(printable_path(real(source)))
        if token_path is None:
            continue
        # token files of an earlier vtok: taken as they are; a video gone from its path (deleted since, on a disk
        # not mounted now) keeps its tokens, as one no longer in --data does
        if os.path.exists(source) and changed_since_checked(existing[token_path][0], source):
            changed[index] = token_path
            continue
        found[index] = {**_entry(out, token_path, *existing[token_path]), "path": printable_path(source)}
    return found, changed


def _claim_the_folder(out: Path, settings: dict[str, str]) -> dict[Path, tuple[dict[str, str], list[int]]]:
    """The complete token files already in ``out`` (see :func:`_token_files`), after checking this run's
    ``settings`` against them and against ``out/settings.json``, which the folder's first run writes: under a lock
    of its own (not the index's, which a run writing its lists holds), before any token file is written, so runs
    started together with other settings (one run per GPU, a typo in one command) no longer both passed the check
    of a folder still empty and wrote both protocols.

    Raises:
        ValueError: ``out`` holds token files, or was started by a run, of another model or clip protocol.
    """
    with folder_lock(out, ".settings.lock"):
        existing = _token_files(out, settings)
        recorded = out / SETTINGS_FILE
        if not recorded.is_file():
            _write_lines(recorded, [settings])
            return existing
        differences = settings_mismatch(read_json_object(recorded), settings)
    if differences:
        none_yet = "" if existing else f"; it holds no token file yet: if no run is writing into it, remove {recorded}"
        raise ValueError(
            f"{out} was started by a run of another model or clip protocol ({'; '.join(differences)}); tokenize into "
            f"a new --out (one folder never mixes them){none_yet}"
        )
    return existing


def _token_files(out: Path, settings: dict[str, str]) -> dict[Path, tuple[dict[str, str], list[int]]]:
    """The complete token files already in ``out`` with their headers, each read once. A damaged one is
    left out (redone if its video is in this run's data).

    Raises:
        ValueError: ``out`` holds a token file of another model or clip protocol.
    """
    headers = {}
    for token_path in sorted((out / "tokens").glob("*.safetensors")) if (out / "tokens").is_dir() else []:
        try:
            headers[token_path] = read_token_header(token_path)
        except ValueError as error:
            log.warning("%s is damaged (%s): redone if its video is in --data, else left out of the index", token_path, error)
            continue
        differences = settings_mismatch(headers[token_path][0], settings)
        if differences:
            raise ValueError(
                f"{out} already holds token files of another model or clip protocol ({token_path.name}: "
                f"{'; '.join(differences)}); tokenize into a new --out (one folder never mixes them)"
            )
    return headers


def main(argv: Sequence[str]) -> None:
    args = parser().parse_args(argv)
    out = output_folder(args.out)
    device = resolve_device(args.device)
    workers = resolve_workers(args.workers, device)
    model, metadata = load_autoencoder_and_metadata(args.model)
    if not model.is_discrete:
        raise ValueError(f"{args.model} is a continuous (kl) model and has no tokens; tokenize needs a discrete model (bottleneck fsq or gq)")
    protocol = resolve_protocol(args, model, metadata.get("_vtok_clip"), whole_video=True)
    dataset = clip_dataset(protocol, args.data, model, args.backend)
    data = printable_path(os.path.realpath(args.data))  # what each skip record says listed it, however spelt
    settings = tokenize_settings(protocol.as_dict(), weights_sha256(model), tokenizer_sha256(model))
    existing = _claim_the_folder(out, settings)
    model = model.to(device)
    found, changed = _already_tokenized(out, dataset.files, existing)  # file index -> index entry
    done = len(found)
    skipped: list[dict[str, str]] = []
    to_read = [index for index in range(len(dataset.files)) if index not in found]
    loaded = read_ahead(dataset, to_read, workers)
    for index, video, info, skip in tqdm(loaded, desc="tokenize", unit="video", total=len(to_read)):
        if skip is not None:
            skipped.append(  # each path written as in the token headers, and the --data that listed it
                {**skip, "path": printable_path(skip["path"]), "real_path": printable_path(os.path.realpath(skip["path"])),
                 "data": data}  # fmt: skip
            )
            continue
        with torch.no_grad():
            tokens = map_tokens(model.tokenize(video[None].to(device)), lambda t: t[0])
        header = token_metadata(model, info, protocol.height, protocol.width, args.model, settings)
        token_path = _token_path(out, dataset.files[index])
        write_token_file(token_path, tokens, header)
        found[index] = _entry(out, token_path, header, list(regular_indices(tokens).shape))
    gone = _remove_outdated(changed, {index: _token_path(out, dataset.files[index]) for index in found})
    entries = [found[index] for index in sorted(found)]  # in the order of --data, whichever run wrote them
    # runs into one --out at the same time (parts of a dataset on several GPUs) write the index one after the
    # other, each from the token files there now, so the last one lists the others' videos too
    with folder_lock(out, ".index.lock"):
        earlier = _earlier_entries(out, _token_files(out, settings), entries)
        _write_lines(out / "skipped.jsonl", skipped + _earlier_skips(out, entries + earlier + skipped, data))
        if entries or earlier or (out / "index.jsonl").exists():  # even when none could be read: token files of
            _write_lines(out / "index.jsonl", entries + earlier)  # videos changed since were removed above
        if not entries:
            reasons = "; ".join(f"{s['path']}: {s['reason']}" for s in skipped[:3])
            raise ValueError(
                f"none of the {len(skipped)} videos could be read ({reasons}); all are listed in {out / 'skipped.jsonl'}"
            )
    kept = f", {len(earlier)} from earlier runs kept" if earlier else ""
    again = f", {len(changed) - gone} of them again: changed since their token files" if len(changed) > gone else ""
    if gone:
        again += f"; {gone} changed since and now skipped: their old token files removed"
    print(
        f"tokenized {len(entries) - done} videos{again} ({done} already done, {len(skipped)} skipped{kept}) "
        f"-> {out / 'index.jsonl'}"
    )


def _remove_outdated(changed: dict[int, Path], written: dict[int, Path]) -> int:
    """Removes the token files of videos changed since they were written (``changed``, by position in --data)
    that this run did not overwrite (``written``): a video that now cannot be tokenized, or one whose old file
    had another name. Kept, the index listed tokens of content no longer at that path. Returns how many of
    those videos were not tokenized again."""
    for index, token_path in changed.items():
        if written.get(index) != token_path:
            token_path.unlink(missing_ok=True)
    return sum(1 for index in changed if index not in written)


def _earlier_entries(
    out: Path, existing: dict[Path, tuple[dict[str, str], list[int]]], listed: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Index entries of the ``existing`` token files for videos this run did not list (an earlier run into
    the same folder tokenized other data): the index covers the whole folder, each video once however its
    path was spelled (a path given relative, absolute or through a link names one file: this run's entry
    is kept)."""
    real = RealPaths()
    files = {entry["tokens"] for entry in listed}
    videos = {_video(entry, real) for entry in listed}
    entries = []
    for token_path, header in existing.items():
        entry = _entry(out, token_path, *header)
        if entry["tokens"] not in files and _video(entry, real) not in videos:
            videos.add(_video(entry, real))
            entries.append(entry)
    return entries


def _earlier_skips(out: Path, settled: Iterable[dict[str, Any]], data: str) -> list[dict[str, str]]:
    """The earlier runs' skipped videos that have not been tokenized or skipped again since (the index and
    skip records ``settled``), under any spelling of their path: a rerun through another spelling lists each
    video once. Those no longer there are left out (a broken file deleted since is nothing to fix), but not those
    skipped as missing by a run of other ``data`` (another part of the dataset, whose runs dropped each other's while
    the file was still missing), or by an earlier vtok, which did not record its ``data``: a run of the same ``data``
    (its real path) that lists them no more had its list mended; index lines
    are not: token files outlive their videos, which may be deleted once tokenized."""
    real = RealPaths()
    videos = {_video(record, real) for record in settled}
    records = read_jsonl(out / "skipped.jsonl")
    records = [r for r in records if not isinstance(r.get("path"), str) or _video(r, real) not in videos]
    # only records with their real path: a relative path of an earlier vtok's run may have been given elsewhere;
    # a file missing when another part's run skipped it was not deleted since: still to fix (a copy not finished)
    kept = [r for r in records if not isinstance(r.get("real_path"), str) or os.path.lexists(r["real_path"])
            or (str(r.get("reason", "")).startswith(MISSING_FILE) and r.get("data") != data)]  # fmt: skip
    if len(kept) < len(records):
        gone = len(records) - len(kept)
        log.info("%d videos skipped by earlier runs are gone since: left out of %s", gone, out / "skipped.jsonl")
    return kept
