"""Shard members as training reads them: the video member is named after its source file's suffix, whatever
that suffix is, since a manifest may list containers that a folder search does not."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import pytest

from vtok.commands.prepare import main as prepare
from vtok.data import ClipSpec, ShardClipDataset
from vtok.data.errors import read_notes
from vtok.data.shard_lists import expand_shards, shard_counts


def test_videos_a_manifest_lists_with_unlisted_suffixes_are_sharded_and_streamed(video_folder: Path, tmp_path: Path) -> None:
    """They were sharded as key.flv / key.3gp, which the stream never took for a video: skipped every epoch,
    and the quota filled by reading the other members twice."""
    data = tmp_path / "data"
    data.mkdir()
    sources = sorted(video_folder.glob("*.mp4"))[:3]
    names = ["a.flv", "b.3gp", "c.mp4"]
    for source, name in zip(sources, names):
        shutil.copy(source, data / name)
    (data / "list.txt").write_text("".join(f"{name}\n" for name in names))
    prepare(["--data", str(data / "list.txt"), "--out", str(tmp_path / "out"), "--shards", "--no-progress", "--workers", "0"])
    shards = expand_shards(str(tmp_path / "out" / "shards"))
    dataset = ShardClipDataset(shards, ClipSpec(5), (32, 32), seed=1, counts=shard_counts(shards), batch_size=1)
    samples = list(dataset)
    assert sorted(sample["key"].split("-")[0] for sample in samples) == ["a", "b", "c"]
    assert not any(sample.get("skipped") for sample in samples), [sample.get("skipped") for sample in samples]


class _NotToBeRead(list):
    """The keys of a shard before the restart point: a place saved at every batch must not read them."""

    def __iter__(self):  # noqa: ANN204
        raise AssertionError("read the keys of a shard the saved place never needs")


def test_the_saved_place_reads_only_the_shards_from_the_restart_on() -> None:
    """state_dict runs at every batch (torchdata's snapshots) and gathered every key of the pass so far: an epoch of
    a million samples spent its end in bookkeeping that grew with the epoch's square (found by a review)."""
    dataset = ShardClipDataset([f"s{i}.tar" for i in range(4)], ClipSpec(5), (32, 32))
    dataset._delivered = {0: _NotToBeRead(["a", "b"]), 1: _NotToBeRead(["c"]), 2: ["d", "e"]}
    dataset._pass_over = {(0, "z"), (3, "y")}
    dataset._position = {"epoch": 0, "pass": 0, "shard": 2, "yielded": 5}
    assert dataset.state_dict()["delivered"] == [[2, "d"], [2, "e"], [3, "y"]]


def test_a_shard_its_index_lists_but_the_folder_lacks_is_warned_of(
    shard_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A shard deleted (or not copied) after prepare: training read the others without a word, where a brace
    pattern naming it is an error. Shards left out of a pattern on purpose are not missing."""
    folder = tmp_path / "shards"
    shutil.copytree(shard_dir / "shards", folder)
    (folder / "shard-000002.tar").unlink()
    with caplog.at_level("WARNING", logger="vtok.data.shard_lists"):
        shards = expand_shards(str(folder))
        assert shard_counts(shards) == [2, 2, 2]
        assert f"1 of the 4 shards {folder / 'index.json'} lists are not in {folder} (shard-000002.tar)" in caplog.text
        caplog.clear()
        assert shard_counts(expand_shards(str(shard_dir / "shards" / "shard-{000000..000001}.tar"))) == [2, 2]
        assert caplog.text == ""


@pytest.mark.parametrize("into_the_header, zeros", [(200, 0), (0, 0), (0, 2 << 20)])
def test_a_shard_cut_short_after_a_member_is_counted_as_unusable_not_taken_for_a_stale_index(
    shard_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, into_the_header: int, zeros: int
) -> None:
    """Tar reads a header cut in two, or none, as its end: a shard copied only in part gave its first sample, then a
    warning that the index was stale, and its lost sample was never counted (found by a review; a cut at a header's
    start, whole 512-byte blocks, by the review of that fix). A download client that preallocates the file leaves
    zeros, which read as a tar end, where the rest is still to come."""
    folder = tmp_path / "shards"
    shutil.copytree(shard_dir / "shards", folder)
    cut = folder / "shard-000001.tar"
    with tarfile.open(cut) as tar:
        offsets = [member.offset for member in tar.getmembers()]  # two members a sample: mp4 and json
    cut.write_bytes(cut.read_bytes()[: offsets[2] + into_the_header] + bytes(zeros))  # at or into the second sample's header
    shards = expand_shards(str(folder))
    with caplog.at_level("WARNING", logger="vtok.data.streaming"):
        samples = list(ShardClipDataset(shards, ClipSpec(5), (32, 32), train=False, counts=shard_counts(shards), batch_size=1))
    notes = read_notes("\n".join(sample["skipped"] for sample in samples if sample.get("skipped")))
    assert [path for path, _ in notes] == [str(cut)], notes
    assert "ends after 1 of the 2 members index.json lists: the file is cut short" in notes[0][1]
    assert ("a megabyte of zeros; a download not finished?" in notes[0][1]) == bool(zeros)
    assert "stale" not in caplog.text
