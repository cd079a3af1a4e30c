"""A rerun of `vtok tokenize` redoes a video whose file changed since its token file was written."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.test_tokenize import run
from vtok.data import write_video
from vtok.data.synthetic import synthetic_clip


def _two_videos(video_folder: Path, tmp_path: Path) -> tuple[Path, list[Path]]:
    """A folder holding copies of two of the sample videos, and their paths."""
    folder = tmp_path / "videos"
    folder.mkdir()
    for video in sorted(video_folder.glob("*.mp4"))[:2]:
        shutil.copy(video, folder)
    return folder, sorted(folder.glob("*.mp4"))


def test_a_video_changed_since_its_token_file_is_tokenized_again(
    fsq_run: dict[str, Path], video_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Only the token file's existence was checked: a video replaced at the same path kept its old tokens."""
    folder, (changed, kept) = _two_videos(video_folder, tmp_path)
    out = tmp_path / "tokens"
    run("tokenize", "--model", fsq_run["export"], "--data", folder, "--out", out)
    before = {e["path"]: e for e in map(json.loads, (out / "index.jsonl").read_text().splitlines())}
    capsys.readouterr()
    write_video(changed, synthetic_clip(29, 32, 32, seed=9), fps=24)  # longer: 29 frames, where there were 20
    run("tokenize", "--model", fsq_run["export"], "--data", folder, "--out", out)
    said = capsys.readouterr().out
    assert said.startswith("tokenized 1 videos, 1 of them again: changed since their token files (1 already done"), said
    after = {e["path"]: e for e in map(json.loads, (out / "index.jsonl").read_text().splitlines())}
    assert after[str(changed)]["frames"] == 29 and before[str(changed)]["frames"] == 17
    assert after[str(kept)] == before[str(kept)]
    os.utime(changed, ns=(0, 0))  # touched (restored from an archive, say): another modification time is a change too
    run("tokenize", "--model", fsq_run["export"], "--data", folder, "--out", out)
    assert "1 of them again" in capsys.readouterr().out


