"""File names as datasets have them: a name whose bytes are not UTF-8 (an old Latin-1 dataset) and one with
spaces go through `vtok tokenize` and `vtok evaluate`, and what those write names them readably."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

from tests.test_tokenize import run
from vtok.data.sources import printable_path


def _odd_folder(video_folder: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    folder = tmp_path / "videos"
    folder.mkdir()
    first, second = sorted(video_folder.glob("*.mp4"))[:2]
    latin = Path(os.fsdecode(os.fsencode(folder) + b"/caf\xe9.mp4"))  # 'café' in Latin-1: not UTF-8
    spaced = folder / "two words.mp4"
    shutil.copy(first, latin)
    shutil.copy(second, spaced)
    return folder, latin, spaced


def test_a_name_that_is_not_utf8_is_tokenized_and_evaluated_and_written_readably(
    fsq_run: dict[str, Path], video_folder: Path, tmp_path: Path
) -> None:
    """Its raw name in a safetensors header or in per_video.csv raised UnicodeEncodeError: tokenize stopped at it on
    every rerun, and evaluate ended after scoring everything, without report.md."""
    folder, latin, spaced = _odd_folder(video_folder, tmp_path)
    assert printable_path(latin).endswith("caf\\xe9.mp4") and printable_path(spaced) == str(spaced)
    tokens = tmp_path / "tokens"
    run("tokenize", "--model", fsq_run["export"], "--data", folder, "--out", tokens)
    entries = [json.loads(line) for line in (tokens / "index.jsonl").read_text().splitlines()]
    assert sorted(entry["path"] for entry in entries) == sorted([printable_path(latin), str(spaced)])
    assert any(name.startswith("caf\\xe9-") for name in os.listdir(tokens / "tokens"))
    run("tokenize", "--model", fsq_run["export"], "--data", folder, "--out", tokens)  # a rerun finds both done
    assert [json.loads(line) for line in (tokens / "index.jsonl").read_text().splitlines()] == entries
    latin_tokens = next(tokens / e["tokens"] for e in entries if e["path"] == printable_path(latin))
    run("detokenize", "--model", fsq_run["export"], "--tokens", latin_tokens, "--out", tmp_path / "movie.mp4")
    assert (tmp_path / "movie.mp4").stat().st_size > 0
    out = tmp_path / "evaluation"
    run("evaluate", "--model", fsq_run["export"], "--data", folder, "--out", out, "--pictures", 2)
    with (out / "per_video.csv").open() as handle:
        assert sorted(row["path"] for row in csv.DictReader(handle)) == sorted([printable_path(latin), str(spaced)])
    report = (out / "report.md").read_text()
    assert "caf\\xe9.mp4" in report
    assert "(pictures/two%20words-" in report, "a space would end the link: the picture showed as text"


def test_a_txt_or_csv_manifest_naming_a_file_that_is_not_utf8_lists_it_as_the_folder_does(
    video_folder: Path, tmp_path: Path
) -> None:
    """`find /data -name '*.mp4' > list.txt` over such a name stopped training and prepare with a bare
    "'utf-8' codec can't decode byte 0xe9", naming neither the manifest nor the line."""
    from vtok.data.sources import list_files

    folder, latin, spaced = _odd_folder(video_folder, tmp_path)
    (tmp_path / "list.txt").write_bytes(os.fsencode(latin) + b"\n" + os.fsencode(spaced) + b"\n")
    (tmp_path / "list.csv").write_bytes(b"path,frames\n" + os.fsencode(latin) + b",20\n")
    assert sorted(list_files(tmp_path / "list.txt")) == sorted(list_files(folder)) == sorted([str(latin), str(spaced)])
    assert list_files(tmp_path / "list.csv") == [str(latin)]
