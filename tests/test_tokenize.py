"""`vtok tokenize` / `vtok detokenize`: token files that decode to the model's own reconstruction,
resumable runs, broken videos skipped and listed, and bad token files reported in one line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from tests.conftest import write_broken_files
from vtok import VideoAutoencoder
from vtok.commands import tokenize as tokenize_command
from vtok.cli import main
from vtok.data import ClipSpec, VideoClipDataset, file_key, open_video, to_uint8_frames
from vtok.export import load_autoencoder, write_export
from vtok.tokenfiles import read_token_file, tokenizer_sha256, weights_sha256, write_token_file
from vtok.vae import FirstFrameTokens, map_tokens


def run(*args: str | Path) -> None:
    main([str(a) for a in args])


def assert_mp4_shows(movie: Path, video: torch.Tensor) -> None:
    """The mp4's frames are ``video`` (``[3, T, H, W]`` in [-1, 1]) up to H.264's error, and not a flat
    grey (a zeroed video) or black one. Compared on luma: 4:2:0 keeps colour at half resolution, which on
    an untrained model's pixel-level noise costs ~15 per RGB value; brightness is kept at full resolution."""
    weights = torch.tensor([0.299, 0.587, 0.114])
    expected = to_uint8_frames(video).float() @ weights
    decoded = open_video(movie).read(range(video.shape[1])).float() @ weights
    error = (decoded - expected).abs().mean()
    assert error < 6, f"mp4 differs from the model's frames by {error:.1f} (luma, 0..255)"
    assert (decoded - 128).abs().mean() > 10 and decoded.mean() > 40, "the mp4 is a flat grey or black video"


