"""Which shards ``data.shards`` names (a folder, a glob, brace patterns, URLs, ``pipe:`` commands, joined with
``::``), and their sample counts from ``vtok prepare``'s ``index.json``, looked up by each shard's file name."""

from __future__ import annotations

import glob
import logging
import re
import shlex
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import webdataset as wds

from vtok.data.shard_writer import INDEX_NAME
from vtok.jsonfile import read_json_object

log = logging.getLogger(__name__)

_TAR = re.compile(r"\.(tar|tgz)(\.\w+)?$")


def shard_file_name(shard: str) -> str:
    """The name ``vtok prepare``'s ``index.json`` lists ``shard`` under: a path's file name; a URL's last path part
    (without a query, such as a signed URL's ``?X-Amz-Signature=...``); for a ``pipe:`` command, that of its last
    argument naming a tar file (``pipe:aws s3 cp s3://bucket/shard-000000.tar -`` is ``shard-000000.tar``), or the
    whole command when none does. The name of the command's end (``shard-000000.tar -``) matched no entry, so the
    README's own S3 form never found its sample counts, and ranks ended an epoch at different steps."""
    if not shard.startswith("pipe:"):
        return PurePosixPath(_path_of(shard)).name
    try:
        words = shlex.split(shard[len("pipe:"):])
    except ValueError:  # an unclosed quote: the shell would refuse it too, and the stream says so
        words = shard[len("pipe:"):].split()
    tars = [_path_of(word) for word in words if _TAR.search(_path_of(word))]
    return PurePosixPath(tars[-1]).name if tars else shard


def _path_of(word: str) -> str:
    return urlsplit(word).path if "://" in word else word


def _is_local(url: str) -> bool:
    return "://" not in url and not url.startswith("pipe:")


def expand_shards(spec: str) -> list[str]:
    """The shard URLs named by ``spec``.

    Args:
        spec: a folder of ``.tar`` files, a local glob (``/data/*/shards/*.tar``), or anything WebDataset
            expands: a path or URL with brace patterns (``/data/shard-{000000..000099}.tar``,
            ``https://host/s-{00..09}.tar``, ``pipe:aws s3 cp s3://bucket/s-{00..09}.tar -``); several of
            these joined with ``::``.

    Raises:
        FileNotFoundError: a local shard does not exist.
        ValueError: ``spec`` (or one of its ``::`` parts) names no shard.
    """
    shards = [shard for part in spec.split("::") for shard in _expand_part(part, spec)]
    missing = [s for s in shards if _is_local(s) and not Path(s).expanduser().is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} shards of {spec!r} do not exist (first: {missing[0]}); check data.shards")
    return shards


def _expand_part(part: str, spec: str) -> list[str]:
    """The shards one ``::`` part of ``spec`` names (see :func:`expand_shards`)."""
    if not part.strip():  # `a.tar::` or `::b`: an empty path is the working directory, whose .tar files were taken
        raise ValueError(f"data.shards {spec!r} has an empty part between its '::'; remove the extra '::'")
    local = Path(part).expanduser() if _is_local(part) else None
    if local is not None and local.is_dir():
        shards = sorted(str(p) for p in local.glob("*.tar"))
    elif local is not None and not local.exists() and "{" not in part and any(c in part for c in "*?["):
        # a folder named like a pattern (`run[1]`) is taken as named; only the file names are matched then
        found = local.parent.glob(local.name) if local.parent.is_dir() else map(Path, glob.glob(str(local)))
        shards = sorted(str(path) for path in found if path.suffix == ".tar")
    else:  # an existing file as named, brace patterns and URLs as WebDataset expands them
        shards = [str(local)] if local is not None and local.is_file() else wds.shardlists.expand_urls(part)
    if not shards:
        where = f"{part!r}" if part == spec else f"{part!r} (of {spec!r})"
        hint = "write some with `vtok prepare --shards`"
        if local is not None and any((local / "shards").glob("*.tar")):
            hint = f"`vtok prepare` wrote them to {str(local / 'shards')!r}: give that folder"
        raise ValueError(f"no shards (.tar files) in {where}; {hint}")
    return shards


def shard_index(shards: Sequence[str], index: str | None = None) -> str | None:
    """The shards' ``index.json``: ``index``, else the one beside local shards; ``None`` when there is none."""
    if index is None:
        folder = Path(shards[0]).parent if _is_local(shards[0]) else None
        if folder is None or not (folder / INDEX_NAME).is_file():
            return None
        index = str(folder / INDEX_NAME)
    return str(Path(index).expanduser())  # data.shard_index: ~/... from a config file


def shard_counts(shards: Sequence[str], index: str | None = None) -> list[int] | None:
    """Samples per shard from ``vtok prepare``'s ``index.json`` (see :func:`shard_index`), each local folder's
    own when the shards lie in several and no ``index`` is given; ``None`` when there is no index or it lacks
    one of the shards (said with the shards' names)."""
    folders = list(dict.fromkeys(Path(shard).parent for shard in shards))
    if index is None and len(folders) > 1 and all(_is_local(shard) for shard in shards):
        # shards of several `vtok prepare` outputs: each folder's own index gives its shards' counts
        counts: dict[str, int] = {}
        for folder in folders:
            theirs = [shard for shard in shards if Path(shard).parent == folder]
            found = shard_counts(theirs)
            if found is None:
                if shard_index(theirs) is None:  # else the stale index was named
                    log.warning("%s holds no index.json from `vtok prepare --shards`: the sample counts of the shards of "
                                "data.shards are unknown", folder)  # fmt: skip
                return None
            counts.update(zip(theirs, found))
        return [counts[shard] for shard in shards]
    index = shard_index(shards, index)
    if index is None:
        return None
    try:
        entries = {entry["name"]: int(entry["samples"]) for entry in read_json_object(index)["shards"]}
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"shard index {index} is not one written by `vtok prepare --shards` ({error})") from None
    folder = Path(index).parent
    if _is_local(shards[0]) and Path(shards[0]).parent == folder:  # the shards' own index: each entry a file beside it
        absent = [name for name in entries if not (folder / name).exists()]
        if absent:  # deleted, or not copied: training went on with the others without a word
            log.warning(
                "%d of the %d shards %s lists are not in %s (%s%s): training reads the %d shards there are",
                len(absent), len(entries), index, folder, ", ".join(absent[:3]), "..." if len(absent) > 3 else "",
                len(shards),
            )  # fmt: skip
    unlisted = [shard for shard in shards if shard_file_name(shard) not in entries]
    if unlisted:
        log.warning(
            "%d of the %d shards are not in %s (%s%s): their sample counts are unknown. %s",
            len(unlisted), len(shards), index, ", ".join(unlisted[:3]), "..." if len(unlisted) > 3 else "",
            "If an interrupted `vtok prepare --shards` left them, rerun it (it removes them and shards their samples "
            "again); otherwise move them out" if _is_local(unlisted[0]) else
            "Give data.shard_index the index.json written with these shards, looked up by file name",
        )  # fmt: skip
        return None
    return [entries[shard_file_name(shard)] for shard in shards]
