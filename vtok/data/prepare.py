"""``vtok prepare``'s work: verify every video once, describe it, optionally re-encode it, shard it.

Output folder ``D``:

- ``D/manifest.jsonl``: one :class:`~vtok.data.manifest.VideoInfo` line per usable video, with
  the frame count that really decodes; train on it with ``--data.path D/manifest.jsonl``.
- ``D/rejected.jsonl``: ``{"path", "reason"}`` per file that cannot be used.
- ``D/videos/``: the re-encoded videos (``reencode``); the manifest points at them.
- ``D/shards/``: WebDataset shards of the manifest's videos and their ``index.json`` (``shards``).

A second run skips every file already in the manifest or the rejected list (it decodes nothing
for them), so an interrupted run carries on where it stopped, and a grown folder costs only its
new files. Lines of files that no longer exist are taken out of the manifest (a source whose re-encoded copy
was deleted is checked and re-encoded again). Two kinds of lines are checked again, their old lines taken out
of the lists: those of
files whose size or modification time changed since (lines of a vtok that did not record them are
not), and rejections the settings decided: a file rejected as too short, by a run with a
``--min-frames`` it may meet, and one whose decoding stalled, by a run with a longer ``--timeout``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from vtok.data.errors import UnusableFileError
from vtok.data.manifest import (
    VideoInfo,
    append_line,
    appending,
    changed_since_checked,
    checked_file,
    file_version,
    read_jsonl,
    sample_key,
)
from vtok.data.probe import TooFewFramesError, probe_video
from vtok.data.readers import ReaderBackend
from vtok.data.reencode import reencode_video
from vtok.data.scan_pool import STALLED, run_with_deadlines
from vtok.data.shard_writer import read_index, record_key, write_shards
from vtok.data.prepare_folder import (
    data_outside_copies,
    refuse_foreign_manifest,
    remove_unfinished_copies,
    without_gone_files,
)
from vtok.data.sources import RealPaths, list_files, no_videos_found, unique_files
from vtok.disk_errors import is_output_disk_error

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.jsonl"
REJECTED_NAME = "rejected.jsonl"
SHARDS_NAME = "shards"


@dataclass(frozen=True)
class PrepareOptions:
    """How ``vtok prepare`` scans, re-encodes and shards.

    Args:
        workers: decoding processes (0: in this process, without the stall deadline).
        backend: the reader training uses: ``"auto"``, ``"decord"`` or ``"pyav"``.
        min_frames: files with fewer decodable frames are rejected (set it to one clip's span).
        timeout: seconds one file may take before it is rejected as stalled.
        every_frame: decode every frame of every file (not only the first, middle and last) and keep
            the frames before the first that fails: finds damage inside a file, at one decode's cost.
        reencode: re-encode accepted videos to ``D/videos`` as H.264 and list those instead.
        short_side: with ``reencode``, scale so the short side has this many pixels (never enlarged).
        keyframe_interval: with ``reencode``, at most this many frames between keyframes.
        crf: with ``reencode``, H.264 quality (lower is better; 18 is visually lossless).
        shards: write the manifest's videos into WebDataset shards in ``D/shards``.
        shard_mb: target shard size in megabytes.
        shard_samples: at most this many videos per shard (``None``: only the size limits a shard).
        seed: seed of the order in which videos are written into shards.
        progress: show a progress bar.
    """

    workers: int = 2
    backend: ReaderBackend = "auto"
    min_frames: int = 1
    timeout: float = 120.0
    every_frame: bool = False
    reencode: bool = False
    short_side: int | None = None
    keyframe_interval: int = 8
    crf: int = 18
    shards: bool = False
    shard_mb: float = 256.0
    shard_samples: int | None = None
    seed: int = 0
    progress: bool = True


@dataclass
class PrepareSummary:
    """What a ``vtok prepare`` run did (returned, and printed by the command).

    Args:
        out: the output folder.
        found: files the data source lists, each real file once.
        duplicates: paths of the data source left out because they lead (through symlinks, or as a
            manifest's repeated line) to a file already listed: it is checked, and trained on, once.
        known: of those, files already in the manifest or the rejected list (not decoded again).
        probed: files decoded this run.
        accepted: files added to the manifest this run.
        shortened: of those, files kept with fewer frames than their header claims (``reported_frames``).
        rejected: ``(path, reason)`` of the files rejected this run.
        manifest_total: lines in the manifest now.
        rejected_total: lines in the rejected list now.
        shards_written: shards added this run.
    """

    out: Path
    found: int = 0
    duplicates: int = 0
    known: int = 0
    probed: int = 0
    accepted: int = 0
    shortened: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)
    manifest_total: int = 0
    rejected_total: int = 0
    shards_written: int = 0

    def describe(self, max_reasons: int = 10) -> str:
        """The short human summary printed at the end of the command."""
        lines = [
            f"vtok prepare: {self.found} files, {self.known} already done, {self.probed} checked now: "
            f"{self.accepted} accepted, {len(self.rejected)} rejected",
            *(
                [f"  {self.duplicates} more paths lead to files already listed (symlinks or repeated lines): left out"]
                if self.duplicates
                else []
            ),
            *(
                [f"  {self.shortened} of the accepted keep only the frames before damage (see reported_frames)"]
                if self.shortened
                else []
            ),
            f"  manifest: {self.out / MANIFEST_NAME} ({self.manifest_total} videos)",
            f"  rejected: {self.out / REJECTED_NAME} ({self.rejected_total} file{'' if self.rejected_total == 1 else 's'})",
        ]
        lines += [f"    {Path(path).name}: {reason}" for path, reason in self.rejected[:max_reasons]]
        if len(self.rejected) > max_reasons:
            lines.append(f"    ... and {len(self.rejected) - max_reasons} more")
        if self.shards_written:
            lines.append(f"  shards: {self.shards_written} new in {self.out / 'shards'}")
        return "\n".join(lines)


def check_file(source: str, out: Path, options: PrepareOptions) -> dict[str, Any]:
    """Verifies (and optionally re-encodes) one file: ``{"accepted": line}`` or ``{"rejected": line}``.

    Runs in a worker process; never raises for a bad file (a disk that refuses a re-encoded copy stops the run:
    :mod:`vtok.disk_errors`).
    """
    version = file_version(source)  # before reading it: a file still changing is checked again by the next run
    try:
        open(source, "rb").close()
    except PermissionError as error:  # no version recorded: the next run checks it again (a chmod changes neither)
        return {"rejected": {"path": source, "reason": f"cannot read it ({error.strerror})"}}
    except OSError:
        pass  # missing, a dangling link, a folder: the reader says which (with no version, checked again next run)
    try:
        info = probe_video(source, options.backend, options.min_frames, options.every_frame)
        if options.reencode:
            info = _reencode(info, out, options)
        if options.every_frame:
            info = dataclasses.replace(info, every_frame=True)
        return {"accepted": {**info.to_record(), **version}}
    except TooFewFramesError as error:  # the count lets a run with a lower --min-frames take it
        return {"rejected": {"path": source, "reason": error.reason, "frames": error.frames, **version}}
    except UnusableFileError as error:
        return {"rejected": {"path": source, "reason": error.reason, **version}}
    except Exception as error:  # a decoder failing in a way no reader anticipated: still not fatal
        if is_output_disk_error(error):  # the copy's disk, not the file: stop, and leave it to the next run
            raise
        log.debug("unexpected error on %s", source, exc_info=True)
        reason = f"unexpected {type(error).__name__}: {str(error)[:200]}"
        return {"rejected": {"path": source, "reason": reason, **version}}


def _reencode(info: VideoInfo, out: Path, options: PrepareOptions) -> VideoInfo:
    relative = Path("videos") / f"{sample_key(info.path)}.mp4"
    try:
        copy = reencode_video(
            info.path, out / relative, info.frames, info.fps or 24.0, options.short_side, options.keyframe_interval, options.crf
        )
    except Exception as error:
        if is_output_disk_error(error):  # a full disk says nothing of the source: recorded, it was never checked again
            raise
        raise UnusableFileError(info.path, f"re-encoding failed ({str(error)[:200]})") from None
    try:
        written = probe_video(str(out / relative), options.backend, options.min_frames)  # the copy is what training reads
    except Exception:  # a copy too short (or unreadable) is rejected with its source: no file left unlisted
        (out / relative).unlink(missing_ok=True)
        raise
    damaged = copy.source_frames < info.frames  # the re-encoder decodes in order and stops at a damaged frame
    if damaged:
        log.info("%s: %d of %d frames decode in order; the copy keeps %d",
                 info.path, copy.source_frames, info.frames, written.frames)  # fmt: skip
    if written.frames != copy.source_frames:  # frames repeated or dropped to keep their times
        log.info("%s: a variable frame rate; the copy at a constant %g fps holds %d frames",
                 info.path, info.fps or 24.0, written.frames)  # fmt: skip
    reported = info.reported_frames or (info.frames if damaged else None)  # the source's claim
    return VideoInfo(
        **{**written.to_record(), "path": str(relative), "source": info.path, "reported_frames": reported},
        reencoded_with=_reencode_settings(options),
    )


def _reencode_settings(options: PrepareOptions) -> dict[str, Any]:
    """The settings a re-encoded copy is written with, as its manifest line records them."""
    return {"short_side": options.short_side, "keyframe_interval": options.keyframe_interval, "crf": options.crf}


def _results(todo: list[str], check: Callable[[str], dict[str, Any]], options: PrepareOptions) -> Iterator[tuple[str, dict]]:
    if options.workers == 0:
        yield from ((source, check(source)) for source in todo)
        return
    for source, result in run_with_deadlines(check, todo, options.workers, options.timeout, preload=[__name__]):
        if result is STALLED:
            reason = f"decoding stalled: no answer in {options.timeout:g} s"
            result = {"rejected": {"path": source, "reason": reason, "timeout": options.timeout, **file_version(source)}}
        yield source, result


def _warn_about_earlier_settings(accepted: list[dict[str, Any]], options: PrepareOptions, out: Path) -> None:
    """Files already listed are not checked again, so settings that would change them do not apply."""
    settings = _reencode_settings(options)
    other_copies = "re-encoded with other settings than " + ", ".join(
        f"--{name.replace('_', '-')} {value}" if value is not None else f"no --{name.replace('_', '-')}"
        for name, value in settings.items()
    )
    listed = {
        "not re-encoded": 0,
        other_copies: 0,
        f"shorter than --min-frames {options.min_frames}": 0,
        "not checked with --every-frame": 0,
    }
    for record in accepted:
        listed["not re-encoded"] += options.reencode and "source" in record and record["path"] == record["source"]
        listed[other_copies] += options.reencode and record.get("reencoded_with", settings) != settings
        listed["not checked with --every-frame"] += options.every_frame and not record.get("every_frame")
        listed[f"shorter than --min-frames {options.min_frames}"] += record["frames"] < options.min_frames
    for what, count in listed.items():
        if count:
            log.warning(
                "%d videos already in %s are %s: an earlier run listed them with other settings, and files already "
                "listed are not checked again; use a new --out to apply these settings to them",
                count, out / MANIFEST_NAME, what,
            )  # fmt: skip


_TOO_SHORT = re.compile(r"too short: (\d+) frames decode")
_STALLED = re.compile(r"decoding stalled: no answer in ([0-9.e+-]+) s")


def _deciding_settings(rejection: dict[str, Any]) -> tuple[int | None, float | None]:
    """``(frames, timeout)``: the decoded frames of a file rejected as too short, the deadline of one
    that stalled (``None`` for other rejections). Lines of a vtok that did not record them as fields
    give them in their reason."""
    reason = str(rejection.get("reason", ""))
    too_short, stalled = _TOO_SHORT.match(reason), _STALLED.match(reason)
    return (
        rejection.get("frames", int(too_short[1]) if too_short else None),
        rejection.get("timeout", float(stalled[1]) if stalled else None),
    )


def _settings_may_change(rejection: dict[str, Any], options: PrepareOptions) -> bool:
    """Whether this run's settings could accept a file an earlier run rejected: too short for that
    run's ``--min-frames`` but not for this one's, or stalled within a shorter ``--timeout`` (with a
    deadline: ``--workers 0`` has none, and a file that hangs the decoder would hang the run); also a file
    that could not be read or was not there (no recorded size and time: a link's target made later, a
    ``chmod``, change neither), and one an earlier vtok rejected without recording them."""
    frames, timeout = _deciding_settings(rejection)
    if timeout is not None:
        return options.workers > 0 and options.timeout > timeout
    if "source_bytes" not in rejection:
        return True
    return frames is not None and frames >= options.min_frames


def _take_back(
    rejected: list[dict[str, Any]], sources: set[str], real: RealPaths, options: PrepareOptions, out: Path
) -> list[dict[str, Any]]:
    """The rejections of ``sources`` (real paths) this run checks again (see :func:`_settings_may_change`),
    taken out of the rejected list on disk (rewritten whole, then renamed into place); the others are returned."""
    kept, again = [], []
    for record in rejected:
        (again if real(record["path"]) in sources and _settings_may_change(record, options) else kept).append(record)
    stalled = sum(_deciding_settings(record)[1] is not None for record in kept)
    if stalled:
        log.warning(
            "%d files in %s stalled within an earlier run's --timeout and are not checked again; a longer "
            "--timeout checks them again", stalled, out / REJECTED_NAME,
        )  # fmt: skip
    if again:
        log.info("checking %d files again that an earlier run rejected with other settings or could not read", len(again))
        _rewrite_jsonl(out / REJECTED_NAME, kept)
    return kept


def _rewrite_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    """Replaces a JSONL file with ``records`` in one step (written whole, then renamed into place)."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text("".join(json.dumps(record) + "\n" for record in records))
    partial.replace(path)


def _take_back_changed(
    accepted: list[dict[str, Any]], rejected: list[dict[str, Any]], sources: set[str], real: RealPaths, out: Path
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, str]]:
    """The lines of files that changed (size or modification time) since they were checked, taken out of
    both lists on disk so that this run checks them again; returns the lists kept, and each such file's
    spelling in its old line by real path (checked again under it, its new line keeps its sample key: one
    already sharded through another spelling of its folder was otherwise sharded a second time). Without this
    a file still being copied when it was checked stayed rejected for good, and a replaced file kept the old
    file's frame count (and, with ``--shards``, its new bytes were sharded beside the old metadata)."""

    def changed(record: dict[str, Any]) -> bool:
        scanned = checked_file(record)
        return real(scanned) in sources and changed_since_checked(record, scanned)

    accepted_changed, rejected_changed = [changed(r) for r in accepted], [changed(r) for r in rejected]
    gone = [record for record, flag in zip(accepted, accepted_changed) if flag]
    again = gone + [record for record, flag in zip(rejected, rejected_changed) if flag]
    if not again:
        return accepted, rejected, {}
    log.warning(
        "%d files changed since an earlier run checked them (size or modification time; for instance %s): "
        "checking them again", len(again), checked_file(again[0]),
    )  # fmt: skip
    for record in gone:
        if checked_file(record) != record["path"] and not Path(record["path"]).is_absolute():
            (out / record["path"]).unlink(missing_ok=True)  # the old file's re-encoded copy
    sharded = read_index(out / SHARDS_NAME).get("keys", {})
    stale = sum(record_key(record) in sharded for record in gone)
    if stale:
        log.warning(
            "%d of the changed files are already in %s, which keep the bytes they were sharded with (shards are "
            "only added to); write the shards to a new --out to take the new files", stale, out / SHARDS_NAME,
        )  # fmt: skip
    kept = []
    for name, records, flags in ((MANIFEST_NAME, accepted, accepted_changed), (REJECTED_NAME, rejected, rejected_changed)):
        kept.append([record for record, flag in zip(records, flags) if not flag])
        if any(flags):
            _rewrite_jsonl(out / name, kept[-1])
    spellings = {real(checked_file(record)): checked_file(record) for record in again}
    return kept[0], kept[1], spellings


def prepare_dataset(data: str, out: str | Path, options: PrepareOptions | None = None) -> PrepareSummary:
    """Scans the videos of ``data`` into ``out`` (see the module docstring for what is written).

    Args:
        data: a folder, a glob pattern, or a manifest, as for training (``data.path``).
        out: the output folder (created).
        options: see :class:`PrepareOptions`.

    Raises:
        FileNotFoundError: ``data`` names nothing that exists.
        ValueError: ``data`` lists no video, or none of its videos is usable.
    """
    options = options or PrepareOptions()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    remove_unfinished_copies(out)  # before listing: with --out inside --data they would be listed as videos
    sources, duplicates = unique_files([os.path.abspath(p) for p in list_files(data, for_prepare=True)])
    if not sources:
        raise no_videos_found(data)
    accepted = read_jsonl(out / MANIFEST_NAME)
    refuse_foreign_manifest(accepted, out / MANIFEST_NAME)
    sources = data_outside_copies(sources, out, data, accepted, options.reencode)
    kept = without_gone_files(accepted, out, MANIFEST_NAME)  # rejected lines stay: many name files that never were
    if len(kept) < len(accepted):
        accepted = kept
        _rewrite_jsonl(out / MANIFEST_NAME, accepted)
    real = RealPaths()  # a file listed under another spelling (a symlinked folder) is the same file
    real_sources = {real(source) for source in sources}
    rejected = _take_back(read_jsonl(out / REJECTED_NAME), real_sources, real, options, out)
    accepted, rejected, spellings = _take_back_changed(accepted, rejected, real_sources, real, out)
    known = {real(checked_file(r)) for r in accepted} | {real(r["path"]) for r in rejected}
    todo = [spellings.get(real(source), source) for source in sources if real(source) not in known]
    _warn_about_earlier_settings(accepted, options, out)
    summary = PrepareSummary(out, len(sources), duplicates, known=len(sources) - len(todo), probed=len(todo))
    log.info("%d files, %d already in %s: checking %d", len(sources), summary.known, out, len(todo))
    check = functools.partial(check_file, out=out, options=options)
    with (
        appending(out / MANIFEST_NAME) as manifest,
        appending(out / REJECTED_NAME) as rejects,
        tqdm(total=len(todo), unit="file", desc="checking videos", disable=not options.progress or not todo) as bar,
    ):
        for _, result in _results(todo, check, options):
            if "accepted" in result:
                append_line(manifest, result["accepted"])
                accepted.append(result["accepted"])
                summary.accepted += 1
                summary.shortened += "reported_frames" in result["accepted"]
            else:
                append_line(rejects, result["rejected"])
                rejected.append(result["rejected"])
                summary.rejected.append((result["rejected"]["path"], result["rejected"]["reason"]))
            bar.update()
    remove_unfinished_copies(out)  # of files that stalled while re-encoded
    summary.manifest_total, summary.rejected_total = len(accepted), len(rejected)
    if not accepted:
        raise ValueError(
            f"none of the {len(sources)} files of {data!r} is usable; the reasons are in {out / REJECTED_NAME}"
        )
    if options.shards:
        shards = out / SHARDS_NAME
        written = write_shards(accepted, out, shards, options.shard_mb, options.seed, options.shard_samples, options.progress)
        summary.shards_written = len(written)
    return summary
