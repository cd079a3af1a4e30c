"""Shard members as training reads them: the video member is named after its source file's suffix, whatever
that suffix is, since a manifest may list containers that a folder search does not."""

from __future__ import annotations

import shutil
from pathlib import Path

from vtok.commands.prepare import main as prepare
from vtok.data import ClipSpec, ShardClipDataset
from vtok.data.streaming import expand_shards, shard_counts


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
