"""The files validation and ``vtok test`` score: each once, as ``vtok evaluate`` scores them, and not none."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import tiny_fit_args
from vtok.cli import main
from vtok.commands.prepare import main as prepare
from vtok.data import ClipSpec, VideoClipDataset, write_sample_clips
from vtok.data.datamodule import VideoDataModule
from vtok.data.validation_files import VALIDATION_KEY, validation_record


def test_a_video_a_manifest_lists_twice_or_spells_two_ways_is_scored_once(
    video_folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """data.val_path and data.test_path were scored line by line: a video listed three times weighed three times in
    val/psnr and test/psnr, where vtok evaluate (and a data.val_fraction split) took it once."""
    first, second = sorted(video_folder.glob("*.mp4"))[:2]
    (tmp_path / "linked").symlink_to(video_folder)
    lines = [str(first), str(first), str(tmp_path / "linked" / first.name), str(second)]
    manifest = tmp_path / "held_out.jsonl"
    manifest.write_text("".join(json.dumps({"path": line}) + "\n" for line in lines))
    settings = {"path": str(video_folder), "num_frames": 9, "size": 32, "batch_size": 1, "num_workers": 0}
    with caplog.at_level("INFO"):
        validation = VideoDataModule(**settings, val_path=str(manifest))
        validation.setup("validate")
        test = VideoDataModule(**settings, test_path=str(manifest))
        test.setup("test")
    for module, split in ((validation, "val"), (test, "test")):
        assert module.datasets[split].files == [str(first), str(second)]
    assert caplog.text.count("2 paths lead to a video listed before them: each video is taken once") == 2


def test_a_held_out_set_mostly_unusable_still_scores_its_good_files(video_folder: Path, tmp_path: Path) -> None:
    """A bad held-out file's stand-in (padding, scored by no one) was drawn at random, 16 tries: among 40 unreadable
    files and 2 good ones, vtok test and validate stopped ("16 files in a row could not give a sample") where vtok
    evaluate scored the 2."""
    bad = [tmp_path / f"bad_{i:02d}.mp4" for i in range(40)]
    for path in bad:
        path.write_text("not a video\n")
    good = [str(path) for path in sorted(video_folder.glob("*.mp4"))[:2]]
    dataset = VideoClipDataset([*map(str, bad), *good], ClipSpec(9), (32, 32), train=False)
    assert dataset.first_usable()[0] == 40
    samples = [dataset[(0, index, False)] for index in range(len(dataset))]
    scored = [sample["source_index"] for sample in samples if not sample["repeated"]]
    assert scored == [40, 41] and all(sample["skipped"] for sample in samples[:40])


def test_scoring_with_a_limit_of_no_batches_is_refused(video_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A run's config that trained without validation (limit_val_batches 0) given to vtok validate, or test with
    limit_test_batches 0: Lightning scored nothing and exited 0 without a word (vtok test did so still)."""
    main(tiny_fit_args(tmp_path, 1, "--trainer.logger", "false", "--trainer.limit_val_batches", "0"))
    run = tmp_path / "run"
    given = ["--config", str(run / "config.yaml"), "--ckpt_path", "last"]
    test = ["--data.test_path", str(video_folder), "--trainer.limit_test_batches", "0"]
    for command, flags in (("validate", []), ("test", test)):
        with pytest.raises(SystemExit) as exit_info:
            main([command, *given, *flags])
        limit = "limit_val_batches" if command == "validate" else "limit_test_batches"
        expected = f"trainer.{limit} is 0: vtok {command} would score nothing; add --trainer.{limit} 1.0"
        assert exit_info.value.code == 2 and expected in capsys.readouterr().err


def test_validate_with_nothing_held_out_is_a_one_line_error(fsq_run: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    """With data.val_fraction 0 and no data.val_path, Lightning scored nothing and exited with 0."""
    run = fsq_run["checkpoint"].parents[1]
    with pytest.raises(SystemExit) as exit_info:
        main(["validate", "--config", str(run / "config.yaml"), "--ckpt_path", str(fsq_run["checkpoint"]),
              "--data.val_fraction", "0", "--trainer.logger", "false"])  # fmt: skip
    assert exit_info.value.code == 2 and "vtok validate has no validation files" in capsys.readouterr().err


def test_held_out_files_that_are_in_the_training_shards_are_said(
    shard_dir: Path, video_folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With data.shards, data.val_path and data.test_path were never checked against the training data: the very
    videos the shards were written from were scored as held out without a word (data.path warned of them)."""
    (tmp_path / "linked").symlink_to(video_folder)
    settings = {"shards": str(shard_dir / "shards"), "num_frames": 9, "size": 32, "batch_size": 1, "num_workers": 0}
    VideoDataModule(**settings, val_path=str(tmp_path / "linked")).setup("fit")
    assert "8 of the 8 files of data.val_path are also training files (data.shards" in caplog.text
    VideoDataModule(**settings, test_path=str(shard_dir / "manifest.jsonl")).setup("test")  # prepare's own lines
    assert "8 of the 8 files of data.test_path are also training files (data.shards" in caplog.text
    caplog.clear()
    (tmp_path / "other").mkdir()
    write_sample_clips(tmp_path / "other", count=2, frames=12, height=32, width=32, seed=9)
    VideoDataModule(**settings, val_path=str(tmp_path / "other")).setup("validate")
    assert "also training files" not in caplog.text


def test_held_out_files_whose_reencoded_copies_are_in_the_training_shards_are_said(
    video_folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Reading a manifest for clips dropped the re-encoded copy's `source`, which the shards' sample keys hash: the
    held-out lines of `vtok prepare --reencode --shards` were no longer found in its shards (found by a review)."""
    data = tmp_path / "data"
    data.mkdir()
    for video in sorted(video_folder.glob("*.mp4"))[:2]:
        shutil.copy(video, data)
    prepare(["--data", str(data), "--out", str(tmp_path / "prepared"), "--reencode", "--shards", "--no-progress",
             "--workers", "0"])  # fmt: skip
    settings = {"shards": str(tmp_path / "prepared" / "shards"), "num_frames": 9, "size": 32, "batch_size": 1}
    VideoDataModule(**settings, num_workers=0, test_path=str(tmp_path / "prepared" / "manifest.jsonl")).setup("test")
    assert "2 of the 2 files of data.test_path are also training files (data.shards" in caplog.text


def test_the_validation_files_record_is_made_once_not_at_every_checkpoint(
    video_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every checkpoint resolved every validation file's path again for the data module's state: 2 s a save, on every
    rank, for a million-line manifest's 100,000 held-out files, for a record that cannot change during the run."""
    import vtok.data.datamodule as datamodule

    made = []
    monkeypatch.setattr(datamodule, "validation_record", lambda *args: made.append(args) or validation_record(*args))
    data = VideoDataModule(path=str(video_folder), num_frames=9, size=32, batch_size=1, num_workers=0, val_fraction=0.25)
    data.setup("fit")
    saved = [data.state_dict()[VALIDATION_KEY] for _ in range(3)]
    assert len(made) == 1 and saved[0] == saved[2] == validation_record(data.datasets["val"].files, str(video_folder))
