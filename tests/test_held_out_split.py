"""data.val_fraction holds files out by a hash of the seed and their path within data.path's folder: files added
later, anywhere, never move a trained file into validation."""

from __future__ import annotations

import os
from pathlib import Path

from vtok.data.datamodule import VideoDataModule
from vtok.data.held_out_split import held_out_files


def test_files_added_to_the_data_never_move_a_trained_file_into_validation(tmp_path: Path) -> None:
    """The split drew a shuffled list's first val_fraction: one file more reshuffled it whole (10 of 100 files
    validated after it had been trained on). Each file's side now depends on its path alone, not on the folder's
    other files nor where the folder lies."""
    module = VideoDataModule(path=str(tmp_path), val_fraction=0.1, num_frames=3, size=32, num_workers=0)
    records = [{"path": str(tmp_path / "2023" / f"clip{i:03d}.mp4")} for i in range(100)]
    train, val = module._split_by_fraction(records)
    added = [{"path": str(tmp_path / folder / f"new{i}.mp4")} for i in range(10) for folder in ("2023", "2024")]
    more_train, more_val = module._split_by_fraction(records + added)  # 2024/: the files' common folder changes
    assert 3 <= len(val) <= 20 and {r["path"] for r in val} <= {r["path"] for r in more_val}
    assert {r["path"] for r in train} <= {r["path"] for r in more_train}, "no trained file is validated"
    moved = VideoDataModule(path=str(tmp_path / "moved"), val_fraction=0.1, num_frames=3, size=32, num_workers=0)
    (tmp_path / "moved").mkdir()
    records = [{"path": str(tmp_path / "moved" / "2023" / f"clip{i:03d}.mp4")} for i in range(100)]
    assert [Path(r["path"]).name for r in moved._split_by_fraction(records)[1]] == [Path(r["path"]).name for r in val]
    latin = str(tmp_path).encode() + b"/caf\xe9.mp4"  # a name that is not UTF-8 (found by a review: a crash)
    assert len(held_out_files([os.fsdecode(latin), str(tmp_path / "b.mp4")], 0.5, 0, str(tmp_path))) == 1
    for seed in range(40):  # small sets keep a file on each side, whatever the draws
        assert len(held_out_files([str(tmp_path / f"{i}.mp4") for i in range(3)], 0.9, seed, str(tmp_path))) == 2
