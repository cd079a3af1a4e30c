"""How ``data.shards`` names shards: a folder, a local glob, brace patterns, several joined with ``::``, and
the sample counts that each folder's own ``index.json`` gives."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from vtok.commands.prepare import main as prepare
from vtok.data.shard_lists import expand_shards, shard_counts


@pytest.fixture(scope="module")
def two_outputs(video_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two `vtok prepare --shards` outputs, ``root/a`` (3 videos) and ``root/b`` (4), two samples a shard."""
    root = tmp_path_factory.mktemp("two")
    videos = sorted(video_folder.glob("*.mp4"))
    for name, chosen in (("a", videos[:3]), ("b", videos[3:7])):
        data = root / f"{name}_videos"
        data.mkdir()
        for video in chosen:
            shutil.copy(video, data / video.name)
        prepare(["--data", str(data), "--out", str(root / name), "--shards", "--shard-samples", "2", "--no-progress",
                 "--workers", "0"])  # fmt: skip
    return root


def _indexed(folder: Path) -> dict[str, int]:
    return {entry["name"]: entry["samples"] for entry in json.loads((folder / "index.json").read_text())["shards"]}


def test_a_glob_and_folders_joined_with_colons_name_the_same_shards_with_each_folders_counts(two_outputs: Path) -> None:
    """Counts were looked up by file name in the first folder's index only: the second folder's shards
    took the first's counts (wrong quotas) with a warning that the index was stale."""
    by_glob = expand_shards(str(two_outputs / "*" / "shards" / "*.tar"))
    joined = expand_shards(f"{two_outputs / 'a' / 'shards'}::{two_outputs / 'b' / 'shards'}")
    assert by_glob == joined and len(by_glob) == 4
    expected = [_indexed(Path(shard).parent)[Path(shard).name] for shard in by_glob]
    assert shard_counts(by_glob) == expected == [2, 1, 2, 2]


def test_a_prepare_output_folder_or_a_glob_that_matches_nothing_is_a_clear_error(two_outputs: Path) -> None:
    with pytest.raises(ValueError, match=f"vtok prepare` wrote them to '{two_outputs / 'a' / 'shards'}'"):
        expand_shards(str(two_outputs / "a"))
    with pytest.raises(ValueError, match=r"no shards \(.tar files\) in '.*/nothing-\*.tar'"):
        expand_shards(str(two_outputs / "nothing-*.tar"))


def test_folders_named_like_patterns_are_taken_as_named_and_an_empty_part_is_refused(two_outputs: Path, tmp_path: Path) -> None:
    """A folder `run[1]` was read as a glob class (no shards found); `a::` added the working directory's .tar files."""
    folder = tmp_path / "run[1]"
    shutil.copytree(two_outputs / "a" / "shards", folder)
    expected = sorted(str(path) for path in folder.glob("*.tar"))
    assert expand_shards(str(folder)) == expected
    assert expand_shards(str(folder / "*.tar")) == expected
    assert expand_shards(str(folder / "shard-{000000..000001}.tar")) == expected
    assert expand_shards(expected[0]) == expected[:1]
    for spec in (f"{folder}::", f"::{folder}", f"{folder}::::{folder}"):
        with pytest.raises(ValueError, match="has an empty part between its '::'"):
            expand_shards(spec)


def test_folders_where_one_lacks_its_index_name_that_folder(
    two_outputs: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The counts were unknown without a word of which folder had no index.json."""
    unindexed = tmp_path / "copied"
    shutil.copytree(two_outputs / "b" / "shards", unindexed)
    (unindexed / "index.json").unlink()
    with caplog.at_level("WARNING", logger="vtok.data.shard_lists"):
        assert shard_counts(expand_shards(f"{two_outputs / 'a' / 'shards'}::{unindexed}")) is None
    assert f"{unindexed} holds no index.json from `vtok prepare --shards`" in caplog.text


def test_shards_read_through_a_url_or_a_pipe_command_take_their_counts_from_data_shard_index(
    two_outputs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The README's `pipe:aws s3 cp s3://.../shard-{...}.tar -` was looked up in the index as `shard-000000.tar -`:
    no counts, a warning to rerun prepare, and two ranks that hung at the end of their first epoch."""
    index = two_outputs / "b" / "shards" / "index.json"
    counts = _indexed(index.parent)
    names = sorted(counts)
    forms = {
        "s3 through the aws command": [f"pipe:aws s3 cp s3://bucket/shards/{name} -" for name in names],
        "a signed https URL": [f"https://host/shards/{name}?X-Amz-Signature=a%2Fb&X-Amz-Expires=3600" for name in names],
        "curl of a quoted URL": [f"pipe:curl -s -L 'https://host/shards/{name}?token=1'" for name in names],
    }
    for form, shards in forms.items():
        assert shard_counts(shards, str(index)) == [counts[name] for name in names], form
    with caplog.at_level("WARNING", logger="vtok.data.shard_lists"):
        assert shard_counts(["pipe:./fetch-shard.sh 7"], str(index)) is None
    assert "Give data.shard_index the index.json written with these shards" in caplog.text
