"""Where the files of a dataset come from: a folder, a glob pattern, or a manifest (CSV/JSONL/TXT)."""

from __future__ import annotations

import csv
import fnmatch
import glob
import hashlib
import itertools
import logging
import os
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from vtok.data.clips import VideoLength
from vtok.jsonfile import parse_json_object

log = logging.getLogger(__name__)
T = TypeVar("T")

VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts"})
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})
MANIFEST_SUFFIXES = frozenset({".csv", ".jsonl", ".txt"})
# The fields of a manifest line that clips are cut by: VideoLength's (frames, fps, reader, decord_check), the
# stored size small_sources reads (width, height, pixel_aspect), and a re-encoded copy's source, by which held-out
# files are found in training shards (manifest.checked_file). A line of vtok prepare's holds about 15, so a
# training run keeping every field held 2.2 KB of Python objects a line while it read the manifest, and the memory
# stayed with the process: 2.3 GB on every rank for a million lines.
CLIP_FIELDS = ("path", "frames", "fps", "reader", "decord_check", "width", "height", "pixel_aspect", "source")
# video containers a folder search does not list (not tested with vtok's readers): counted in a warning
UNLISTED_VIDEO_SUFFIXES = frozenset(
    {".flv", ".f4v", ".3gp", ".3g2", ".wmv", ".asf", ".mts", ".m2ts", ".ogv", ".vob", ".mxf", ".rm", ".rmvb", ".divx"}
)
# pictures an image search does not list (animated, or formats Pillow reads only with plugins): counted likewise
UNLISTED_IMAGE_SUFFIXES = frozenset(
    {".gif", ".heic", ".heif", ".avif", ".jxl", ".jp2", ".j2k", ".tga", ".ppm", ".pgm", ".exr", ".hdr"}
    | {".dng", ".cr2", ".nef", ".arw", ".psd"}
)
# per kind of search: the endings it leaves out, what they are, and how to convert them
_UNLISTED = {
    VIDEO_SUFFIXES: (UNLISTED_VIDEO_SUFFIXES, "videos in containers", "ffmpeg -i in.flv -c:v libx264 out.mp4"),
    IMAGE_SUFFIXES: (UNLISTED_IMAGE_SUFFIXES, "images in formats", "ffmpeg -i in.heic out.png"),
}
# per kind of search: the files of the other kind it leaves out, and where those go
_OTHER_KIND = {
    VIDEO_SUFFIXES: (IMAGE_SUFFIXES, "images", "images train beside videos through data.image_path"),
    IMAGE_SUFFIXES: (VIDEO_SUFFIXES, "videos", "videos train through data.path"),
}


def list_files(source: str | Path, suffixes: frozenset[str] = VIDEO_SUFFIXES, for_prepare: bool = False) -> list[str]:
    """The files named by ``source``: sorted, or in a manifest's order (see :func:`list_records`)."""
    return [record["path"] for record in list_records(source, suffixes, for_prepare)]


def list_clip_records(source: str | Path) -> list[dict[str, Any]]:
    """:func:`list_records` of videos, each line of a manifest kept only for its :data:`CLIP_FIELDS`."""
    return list_records(source, fields=CLIP_FIELDS)


def source_root(source: str | Path) -> str:
    """The folder a data source's files are named from, whatever files it lists: a folder itself, a manifest's
    (or a single file's) folder, or a glob pattern's folder before its first wildcard."""
    path = Path(str(source)).expanduser()
    if path.is_dir():
        return str(path)
    if path.is_file():
        return str(path.parent)
    fixed = list(itertools.takewhile(lambda part: not glob.has_magic(part), path.parts))
    return str(Path(*fixed)) if fixed else "."