@pytest.fixture()
def two_videos(video_folder: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "videos"
    folder.mkdir()
    for path in sorted(video_folder.glob("*.mp4"))[:2]:
        (folder / path.name).symlink_to(path)
    return folder


def test_tokenize_decodes_to_the_models_reconstruction_and_resumes(
    fsq_run: dict[str, Path], two_videos: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "tokens"
    run("tokenize", "--model", fsq_run["checkpoint"], "--data", two_videos, "--out", out)
    assert capsys.readouterr().out.strip().startswith("tokenized 2 videos (0 already done, 0 skipped)")
    entries = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    files = sorted(str(p) for p in two_videos.glob("*.mp4"))
    assert [e["path"] for e in entries] == files
    # 20 frames hold 17 = 1 + 4*4 (the whole video from its first frame: frames 0-16), 32x32 from the recorded clip.
    assert all(e["frames"] == 17 and e["shape"] == [1, 5, 4, 4] for e in entries)

    model = load_autoencoder(fsq_run["export"])
    whole = ClipSpec(17, start="first")
    clips = torch.stack([VideoClipDataset(files, whole, (32, 32), train=False)[i]["video"] for i in range(2)])
    with torch.no_grad():
        own_tokens = model.tokenize(clips)
        for i, entry in enumerate(entries):
            indices, metadata = read_token_file(out / entry["tokens"])
            assert torch.equal(indices, own_tokens[i])
        assert torch.equal(model.detokenize(indices[None]), model.detokenize(own_tokens[-1:]))
    assert metadata["source"] == files[-1] and metadata["first_frame"] == "0" and metadata["fps"] == "24.0"
    assert (metadata["codebook_size"], metadata["compression"], metadata["tokens_per_position"]) == ("1000", "4x8x8", "1")
    with safe_open(str(out / entries[0]["tokens"]), framework="pt") as handle:
        assert handle.get_tensor("indices").dtype == torch.int16  # 1000 codes fit

    token_files = sorted((out / "tokens").iterdir())
    stamps = [p.stat().st_mtime_ns for p in token_files]
    run("tokenize", "--model", fsq_run["checkpoint"], "--data", two_videos, "--out", out)
    assert capsys.readouterr().out.strip().startswith("tokenized 0 videos (2 already done, 0 skipped)")
    assert [p.stat().st_mtime_ns for p in sorted((out / "tokens").iterdir())] == stamps
    assert [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()] == entries

    movie = tmp_path / "decoded.mp4"
    run("detokenize", "--model", fsq_run["export"], "--tokens", out / entries[0]["tokens"], "--out", movie)
    reader = open_video(movie)
    assert (reader.num_frames, reader.height, reader.width, reader.fps) == (17, 32, 32, 24.0)
    with torch.no_grad():
        video = model.detokenize(own_tokens[:1])[0]
    assert_mp4_shows(movie, video)


def test_a_dataset_tokenized_part_by_part_into_one_folder_is_indexed_whole(
    fsq_run: dict[str, Path], two_videos: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    first, second = sorted(two_videos.glob("*.mp4"))
    parts = []
    for video in (first, second, tmp_path / "missing.mp4"):
        part = tmp_path / f"part-{len(parts)}"
        part.mkdir()
        (part / video.name).symlink_to(video)
        parts.append(part)
    out = tmp_path / "tokens"
    run("tokenize", "--model", fsq_run["checkpoint"], "--data", parts[0], "--out", out)
    run("tokenize", "--model", fsq_run["checkpoint"], "--data", parts[1], "--out", out)
    assert "1 from earlier runs kept" in capsys.readouterr().out
    entries = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    assert sorted(Path(e["path"]).name for e in entries) == [first.name, second.name]
    assert all((out / e["tokens"]).is_file() for e in entries)
    (tmp_path / "alias").symlink_to(parts[0])  # the first part again under another name: still one entry per video
    run("tokenize", "--model", fsq_run["checkpoint"], "--data", tmp_path / "alias", "--out", out)
    again = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    assert sorted(Path(e["path"]).name for e in again) == [first.name, second.name]
    assert str(tmp_path / "alias") in next(e["path"] for e in again if e["path"].endswith(first.name)), "this run's"
    with pytest.raises(SystemExit):  # a part whose only video cannot be read: its skip is added, nothing lost
        run("tokenize", "--model", fsq_run["checkpoint"], "--data", parts[2], "--out", out)
    skipped = [json.loads(line) for line in (out / "skipped.jsonl").read_text().splitlines()]
    assert [Path(s["path"]).name for s in skipped] == ["missing.mp4"]
    assert len((out / "index.jsonl").read_text().splitlines()) == 2


def test_runs_into_one_folder_at_the_same_time_each_leave_the_others_videos_in_the_index(
    fsq_run: dict[str, Path], two_videos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = sorted(two_videos.glob("*.mp4"))
    parts = [tmp_path / "part-0", tmp_path / "part-1"]
    for part, video in zip(parts, (first, second)):
        part.mkdir()
        (part / video.name).symlink_to(video)
    out = tmp_path / "tokens"
    write = tokenize_command.write_token_file
    started = []

    def second_run_finishes_meanwhile(*args, **kwargs):  # the first run found the folder empty; the second ends
        if not started:
            started.append(True)
            run("tokenize", "--model", fsq_run["checkpoint"], "--data", parts[1], "--out", out)
        write(*args, **kwargs)

    monkeypatch.setattr(tokenize_command, "write_token_file", second_run_finishes_meanwhile)
    run("tokenize", "--model", fsq_run["checkpoint"], "--data", parts[0], "--out", out)
    entries = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    assert sorted(Path(e["path"]).name for e in entries) == [first.name, second.name]  # the second run's kept


def test_fixed_clips_skip_broken_videos_and_redo_damaged_token_files(
    fsq_run: dict[str, Path], mixed_folder: tuple[Path, dict[str, str]], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder, broken = mixed_folder
    out = tmp_path / "tokens"
    run("tokenize", "--model", fsq_run["export"], "--data", folder, "--out", out, "--frames", 9)
    assert capsys.readouterr().out.strip().startswith("tokenized 4 videos (0 already done, 5 skipped)")
    skipped = [json.loads(line) for line in (out / "skipped.jsonl").read_text().splitlines()]
    assert sorted(Path(s["path"]).name for s in skipped) == sorted(broken) and all(s["reason"] for s in skipped)
    entries = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    assert len(entries) == 4 and all(e["frames"] == 9 and e["shape"] == [1, 3, 4, 4] for e in entries)
    ahead = tmp_path / "read-ahead"  # the videos decoded in two workers: the same files, tokens and skips
    run("tokenize", "--model", fsq_run["export"], "--data", folder, "--out", ahead, "--frames", 9, "--workers", 2)
    assert (ahead / "index.jsonl").read_text() == (out / "index.jsonl").read_text()
    assert (ahead / "skipped.jsonl").read_text() == (out / "skipped.jsonl").read_text()
    for entry in entries:
        assert torch.equal(read_token_file(ahead / entry["tokens"])[0], read_token_file(out / entry["tokens"])[0])
    capsys.readouterr()

    damaged = out / entries[0]["tokens"]
    damaged.write_bytes(damaged.read_bytes()[:40])  # as if cut short by a crash outside vtok's atomic rename
    run("tokenize", "--model", fsq_run["export"], "--data", folder, "--out", out, "--frames", 9)
    assert capsys.readouterr().out.strip().startswith("tokenized 1 videos (3 already done, 5 skipped)")
    assert read_token_file(damaged)[0].shape == (1, 3, 4, 4)


def test_a_rerun_through_another_spelling_of_the_data_redoes_nothing(
    fsq_run: dict[str, Path], video_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Token files were named by the path as written: `--data vids` then `--data $PWD/vids` encoded every video
    again (two token files each) and listed each unreadable one twice in skipped.jsonl."""
    data, out = tmp_path / "vids", tmp_path / "tokens"
    data.mkdir()
    for path in sorted(video_folder.glob("*.mp4"))[:2]:
        (data / path.name).symlink_to(path)
    (data / "empty.mp4").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    run("tokenize", "--model", fsq_run["export"], "--data", "vids", "--out", out, "--frames", 9)
    names = sorted(p.name for p in (out / "tokens").iterdir())
    capsys.readouterr()
    run("tokenize", "--model", fsq_run["export"], "--data", data, "--out", out, "--frames", 9)
    assert capsys.readouterr().out.startswith("tokenized 0 videos (2 already done, 1 skipped)")
    assert sorted(p.name for p in (out / "tokens").iterdir()) == names
    skipped = [json.loads(line)["path"] for line in (out / "skipped.jsonl").read_text().splitlines()]
    assert skipped == [str(data / "empty.mp4")]
    entries = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    assert [e["path"] for e in entries] == sorted(str(p) for p in data.glob("*.mp4") if p.stat().st_size)  # this run's
    for token_file in (out / "tokens").iterdir():  # named as vtok once named them: by the path as written
        token_file.rename(out / "tokens" / f"{file_key(read_token_file(token_file)[1]['source'])}.safetensors")
    run("tokenize", "--model", fsq_run["export"], "--data", data, "--out", out, "--frames", 9)
    assert capsys.readouterr().out.startswith("tokenized 0 videos (2 already done, 1 skipped)")
    assert len(list((out / "tokens").iterdir())) == 2
    # one manifest listing a video three ways: tokenized, and indexed, once (it was encoded and listed each time)
    first = next(path for path in sorted(data.glob("*.mp4")) if path.stat().st_size)
    (tmp_path / "list.txt").write_text(f"{first}\nvids/{first.name}\n{first}\n")
    run("tokenize", "--model", fsq_run["export"], "--data", tmp_path / "list.txt", "--out", tmp_path / "again", "--frames", 9)
    assert capsys.readouterr().out.startswith("tokenized 1 videos (0 already done, 0 skipped)")
    assert len((tmp_path / "again" / "index.jsonl").read_text().splitlines()) == 1


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_token_files_get_the_permissions_the_umask_gives(umask: int, tmp_path: Path) -> None:
    """safetensors' save_file leaves its files -rw-------: tokens shared with a team were unreadable to it."""
    metadata = {"codebook_size": "1000", "format": "vtok-tokens"}
    old = os.umask(umask)
    try:
        path = write_token_file(tmp_path / "a.safetensors", torch.zeros(1, 2, 2, 2, dtype=torch.long), metadata)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.fixture()
def token_file(fsq_run: dict[str, Path], tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A valid token file for the fsq model (3x4x4 positions, indices all 7)."""
    metadata = {
        "format": "vtok-tokens", "format_version": "1", "source": "made-by-the-test.mp4", "first_frame": "0",
        "frames": "9", "stride": "1", "fps": "12.0", "height": "32", "width": "32", "compression": "4x8x8",
        "codebook_size": "1000", "tokens_per_position": "1", "model": str(fsq_run["export"]),
    }  # fmt: skip
    path = write_token_file(tmp_path / "t.safetensors", torch.full((1, 3, 4, 4), 7), metadata)
    return path, metadata


def test_detokenize_writes_the_frames_of_a_token_file(fsq_run: dict[str, Path], token_file: tuple[Path, dict], tmp_path: Path) -> None:
    run("detokenize", "--model", fsq_run["export"], "--tokens", token_file[0], "--out", tmp_path / "v.mp4")
    reader = open_video(tmp_path / "v.mp4")
    assert (reader.num_frames, reader.fps) == (9, 12.0)
    with torch.no_grad():
        video = load_autoencoder(fsq_run["export"]).detokenize(torch.full((1, 1, 3, 4, 4), 7))[0]
    assert_mp4_shows(tmp_path / "v.mp4", video)


@pytest.mark.parametrize("recorded", ["nan", "-5", "0"])
def test_detokenize_writes_a_clip_of_unknown_or_edited_rate_at_the_default_fps(
    recorded: str, fsq_run: dict[str, Path], token_file: tuple[Path, dict], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """NaN crashed after the whole decode (no integer ratio) and -5 in the encoder; 0 records an unknown rate."""
    tokens = write_token_file(token_file[0], torch.full((1, 3, 4, 4), 7), {**token_file[1], "fps": recorded})
    run("detokenize", "--model", fsq_run["export"], "--tokens", tokens, "--out", tmp_path / "v.mp4")
    assert open_video(tmp_path / "v.mp4").fps == 24.0
    log = capsys.readouterr().err
    assert "WARNING" in log and f"records fps {recorded}: writing the mp4 at 24 fps (choose with --fps)" in log, log
    run("detokenize", "--model", fsq_run["export"], "--tokens", tokens, "--out", tmp_path / "w.mp4", "--fps", "10")
    assert open_video(tmp_path / "w.mp4").fps == 10.0 and "WARNING" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("damaged token file", "is not a readable vtok token file"),
        ("indices out of range", "outside [0, 1000)"),
        ("continuous model", "continuous (kl)"),
        ("other codebook", "codebook_size 64000 in the file, 1000 in the model"),
        ("grid unlike the recorded clip", "holds a 3x4x5 token grid, but its 9x32x32 clip gives 3x4x4 at 4x8x8"),
        ("tokenize with a continuous model", "continuous (kl) model and has no tokens"),
        ("metadata without height", "t.safetensors: token metadata 'height' missing or not a number; write it again"),
        ("frames not a number", "t.safetensors: token metadata 'frames' missing or not a number"),
        ("format_version not a number", "t.safetensors: token metadata 'format_version' missing or not a number"),
        ("float indices", "holds 'indices' of dtype torch.float32, not integer token indices"),
    ],
)
def test_bad_token_input_is_one_line_with_exit_code_2(
    case: str, message: str, fsq_run: dict[str, Path], token_file: tuple[Path, dict], video_folder: Path,
    tmp_path: Path, capsys: pytest.CaptureFixture,
) -> None:  # fmt: skip
    tokens, metadata = token_file
    model = fsq_run["export"]
    command = "detokenize"
    if case == "damaged token file":
        tokens.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    elif case == "indices out of range":
        write_token_file(tokens, torch.full((1, 3, 4, 4), 5000), metadata)
    elif case == "grid unlike the recorded clip":
        write_token_file(tokens, torch.full((1, 3, 4, 5), 7), metadata)
    elif case == "float indices":  # 7.5 was read as 7, silently
        save_file({"indices": torch.full((1, 3, 4, 4), 7.5)}, str(tokens), metadata=metadata)
    elif case == "metadata without height":  # a KeyError traceback once
        write_token_file(tokens, torch.full((1, 3, 4, 4), 7), {k: v for k, v in metadata.items() if k != "height"})
    elif case.endswith("not a number"):  # int()'s error, naming no file, once
        write_token_file(tokens, torch.full((1, 3, 4, 4), 7), {**metadata, case.split()[0]: "abc"})
    elif case in ("continuous model", "tokenize with a continuous model"):
        model = write_export(VideoAutoencoder(block_out_channels=[8, 16], latent_channels=4, layers_per_block=1), tmp_path / "kl", {})
        command = "tokenize" if case.startswith("tokenize") else command
    else:
        write_token_file(tokens, torch.full((1, 3, 4, 4), 7), {**metadata, "codebook_size": "64000"})
    arguments = ["--tokens", tokens, "--out", tmp_path / "v.mp4"] if command == "detokenize" else ["--data", video_folder, "--out", tmp_path / "t"]
    with pytest.raises(SystemExit) as exit_info:
        run(command, "--model", model, *arguments)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"vtok {command}: error:") and message in error and "\n" not in error, error


def test_a_rerun_with_another_model_or_other_clip_settings_is_refused(
    fsq_run: dict[str, Path], two_videos: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "tokens"
    run("tokenize", "--model", fsq_run["export"], "--data", two_videos, "--out", out)
    run("tokenize", "--model", fsq_run["checkpoint"], "--data", two_videos, "--out", out)  # the same weights
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("tokenized 0 videos (2 already done, 0 skipped)")
    other = load_autoencoder(fsq_run["export"])
    with torch.no_grad():
        other.encoder.conv_in.weight.add_(0.01)
    write_export(other, tmp_path / "other", {"_vtok_clip": {"num_frames": 5, "size": [32, 32]}})
    index = (out / "index.jsonl").read_text()
    for model, flags, difference in [
        (fsq_run["export"], ["--size", "48", "64", "--frames", "9"], "frames None in the file, 9 now; height 32 in"),
        (fsq_run["export"], ["--fps", "12"], "fps None in the file, 12.0 now"),
        (tmp_path / "other", [], "model weights sha256"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            run("tokenize", "--model", model, "--data", two_videos, "--out", out, *flags)
        assert exit_info.value.code == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith("vtok tokenize: error:") and "\n" not in error, error
        assert difference in error and "new --out" in error, error
    assert (out / "index.jsonl").read_text() == index and len(list((out / "tokens").iterdir())) == 2


def test_a_manifest_bounds_the_frames_and_sets_the_rate(
    fsq_run: dict[str, Path], two_videos: Path, tmp_path: Path
) -> None:
    # as `vtok prepare` records a file damaged after frame 9 (its header says 20) at 12 fps
    files = sorted(two_videos.glob("*.mp4"))
    manifest = tmp_path / "manifest.jsonl"
    lines = [{"path": str(f), "frames": 9, "fps": 12.0, "reported_frames": 20} for f in files]
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "tokens"
    run("tokenize", "--model", fsq_run["export"], "--data", manifest, "--out", out)
    entries = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    assert [(e["frames"], e["fps"], e["shape"]) for e in entries] == [(9, 12.0, [1, 3, 4, 4])] * 2
    assert read_token_file(out / entries[0]["tokens"])[1]["first_frame"] == "0"


@pytest.mark.parametrize(
    ("command", "flags", "message"),
    [
        ("tokenize", {"--size": ["32", "32", "32"]}, "--size takes one number or two (H W), got 3"),
        ("tokenize", {"--frames": ["0"]}, "--frames must be at least 1, got 0"),
        ("tokenize", {"--fps": ["0"]}, "--fps must be a finite number above 0, got 0"),
        ("tokenize", {"--fps": ["nan"]}, "--fps must be a finite number above 0, got nan"),  # failed late, per video
        ("tokenize", {"--fps": ["inf"]}, "--fps must be a finite number above 0, got inf"),  # took every frame
        ("tokenize", {"--out": ["FILE"]}, "is a file; give the path of a new or an existing folder"),
        ("tokenize", {"--data": ["BROKEN"], "--frames": ["9"]}, "none of the 5 videos could be read"),
        ("detokenize", {"--fps": ["-5"]}, "--fps must be a finite number above 0, got -5"),
        ("detokenize", {"--fps": ["nan"]}, "--fps must be a finite number above 0, got nan"),
        ("detokenize", {"--out": ["clip.avi"]}, "must name an .mp4 file"),
        ("detokenize", {"--out": ["FILE/v.mp4"]}, "v.mp4: its folder "),  # a FileExistsError after the decode once
    ],
)
def test_bad_flags_are_one_line_errors(
    command: str, flags: dict[str, list[str]], message: str, fsq_run: dict[str, Path], token_file: tuple[Path, dict],
    video_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
) -> None:  # fmt: skip
    (tmp_path / "FILE").write_text("a file")
    write_broken_files(tmp_path / "BROKEN", sorted(video_folder.glob("*.mp4"))[0])
    inputs = {"--data": [video_folder]} if command == "tokenize" else {"--tokens": [token_file[0]]}
    options = {"--out": [tmp_path / ("tokens" if command == "tokenize" else "v.mp4")], **inputs}
    for flag, values in flags.items():
        options[flag] = [tmp_path / v if v in ("FILE", "BROKEN", "clip.avi", "FILE/v.mp4") else v for v in values]
    with pytest.raises(SystemExit) as exit_info:
        run(command, "--model", fsq_run["export"], *[a for flag, values in options.items() for a in (flag, *values)])
    assert exit_info.value.code == 2
    stderr = capsys.readouterr().err
    error = stderr.strip().splitlines()[-1]  # after the warnings of skipped videos
    assert "Traceback" not in stderr and error.startswith(f"vtok {command}: error:") and message in error, stderr
    if flags.get("--out") == ["FILE/v.mp4"]:
        assert f"{tmp_path / 'FILE'} is a file; give the path of a new or an existing folder" in error, error
    if flags.get("--data") == ["BROKEN"]:  # the reasons are listed where the message says
        assert str(tmp_path / "tokens" / "skipped.jsonl") in error
        assert len((tmp_path / "tokens" / "skipped.jsonl").read_text().splitlines()) == 5


def test_detokenize_offers_no_workers_flag(capsys: pytest.CaptureFixture) -> None:
    """--workers decodes videos ahead; detokenize reads one token file, so the flag did nothing there."""
    with pytest.raises(SystemExit):
        run("detokenize", "--help")
    usage = capsys.readouterr().out
    assert "--device" in usage and "--workers" not in usage
    with pytest.raises(SystemExit) as exit_info:
        run("detokenize", "--model", "m", "--tokens", "t.safetensors", "--out", "v.mp4", "--workers", "2")
    assert exit_info.value.code == 2 and "unrecognized arguments: --workers 2" in capsys.readouterr().err


def _exported_copy(fsq_run: dict[str, Path], out: Path, change: str) -> VideoAutoencoder:
    """The fsq export with one part's weights changed, exported to ``out``."""
    model = load_autoencoder(fsq_run["export"])
    with torch.no_grad():
        for parameter in model.decoder_parameters() if change == "decoder" else model.encoder_parameters():
            parameter.add_(0.01)
        if change == "decoder":  # a stage-2 decoder may retrain the projection from codes to it too
            model.quantizer.project_out.weight.add_(0.01)
    write_export(model, out, {})
    return model


def test_detokenize_takes_another_decoder_but_refuses_another_encoder(
    fsq_run: dict[str, Path], two_videos: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run("tokenize", "--model", fsq_run["export"], "--data", two_videos, "--out", tmp_path / "t", "--frames", 9)
    token_path = sorted((tmp_path / "t" / "tokens").iterdir())[0]
    tokens, metadata = read_token_file(token_path)
    original = load_autoencoder(fsq_run["export"])
    assert metadata["model_sha256"] == weights_sha256(original)
    assert metadata["tokenizer_sha256"] == tokenizer_sha256(original)
    capsys.readouterr()

    # a decoder trained on the frozen encoder and quantizer (stage 2) decodes them, saying so
    stage2 = _exported_copy(fsq_run, tmp_path / "stage2", "decoder")
    assert tokenizer_sha256(stage2) == metadata["tokenizer_sha256"] != weights_sha256(stage2)
    run("detokenize", "--model", tmp_path / "stage2", "--tokens", token_path, "--out", tmp_path / "stage2.mp4")
    log = capsys.readouterr().err
    assert "another decoder" in log and metadata["model_sha256"][:12] in log and weights_sha256(stage2)[:12] in log
    with torch.no_grad():
        assert_mp4_shows(tmp_path / "stage2.mp4", stage2.detokenize(tokens[None])[0])

    # another encoder gives the indices other meanings: refused, naming both hashes
    other = _exported_copy(fsq_run, tmp_path / "other", "encoder")
    with pytest.raises(SystemExit) as exit_info:
        run("detokenize", "--model", tmp_path / "other", "--tokens", token_path, "--out", tmp_path / "other.mp4")
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("vtok detokenize: error:") and "\n" not in error, error
    assert "another encoder or quantizer" in error and metadata["tokenizer_sha256"][:12] in error, error
    assert tokenizer_sha256(other)[:12] in error and not (tmp_path / "other.mp4").exists()

    # a file from before the tokenizer hash cannot tell: decoded with a warning naming both weights hashes
    older = {key: value for key, value in metadata.items() if key != "tokenizer_sha256"}
    older_path = write_token_file(tmp_path / "older.safetensors", tokens, older)
    run("detokenize", "--model", tmp_path / "other", "--tokens", older_path, "--out", tmp_path / "o.mp4")
    log = capsys.readouterr().err
    assert "WARNING" in log and metadata["model_sha256"][:12] in log and weights_sha256(other)[:12] in log, log
    run("detokenize", "--model", fsq_run["export"], "--tokens", token_path, "--out", tmp_path / "same.mp4")
    assert "sha256" not in capsys.readouterr().err  # the very weights: nothing to say


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ((2, 1, 4, 3), "tokens of shape [2, 1, 4, 3], but the model reads [2, 1, 4, 4] for its 3x4x4 grid"),
        ((1, 1, 4, 4), "tokens of shape [1, 1, 4, 4], but the model reads [2, 1, 4, 4] for its 3x4x4 grid"),
        ((2, 3, 4, 4), "tokens of shape [2, 3, 4, 4], but the model reads [2, 1, 4, 4] for its 3x4x4 grid"),
        (None, "holds no 'first_frame_extra' tokens, but the model reads 2 per first-latent-frame position"),
        # once described with the regular grid's shape, [B, 2, T, H, W]
        (torch.full((2, 1, 4, 4), 125), "first_frame_extra tokens range over [125, 125], outside [0, 125); expected int64 [B, 2, 1,"),
        (torch.full((2, 1, 4, 4), 3.5), "holds 'first_frame_extra' of dtype torch.float32, not integer"),  # once read as 3
    ],
)
def test_damaged_first_frame_tokens_are_one_line_errors(
    extra: tuple[int, ...] | torch.Tensor | None, message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    torch.manual_seed(0)
    model = VideoAutoencoder(
        bottleneck="fsq", fsq_levels=[5, 5, 5], first_frame_tokens=2, block_out_channels=[8, 16], latent_channels=4,
        layers_per_block=1,
    ).eval()  # fmt: skip
    write_export(model, tmp_path / "ff", {})
    metadata = {
        "format": "vtok-tokens", "format_version": "1", "source": "made-by-the-test.mp4", "first_frame": "0",
        "frames": "9", "stride": "1", "fps": "12.0", "height": "32", "width": "32", "compression": "4x8x8",
        "codebook_size": "125", "tokens_per_position": "1", "first_frame_tokens": "2", "model": str(tmp_path / "ff"),
    }  # fmt: skip
    good = FirstFrameTokens(torch.full((1, 3, 4, 4), 7), torch.full((2, 1, 4, 4), 3))
    good_path = write_token_file(tmp_path / "good.safetensors", good, metadata)
    run("detokenize", "--model", tmp_path / "ff", "--tokens", good_path, "--out", tmp_path / "good.mp4")
    assert open_video(tmp_path / "good.mp4").num_frames == 9

    bad_path = tmp_path / "bad.safetensors"
    if isinstance(extra, torch.Tensor):  # as it is, where write_token_file would store integers
        save_file({"indices": good.indices.to(torch.int16), "first_frame_extra": extra}, str(bad_path), metadata=metadata)
    else:
        damaged = good.indices if extra is None else FirstFrameTokens(good.indices, torch.full(extra, 3))
        write_token_file(bad_path, damaged, metadata)
    with pytest.raises(SystemExit) as exit_info:
        run("detokenize", "--model", tmp_path / "ff", "--tokens", bad_path, "--out", tmp_path / "v.mp4")
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("vtok detokenize: error:") and message in error and "\n" not in error, error
    if isinstance(extra, tuple):  # from Python too: a ValueError naming the shapes, not torch.cat's error
        with pytest.raises(ValueError, match=r"first_frame_extra has shape \(1, "):
            model.detokenize(map_tokens(damaged, lambda t: t[None]))
