"""Common mix-ups at the start: what else a data folder holds, and a run folder where a model is asked for."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from vtok.cli import main
from vtok.data.datamodule import VideoDataModule
from vtok.data.sources import IMAGE_SUFFIXES, list_files, list_records
from vtok.export import load_autoencoder
from vtok.vae.priors import load_diffusers_vae


def test_macos_metadata_and_trash_folders_are_left_out_and_counted(
    tmp_path: Path, video_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A folder copied from a Mac holds a ._name beside each file (decord cannot open it): each was a skip
    with a reason that never named it, counted among the training files and taking validation slots. Files
    in a desktop's trash folder were trained on."""
    data = tmp_path / "data"
    clip = min(video_folder.glob("*.mp4"))
    for name in ("a.mp4", "._b.mp4", ".Trash-1000/files/c.mp4", "$RECYCLE.BIN/d.mp4", "sub/e.mp4"):
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(clip, data / name)
    for beside in ("a.mp4", "sub/e.mp4"):  # AppleDouble files: a 4 KiB header of metadata
        (data / beside).with_name("._" + Path(beside).name).write_bytes(b"\x00\x05\x16\x07" + bytes(4092))
    caplog.set_level(logging.WARNING, "vtok")
    assert [Path(path).relative_to(data).as_posix() for path in list_files(data)] == ["._b.mp4", "a.mp4", "sub/e.mp4"]
    assert "2 AppleDouble files (e.g. " in caplog.text and "2 trash folders (e.g. " in caplog.text
    # ._b.mp4 has no b.mp4 beside it: a video of the user's own, whatever its name


def test_images_in_a_video_search_and_videos_in_an_image_search_are_counted(
    tmp_path: Path, video_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(min(video_folder.glob("*.mp4")), data / "a.mp4")
    for name in ("x.jpg", "y.PNG"):
        (data / name).write_bytes(b"")
    caplog.set_level(logging.WARNING, "vtok")
    assert len(list_records(data)) == 1
    assert "2 images are left out of this search (images train beside videos through data.image_path)" in caplog.text
    caplog.clear()
    assert len(list_files(data, IMAGE_SUFFIXES)) == 2
    assert "1 videos are left out of this search (videos train through data.path)" in caplog.text


def test_a_prepare_output_or_a_shard_folder_as_data_path_says_what_to_give(tmp_path: Path) -> None:
    """"no video files found" alone, where vtok can tell the folder is prepare's output or a folder of shards."""
    prepared, shards = tmp_path / "prepared", tmp_path / "shards"
    (prepared / "shards").mkdir(parents=True)
    (prepared / "manifest.jsonl").write_text("")
    (prepared / "shards" / "shard-000000.tar").write_bytes(b"")
    shards.mkdir()
    (shards / "shard-000000.tar").write_bytes(b"")
    for path, advice in ((prepared, f"vtok prepare output folder, whose list of videos is {prepared / 'manifest.jsonl'}"),
                         (prepared / "shards", "train as WebDataset shards through data.shards"),
                         (shards, "train as WebDataset shards through data.shards")):  # fmt: skip
        with pytest.raises(ValueError, match="no video files found in") as error:
            VideoDataModule(path=str(path), batch_size=1, num_frames=5, size=32).setup("fit")
        assert advice in str(error.value)


def test_a_run_folder_given_as_a_model_names_its_checkpoint(fsq_run: dict[str, Path]) -> None:
    run = fsq_run["checkpoint"].parent.parent
    for load in (load_autoencoder, load_diffusers_vae):  # vtok evaluate/tokenize/export, model.init_from
        with pytest.raises((ValueError, FileNotFoundError)) as error:
            load(str(run))
        assert f"it is a training run's folder: give one of its checkpoints ({run / 'checkpoints' / 'last.ckpt'})" in str(error.value)


@pytest.mark.parametrize("typed, said", [(["preapre", "--data", "x"], "no command 'preapre' (did you mean prepare?)"),
                                         ([], "give a command")])  # fmt: skip
def test_a_mistyped_or_missing_command_lists_every_command(typed: list[str], said: str, capsys: pytest.CaptureFixture) -> None:
    """jsonargparse's "invalid choice ... (choose from 'fit', 'validate', 'test')" as if prepare did not exist."""
    with pytest.raises(SystemExit) as stopped:
        main(typed)
    error = capsys.readouterr().err
    assert stopped.value.code == 2 and error.startswith(f"vtok: error: {said}; the commands are fit, validate, test, export, prepare")


def test_a_prepare_output_inside_the_data_folder_is_named_where_it_doubles_the_videos(
    tmp_path: Path, video_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """prepare --reencode --out inside the data, then training on the data folder: every video twice, a copy
    possibly held out while its source trains, without a word."""
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(min(video_folder.glob("*.mp4")), data / "a.mp4")
    main(["prepare", "--data", str(data), "--out", str(data / "prepared"), "--reencode", "--no-progress", "--workers", "0"])
    caplog.set_level(logging.WARNING, "vtok")
    assert len(list_files(data)) == 2
    assert f"{data / 'prepared'} is a vtok prepare output: its re-encoded copies in {data / 'prepared' / 'videos'}" in caplog.text
    assert f"train from {data / 'prepared' / 'manifest.jsonl'}" in caplog.text
    caplog.clear()
    main(["prepare", "--data", str(data), "--out", str(data / "prepared"), "--reencode", "--no-progress", "--workers", "0"])
    assert "is a vtok prepare output" not in caplog.text, "prepare leaves its own copies out itself"


@pytest.mark.parametrize("command", ["detokenize", "prepare"])
def test_an_out_where_nothing_can_be_written_is_one_line_before_any_work(command: str, capsys: pytest.CaptureFixture) -> None:
    """detokenize decoded the whole clip, then PyAV's PermissionError came as a traceback (exit 1)."""
    out = "/sys/vtok-test/clip.mp4" if command == "detokenize" else "/sys/vtok-test"  # not writable, even by root
    arguments = ["--model", "m", "--tokens", "t.safetensors"] if command == "detokenize" else ["--data", "d"]
    with pytest.raises(SystemExit) as exit_info:
        main([command, *arguments, "--out", out])
    said = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(said) == 1 and "nothing can be written into /sys (" in said[0], said