def list_records(
    source: str | Path,
    suffixes: frozenset[str] = VIDEO_SUFFIXES,
    for_prepare: bool = False,
    fields: Collection[str] | None = None,
) -> list[dict[str, Any]]:
    """One record per file named by ``source``: ``{"path": ...}``, plus the other fields of a
    manifest's line or row (``frames``, ``fps``, ... as ``vtok prepare`` writes them).

    Args:
        source: a folder (searched recursively for ``suffixes``), a glob pattern (``**`` allowed),
            or a manifest: ``.jsonl`` with a ``path`` field per line, ``.csv`` with a ``path``
            column, or ``.txt`` with one path per line. Relative paths in a manifest are relative
            to the manifest's folder. A folder search follows symlinked folders, each real folder
            once (so a link loop ends; a glob follows them as :func:`glob.glob` does); both list
            each real file once (the first path in sorted order), warn with counts of what they
            left out for that, and keep dangling symlinks, which fail as "no such file" where they
            are read. A manifest's lines are kept as written, repeats included.
        suffixes: file endings a folder search keeps (case-insensitive).
        for_prepare: the listing of ``vtok prepare``, which leaves its own re-encoded copies out itself; any
            other listing warns of a folder it searches that holds prepare's output (manifest and copies).
        fields: the fields of a manifest's lines to keep (all when ``None``); :data:`CLIP_FIELDS` are the ones
            clips are cut by. Every line is checked whole all the same.

    Raises:
        FileNotFoundError: ``source`` names nothing that exists.
        ValueError: a manifest without a ``path`` column or field, or a line with a malformed
            ``frames`` or ``fps`` (the message names the manifest and the line).
    """
    text = str(source)
    path = Path(text).expanduser()
    if path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
        return _read_manifest(path, fields)
    searched_twice: list[str] = []  # symlinked folders not entered: their real folder was searched already
    trash: list[str] = []  # folders of deleted files not searched
    apple_double: set[str] = set()  # macOS metadata files named like the files they describe
    prepared: list[str] = []  # folders of re-encoded copies listed beside their sources
    if path.is_dir():
        listed = []
        for folder, names in _folders(str(path), True, searched_twice, trash):
            listed += _files_in(folder, names, "*", True)
            if not for_prepare and folder != str(path) and {"manifest.jsonl", "videos"} <= set(names):
                prepared.append(folder)  # prepare --reencode's output inside the data, beside the files it copied
        apple_double = {file for file in _apple_double(listed) if Path(file).suffix.lower() in suffixes}
        files = [file for file in listed if Path(file).suffix.lower() in suffixes and file not in apple_double]
        if suffixes in _UNLISTED:
            _warn_about_unlisted(text, listed, suffixes)
    elif path.is_file():
        return [{"path": str(path)}]
    elif glob.has_magic(text):
        # glob follows symlinked folders, and round a loop until the path gets too long: the
        # duplicates that gives are dropped below with the others
        files = [file for file in glob.glob(str(path), recursive=True) if _file_or_dangling(file)]
    else:
        raise FileNotFoundError(f"data source {text!r} is not a folder, a file, a manifest or a glob pattern that exists")
    files, repeats = unique_files(sorted(files))
    notes = [f"{len(searched_twice)} symlinked folders (e.g. {searched_twice[0]}) lead to a folder searched already "
             "(a symlink loop, or a second way to it): each folder is searched once"] if searched_twice else []
    if apple_double:
        notes.append(f"{len(apple_double)} AppleDouble files (e.g. {min(apple_double)}: the metadata macOS writes "
                     "beside a file as ._name) are left out")  # fmt: skip
    if trash:
        notes.append(f"{len(trash)} trash folders (e.g. {trash[0]}) are not searched")
    for folder in prepared:
        notes.append(f"{folder} is a vtok prepare output: its re-encoded copies in {os.path.join(folder, 'videos')} are "
                     f"listed beside their sources (each video twice); train from {os.path.join(folder, 'manifest.jsonl')}")  # fmt: skip
    if repeats:
        notes.append(f"{repeats} paths lead through symlinks to a file listed already: each file is listed once")
    if notes:
        log.warning("data source %s: %s", text, "; ".join(notes))
    return [{"path": file} for file in files]


def no_videos_found(source: str | Path, setting: str | None = None) -> ValueError:
    """The error for a data source that lists no video, saying what it holds instead where that is a common
    mix-up: ``vtok prepare``'s output folder (its manifest is the data), or a folder of WebDataset shards
    (they train through ``data.shards``). ``setting`` names the option it was given as, if any."""
    path = Path(str(source)).expanduser()
    hint = ""
    if path.is_dir() and (path / "manifest.jsonl").is_file():
        hint = f": it is a vtok prepare output folder, whose list of videos is {path / 'manifest.jsonl'}"
    elif path.is_dir() and (any(path.glob("*.tar")) or any(path.glob("*/*.tar"))):
        hint = ": it holds .tar files, which train as WebDataset shards through data.shards"
    return ValueError(f"no video files found in {setting + ' ' if setting else ''}{str(source)!r}{hint}")


class RealPaths:
    """The real path of each file (through symlinks, ``..`` and relative spellings), resolving each
    folder once rather than each file, so that a million-line manifest stays cheap."""

    def __init__(self) -> None:
        self._folders: dict[str, str] = {}

    def __call__(self, path: str) -> str:
        if os.path.islink(path):
            return os.path.realpath(path)
        folder, name = os.path.split(os.path.abspath(path))
        if folder not in self._folders:
            self._folders[folder] = os.path.realpath(folder)
        return os.path.join(self._folders[folder], name)


