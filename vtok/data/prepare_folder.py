"""What ``vtok prepare`` finds in its output folder before it adds to it: the lists and copies of earlier
runs, what an earlier run left half-done, and data that would be taken for them."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from vtok.data.manifest import checked_file
from vtok.data.sources import RealPaths

log = logging.getLogger(__name__)

COPIES_NAME = "videos"  # where --reencode writes its copies


def _listed_file(out: Path, record: dict[str, Any]) -> Path:
    """The file a list's line names (a copy's path is relative to the folder of the lists)."""
    return out / record["path"]


def refuse_foreign_manifest(records: list[dict[str, Any]], path: Path) -> None:
    """Raises ``ValueError`` when ``path`` holds lines vtok prepare did not write (no ``path`` or ``frames``): an
    --out that already held another list of that name (with ``--data`` that list, its lines were taken for an earlier
    run's, or a KeyError where they had no frame count). ``--data D/manifest.jsonl --out D`` with prepare's own
    list is fine: every file is already done (``--shards`` adds shards)."""
    for number, record in enumerate(records, 1):
        if not isinstance(record.get("path"), str) or not isinstance(record.get("frames"), int):
            raise ValueError(
                f"{path} is not a list vtok prepare wrote (line {number} has no path or frame count); "
                "give an --out of its own (another folder)"
            )


def data_outside_copies(sources: list[str], out: Path, data: str, listed: list[dict[str, Any]], reencode: bool) -> list[str]:
    """``sources`` without the re-encoded copies the manifest lists (``listed``; with ``--out`` inside ``--data``,
    a rerun would take an earlier run's copies for new videos). Other files under ``out`` are data
    (``--data /data/videos --out /data``).

    Raises:
        ValueError: every source is such a copy, or ``reencode`` would write copies into the folder of some.
    """
    real = RealPaths()
    copies = {real(str(_listed_file(out, record))) for record in listed if checked_file(record) != record["path"]}
    kept = [source for source in sources if real(source) not in copies]
    if sources and not kept:
        raise ValueError(
            f"all {len(sources)} videos of --data {data} are re-encoded copies that {out / 'manifest.jsonl'} lists; "
            "train on that manifest, or give --data the source videos"
        )
    copies_folder = os.path.join(os.path.realpath(out / COPIES_NAME), "")
    inside = [source for source in kept if real(source).startswith(copies_folder)]
    if reencode and inside:
        raise ValueError(
            f"{len(inside)} videos of --data {data} are in {out / COPIES_NAME} (for instance {inside[0]}), where "
            "--reencode writes its copies; give an --out whose videos/ folder is not the data's"
        )
    return kept


def remove_unfinished_copies(out: Path) -> None:
    """Deletes the half-written copies (``videos/*.partial.mp4``) that a stopped run or a stalled re-encode left."""
    folder = out / COPIES_NAME
    unfinished = sorted(folder.glob("*.partial.*")) if folder.is_dir() else []
    for path in unfinished:
        path.unlink(missing_ok=True)
    if unfinished:
        log.info("removed %d half-written copies in %s (of re-encodes that were stopped)", len(unfinished), folder)


def without_gone_files(records: list[dict[str, Any]], out: Path, list_name: str) -> list[dict[str, Any]]:
    """``records`` without the lines whose file no longer exists (deleted since, or a copy deleted: its source,
    still in ``--data``, is then checked and re-encoded again), with a warning that counts them.

    Raises:
        ValueError: no listed file exists (a file system not mounted, rather than every file deleted).
    """
    kept = [record for record in records if _listed_file(out, record).exists()]
    gone = len(records) - len(kept)
    if records and not kept:
        raise ValueError(
            f"none of the {gone} files listed in {out / list_name} exists (is a file system not mounted?); nothing "
            f"was changed: mount it, or delete {out / list_name} to drop the lines (or give another --out)"
        )
    if gone:
        example = next(record["path"] for record in records if not _listed_file(out, record).exists())
        log.warning(
            "%d files listed in %s no longer exist (for instance %s): taken out of the list", gone, out / list_name, example
        )
    return kept