def test_a_video_changed_into_one_that_cannot_be_tokenized_loses_its_old_tokens(
    fsq_run: dict[str, Path], video_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Cut short since (a partial copy): it was skipped, yet its old token file stayed and the index listed
    it again among the earlier runs' videos, tokens of content no longer at that path."""
    folder, (cut, kept) = _two_videos(video_folder, tmp_path)
    out = tmp_path / "tokens"
    run("tokenize", "--model", fsq_run["export"], "--data", folder, "--out", out)
    cut.write_bytes(cut.read_bytes()[:3000])
    capsys.readouterr()
    run("tokenize", "--model", fsq_run["export"], "--data", folder, "--out", out)
    said = capsys.readouterr().out
    assert "tokenized 0 videos; 1 changed since and now skipped: their old token files removed (1 already done" in said, said
    listed = [json.loads(line)["path"] for line in (out / "index.jsonl").read_text().splitlines()]
    skipped = [json.loads(line)["path"] for line in (out / "skipped.jsonl").read_text().splitlines()]
    assert listed == [str(kept)] and skipped == [str(cut)]
    assert len(list((out / "tokens").glob("*.safetensors"))) == 1


def test_two_datasets_with_the_same_relative_paths_keep_their_own_tokens(
    fsq_run: dict[str, Path], video_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:  # fmt: skip
    """Parts of a dataset tokenized into one --out, each run from its own folder with ``--data videos``: the
    second run took the first's ``videos/a.mp4`` (resolved from its own folder) for its own video, judged it
    changed and removed its token file, and dropped the first's skip record too."""
    samples = sorted(video_folder.glob("*.mp4"))[:2]
    out = tmp_path / "tokens"
    for part, sample in zip(("x", "y"), samples):
        (tmp_path / part / "videos").mkdir(parents=True)
        shutil.copy(sample, tmp_path / part / "videos" / "a.mp4")
        (tmp_path / part / "videos" / "b.mp4").write_bytes(b"not a video")
        monkeypatch.chdir(tmp_path / part)
        capsys.readouterr()
        run("tokenize", "--model", fsq_run["export"], "--data", "videos", "--out", out)
    said = capsys.readouterr().out
    assert said.startswith("tokenized 1 videos (0 already done, 1 skipped, 1 from earlier runs kept)"), said
    entries = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    real = sorted(str((tmp_path / part / "videos" / "a.mp4").resolve()) for part in ("x", "y"))
    assert sorted(e["real_path"] for e in entries) == real and all((out / e["tokens"]).is_file() for e in entries)
    skipped = [json.loads(line) for line in (out / "skipped.jsonl").read_text().splitlines()]
    assert sorted(s["real_path"] for s in skipped) == [r.replace("a.mp4", "b.mp4") for r in real]


def test_when_no_video_of_a_run_can_be_read_the_index_lists_only_token_files_still_there(
    fsq_run: dict[str, Path], video_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Every video of one part became unreadable since: their token files were removed, then the "none could
    be read" error came before the index was written, so it still listed the removed files."""
    samples = sorted(video_folder.glob("*.mp4"))[:3]
    out = tmp_path / "tokens"
    for part, videos in (("p1", samples[:2]), ("p2", samples[2:])):
        (tmp_path / part).mkdir()
        for video in videos:
            shutil.copy(video, tmp_path / part)
        run("tokenize", "--model", fsq_run["export"], "--data", tmp_path / part, "--out", out)
    for video in (tmp_path / "p1").glob("*.mp4"):
        video.write_bytes(b"no longer a video")
    with pytest.raises(SystemExit):
        run("tokenize", "--model", fsq_run["export"], "--data", tmp_path / "p1", "--out", out)
    assert "none of the 2 videos could be read" in capsys.readouterr().err
    listed = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    assert [Path(entry["path"]).parent.name for entry in listed] == ["p2"]
    assert all((out / entry["tokens"]).is_file() for entry in listed)
    assert len(list((out / "tokens").glob("*.safetensors"))) == 1


def test_a_skipped_video_deleted_since_leaves_the_skip_list_and_a_tokenized_one_stays_indexed(
    fsq_run: dict[str, Path], video_folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Skip records of videos deleted since stayed in skipped.jsonl through every later run into the folder.
    A tokenized video deleted since keeps its line and token file: tokens outlive the videos they came from."""
    samples = sorted(video_folder.glob("*.mp4"))[:2]
    out = tmp_path / "tokens"
    for part, video in (("p1", samples[0]), ("p2", samples[1])):
        (tmp_path / part).mkdir()
        shutil.copy(video, tmp_path / part)
    (tmp_path / "p1" / "broken.mp4").write_bytes(b"not a video")
    run("tokenize", "--model", fsq_run["export"], "--data", tmp_path / "p1", "--out", out)
    assert [Path(json.loads(line)["path"]).name for line in (out / "skipped.jsonl").read_text().splitlines()] == ["broken.mp4"]
    for video in (tmp_path / "p1").iterdir():
        video.unlink()
    with caplog.at_level("INFO", logger="vtok.commands.tokenize"):
        run("tokenize", "--model", fsq_run["export"], "--data", tmp_path / "p2", "--out", out)
    assert (out / "skipped.jsonl").read_text() == ""
    assert "1 videos skipped by earlier runs are gone since" in caplog.text
    listed = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    assert sorted(Path(entry["path"]).parent.name for entry in listed) == ["p1", "p2"]
    assert all((out / entry["tokens"]).is_file() for entry in listed)


def test_a_video_missing_when_skipped_stays_in_the_skip_list_until_it_is_tokenized_or_its_list_is_mended(
    fsq_run: dict[str, Path], video_folder: Path, tmp_path: Path
) -> None:
    """Part-by-part runs took a file missing when skipped for one deleted since: the next part's run dropped its
    record while it was still missing, the line to fix (a copy not finished) gone from skipped.jsonl. A rerun of
    the same list, mended (a typo fixed), drops it, however the list's path is spelt: kept, it stayed for good
    (found by a review). An earlier vtok's record, which names no list, is kept."""
    folder, (first, second) = _two_videos(video_folder, tmp_path)
    late, typo = folder / "not_copied_yet.mp4", tmp_path / "vidoes" / first.name
    out = tmp_path / "tokens"
    (tmp_path / "a.txt").write_text(f"{first}\n{late}\n")
    (tmp_path / "b.txt").write_text(f"{second}\n{typo}\n")

    def skipped() -> list[str]:
        return [Path(json.loads(line)["path"]).name for line in (out / "skipped.jsonl").read_text().splitlines()]

    run("tokenize", "--model", fsq_run["export"], "--data", tmp_path / "a.txt", "--out", out)
    run("tokenize", "--model", fsq_run["export"], "--data", tmp_path / "b.txt", "--out", out)
    assert sorted(skipped()) == sorted([typo.name, late.name])
    (tmp_path / "b.txt").write_text(f"{second}\n{first}\n")
    (tmp_path / "link").symlink_to(tmp_path)  # the same list spelt through a symlinked folder
    run("tokenize", "--model", fsq_run["export"], "--data", tmp_path / "link" / "b.txt", "--out", out)
    assert skipped() == [late.name], "the mended list's typo gone, the other part's missing file kept"
    earlier = {"path": str(folder / "earlier.mp4"), "reason": "no such file", "real_path": str(folder / "earlier.mp4")}
    with (out / "skipped.jsonl").open("a") as records:  # an earlier vtok's record, which names no --data
        records.write(json.dumps(earlier) + "\n")
    shutil.copy(first, late)
    run("tokenize", "--model", fsq_run["export"], "--data", tmp_path / "a.txt", "--out", out)
    assert skipped() == ["earlier.mp4"]
    assert len((out / "index.jsonl").read_text().splitlines()) == 3


def test_a_listed_video_gone_from_its_path_keeps_its_tokens(
    fsq_run: dict[str, Path], video_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A video deleted since (still in the manifest), or a link to a disk not mounted now, counted as changed: its
    token file was removed and it left the index; a folder of such links lost every token file and the index."""
    folder, (gone, kept) = _two_videos(video_folder, tmp_path)
    manifest = tmp_path / "videos.txt"
    manifest.write_text(f"{gone}\n{kept}\n")
    links = tmp_path / "links"
    links.mkdir()
    for video in (gone, kept):
        (links / video.name).symlink_to(video)
    outs = {"manifest": tmp_path / "from-manifest", "links": tmp_path / "from-links"}
    for data, out in zip((manifest, links), outs.values()):
        run("tokenize", "--model", fsq_run["export"], "--data", data, "--out", out)
    before = {name: (out / "index.jsonl").read_text() for name, out in outs.items()}
    shutil.move(folder, tmp_path / "elsewhere")  # the disk the links point to is gone: both videos
    capsys.readouterr()
    run("tokenize", "--model", fsq_run["export"], "--data", links, "--out", outs["links"])
    assert capsys.readouterr().out.startswith("tokenized 0 videos (2 already done, 0 skipped)")
    shutil.move(tmp_path / "elsewhere", folder)
    gone.unlink()
    run("tokenize", "--model", fsq_run["export"], "--data", manifest, "--out", outs["manifest"])
    assert capsys.readouterr().out.startswith("tokenized 0 videos (2 already done, 0 skipped)")
    for name, out in outs.items():
        assert (out / "index.jsonl").read_text() == before[name]
        assert len(list((out / "tokens").glob("*.safetensors"))) == 2


def test_a_video_that_changed_while_it_was_read_is_tokenized_again(
    fsq_run: dict[str, Path], video_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:  # fmt: skip
    """A video still being copied in when read: its token file recorded the size and time of the finished file
    (taken after the read), so every rerun kept the tokens of the part read."""
    import vtok.data.dataset

    folder, (video, _) = _two_videos(video_folder, tmp_path)
    opened = vtok.data.dataset.open_video

    def open_then_finish_the_copy(path: str, *args: object, **kwargs: object) -> object:
        reader = opened(path, *args, **kwargs)
        os.utime(path, ns=(10**18, 10**18))  # the copy goes on once the reader holds the start
        return reader

    monkeypatch.setattr(vtok.data.dataset, "open_video", open_then_finish_the_copy)
    out = tmp_path / "tokens"
    run("tokenize", "--model", fsq_run["export"], "--data", video, "--out", out, "--workers", 0)
    monkeypatch.undo()
    capsys.readouterr()
    run("tokenize", "--model", fsq_run["export"], "--data", video, "--out", out, "--workers", 0)
    assert capsys.readouterr().out.startswith("tokenized 1 videos, 1 of them again: changed since their token files")


def test_a_run_with_other_settings_into_a_folder_another_run_started_is_refused_before_writing(
    fsq_run: dict[str, Path], video_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Runs started together (one per GPU) with a typo in one's --size both passed the check of a folder that held
    no token file yet, and wrote both protocols into it; a run that has written none yet now binds the folder too."""
    out = tmp_path / "tokens"
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.mp4").write_bytes(b"not a video")
    with pytest.raises(SystemExit):  # a run that wrote no token file (here: it could read none)
        run("tokenize", "--model", fsq_run["export"], "--data", tmp_path / "broken", "--out", out)
    folder, _ = _two_videos(video_folder, tmp_path)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run("tokenize", "--model", fsq_run["export"], "--data", folder, "--out", out, "--size", 64)
    said = capsys.readouterr().err
    assert exit_info.value.code == 2 and "was started by a run of another model or clip protocol (height 32" in said, said
    assert f"if no run is writing into it, remove {out / 'settings.json'}" in said
    assert not (out / "tokens").is_dir() or not list((out / "tokens").glob("*.safetensors")), "nothing written"
    run("tokenize", "--model", fsq_run["export"], "--data", folder, "--out", out)  # the folder's own settings
    assert len(list((out / "tokens").glob("*.safetensors"))) == 2