def files_outside(paths: Sequence[str], folder: str | Path) -> list[str]:
    """``paths`` in order without the files under ``folder``, however either is spelt (relative, absolute, or
    through a symlinked folder), and logs how many were left out. A command that reads ``--data`` and writes
    videos under ``--out`` calls it: with ``--out`` inside ``--data``, a rerun would otherwise read what the
    earlier run wrote (``vtok prepare``'s re-encoded copies, ``vtok evaluate``'s pictures) as data."""
    spelt, real_folder = os.path.join(os.path.abspath(folder), ""), os.path.join(os.path.realpath(folder), "")
    real = RealPaths()  # a file reached through another spelling (a symlinked --data) is still inside
    kept = [p for p in paths if not (os.path.abspath(p).startswith(spelt) or real(p).startswith(real_folder))]
    if len(kept) < len(paths):
        log.info("%d files inside the output folder %s are not taken as data", len(paths) - len(kept), folder)
    return kept


def unique_files(paths: Sequence[str]) -> tuple[list[str], int]:
    """``paths`` in order without those that lead to a file already listed (the same real path,
    through symlinks), and how many were left out."""
    kept = _first_of_each_file(paths, lambda path: path)
    return kept, len(paths) - len(kept)


def unique_records(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first line of each file ``records`` lists, in order (the same real path however spelt: relative and
    absolute, through a symlink): a video scored (validation, test, evaluate) is read and counted once however
    often a manifest repeats it; how many lines were left out is said at INFO."""
    kept = _first_of_each_file(records, lambda record: record["path"])
    if len(kept) < len(records):
        log.info("%d paths lead to a video listed before them: each video is taken once", len(records) - len(kept))
    return kept


def _first_of_each_file(items: Sequence[T], path_of: Callable[[T], str]) -> list[T]:
    """``items`` in order without those whose path (``path_of``) leads to a file an earlier one leads to."""
    real, first = RealPaths(), {}
    for item in items:
        first.setdefault(real(path_of(item)), item)
    return list(first.values())


def _listdir(folder: str) -> list[str] | None:
    try:
        return sorted(os.listdir(folder))
    except OSError as error:
        log.warning("cannot list folder %s (%s): its files are left out", folder, error.strerror or error)
        return None


def _warn_about_unlisted(source: str, files: list[str], suffixes: frozenset[str]) -> None:
    """Counts, by ending, the videos (or images) of a folder search that no reader of vtok's takes (``.flv``,
    ``.wmv``, ``.heic``, ...), and the files of the other kind (images in a video search): left out, they
    would otherwise be in no list at all."""
    unlisted_suffixes, what, example = _UNLISTED[suffixes]
    unlisted = Counter(suffix for suffix in (Path(file).suffix.lower() for file in files) if suffix in unlisted_suffixes)
    if unlisted:
        log.warning(
            "data source %s: %d %s vtok does not read are left out (%s); convert them to one of %s (for instance: %s)",
            source, sum(unlisted.values()), what, ", ".join(f"{suffix} {count}" for suffix, count in unlisted.most_common()),
            ", ".join(sorted(suffixes)), example,
        )  # fmt: skip
    other_suffixes, others, where = _OTHER_KIND[suffixes]
    other = sum(Path(file).suffix.lower() in other_suffixes for file in files)
    if other:
        log.warning("data source %s: %d %s are left out of this search (%s)", source, other, others, where)


def _folders(root: str, hidden: bool, searched_twice: list[str], trash: list[str]) -> Iterator[tuple[str, list[str]]]:
    """``(folder, names in it)`` for ``root`` and the folders under it, depth first in sorted order,
    following symlinked folders: each real folder once (at the first path met), so a symlink loop
    ends; the paths not entered for that are added to ``searched_twice``. Hidden folders below
    ``root`` only with ``hidden``; the trash folders of desktops and file servers below it never (added
    to ``trash``): they hold deleted files."""
    seen: set[str] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        real = os.path.realpath(folder)
        if real in seen:
            searched_twice.append(folder)
            continue
        seen.add(real)
        names = _listdir(folder)
        if names is None:
            continue
        yield folder, names
        subfolders = [os.path.join(folder, n) for n in names if hidden or not n.startswith(".")]
        subfolders = [f for f in subfolders if os.path.isdir(f)]
        trash += [f for f in subfolders if _TRASH.fullmatch(os.path.basename(f))]
        stack.extend(reversed([f for f in subfolders if not _TRASH.fullmatch(os.path.basename(f))]))


# the folders desktops (freedesktop, macOS) and Windows keep deleted files in, and Synology's thumbnails
_TRASH = re.compile(r"\.Trash(-\d+)?|\.Trashes|\$RECYCLE\.BIN|@eaDir")


def _apple_double(files: list[str]) -> set[str]:
    """The AppleDouble files among ``files``: ``._name`` beside ``name`` (macOS writes one beside each file
    it copies to a disk that cannot hold its metadata; decord cannot open them, yet they are named like videos)."""
    listed = set(files)
    return {
        file for file in files
        if os.path.basename(file).startswith("._") and os.path.join(os.path.dirname(file), os.path.basename(file)[2:]) in listed
    }  # fmt: skip


def _files_in(folder: str, names: list[str], pattern: str, hidden: bool) -> list[str]:
    """The entries of ``folder`` matching ``pattern`` that are not folders: files, and symlinks that
    lead nowhere (dangling, or a loop), kept so that reading them reports them."""
    paths = [os.path.join(folder, n) for n in fnmatch.filter(names, pattern) if hidden or not n.startswith(".")]
    return [p for p in paths if _file_or_dangling(p)]


def _file_or_dangling(path: str) -> bool:
    return os.path.isfile(path) or (os.path.islink(path) and not os.path.exists(path))


def _read_manifest(path: Path, fields: Collection[str] | None) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    # -sig: a byte-order mark (Excel's CSV) is no column name; surrogateescape: a name whose bytes are not UTF-8
    # (`find > list.txt` over an old Latin-1 dataset) reads as the folder listing spells it
    with path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as handle:
        if suffix == ".txt":
            lines = (line.strip() for line in handle)
            records = [{"path": line} for line in lines if line and not line.startswith("#")]
        elif suffix == ".csv":
            reader = csv.DictReader(handle, skipinitialspace=True)  # "path, frames": a value's leading space is no part of it
            reader.fieldnames = [name.strip() for name in reader.fieldnames or []]  # nor a column name's
            if not reader.fieldnames or "path" not in reader.fieldnames:
                raise ValueError(f"manifest {path} has no 'path' column (columns: {reader.fieldnames})")
            records = []
            for row in reader:
                if not (row["path"] or "").strip():
                    raise ValueError(f"manifest {path}, line {reader.line_num}, has an empty 'path'")
                _check_length(row, f"manifest {path}, line {reader.line_num},")
                records.append(_only(row, fields))
        else:
            records = []
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                record = parse_json_object(line, f"manifest {path}, line {number},")
                if not isinstance(record.get("path"), str) or not record["path"]:
                    raise ValueError(f"manifest {path}, line {number}, has no 'path' field holding a file path")
                _check_length(record, f"manifest {path}, line {number},")
                records.append(_only(record, fields))
    for record in records:
        if not Path(record["path"]).is_absolute():
            record["path"] = str(path.parent / record["path"])
    return records


def _only(record: dict[str, Any], fields: Collection[str] | None) -> dict[str, Any]:
    """``record`` with only ``fields``, keyed by the strings of ``fields``: each line's parse makes its own keys,
    and a kept key of its own costs 50-60 bytes a field a line."""
    return record if fields is None else {name: record[name] for name in fields if name in record}


def _check_length(record: dict[str, Any], where: str) -> None:
    """Refuses a line whose ``frames`` or ``fps`` training could not use, naming the line, before any
    training starts (rather than failing far from the manifest, or quietly ignoring ``data.fps``)."""
    try:
        VideoLength.from_record(record)
    except ValueError as error:
        raise ValueError(f"{where} {error}") from None


def file_key(path: str | Path, hashed: str | Path | None = None) -> str:
    """A short name for a file that stays unique across folders: ``<stem>-<8 hex of sha1(path)>``, the path as
    written (its stem as :func:`printable_path` gives it); with ``hashed`` (such as the file's real path, one for
    every spelling of it), the sha1 of that."""
    digest = hashlib.sha1(os.fsencode(path if hashed is None else hashed))  # the name's bytes, UTF-8 or not
    return f"{Path(printable_path(path)).stem}-{digest.hexdigest()[:8]}"


def printable_path(path: str | Path) -> str:
    """``path`` as text that UTF-8 files and headers take: a name's bytes that are not UTF-8 (an old Latin-1 name,
    which Python reads as surrogate escapes) written ``\\xNN``; any other path unchanged. For what vtok writes
    about a file (token headers, CSV, reports), never to open it: a safetensors header or a CSV of such a raw path
    failed and stopped the whole run."""
    text = os.fspath(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(text).decode("utf-8", "backslashreplace")
    return text
