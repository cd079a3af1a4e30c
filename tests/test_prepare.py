"""vtok prepare: verified manifests, resumable scans, re-encoding, and shards streamed into training."""

from __future__ import annotations

import json
import time
from fractions import Fraction
from pathlib import Path

import av
import pytest

from tests.conftest import write_broken_files
from vtok.cli import main as vtok_main
from vtok.data import open_video, synthetic_clip, write_sample_clips
from vtok.data.datamodule import VideoDataModule
from vtok.data.manifest import read_jsonl
from vtok.data.readers import DecordReader, VideoDecodeError
from vtok.data.scan_pool import STALLED, run_with_deadlines
from vtok.prepare import main as prepare

QUIET = ["--no-progress"]


def _names(records: list[dict]) -> list[str]:
    return sorted(Path(record.get("source", record["path"])).name for record in records)


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory: pytest.TempPathFactory, video_folder: Path) -> Path:
    """``vtok prepare --shards`` over the eight good clips: a manifest, and four shards of two samples."""
    out = tmp_path_factory.mktemp("prepared")
    prepare(["--data", str(video_folder), "--out", str(out), "--shards", "--shard-size", "0.02", "--workers", "2", *QUIET])
    return out


def test_prepare_accepts_exactly_the_good_files_and_a_second_run_decodes_nothing(
    mixed_folder: tuple[Path, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    folder, broken = mixed_folder
    out = tmp_path / "prepared"
    args = ["prepare", "--data", str(folder), "--out", str(out), "--min-frames", "9", "--workers", "2", *QUIET]
    vtok_main(args)  # the console script's entry point
    assert "4 accepted, 5 rejected" in capsys.readouterr().out
    manifest, rejected = read_jsonl(out / "manifest.jsonl"), read_jsonl(out / "rejected.jsonl")
    assert _names(manifest) == sorted(p.name for p in folder.glob("sample_*.mp4"))
    for record in manifest:
        assert (record["frames"], record["fps"], record["width"], record["height"]) == (20, 24.0, 64, 40)
        assert record["duration"] == pytest.approx(20 / 24, abs=1e-3)
        assert record["codec"] == "h264" and record["keyframe_interval"] == 20  # x264's default: one keyframe
        assert "reported_frames" not in record
    reasons = {Path(record["path"]).name: record["reason"] for record in rejected}
    assert set(reasons) == set(broken)
    assert "empty" in reasons["empty.mp4"] and "too short: 3 frames" in reasons["short.mp4"]

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("a file already in the manifest or the rejected list was decoded again")

    monkeypatch.setattr("vtok.data.prepare.probe_video", no_decoding)
    summary = prepare([*args[1:], "--workers", "0"])  # decoding here, in this process, would hit no_decoding
    assert (summary.found, summary.known, summary.probed, summary.accepted, summary.rejected) == (9, 9, 0, 0, [])
    assert read_jsonl(out / "manifest.jsonl") == manifest and read_jsonl(out / "rejected.jsonl") == rejected

    monkeypatch.undo()  # a new file: only it is decoded
    write_sample_clips(folder / "new", count=1, frames=12, height=40, width=64, seed=9)
    summary = prepare(args[1:])
    assert (summary.probed, summary.accepted, summary.manifest_total) == (1, 1, 5)


def _write_faststart(path: Path, frames: int) -> Path:
    """An H.264 mp4 with the index (moov) before the frames (mdat), as streaming sites serve them."""
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=Fraction(24))
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for array in synthetic_clip(frames, 48, 64, seed=4).numpy():
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode())
    return path


def test_a_file_whose_header_promises_missing_frames_is_cut_to_the_frames_that_decode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    whole = _write_faststart(folder / "cut.mp4", 40).read_bytes()
    for cut in (10, 40, 5, 60, 1):  # decord refuses to open some cuts outright (PyAV then reads them)
        path = folder / "cut.mp4"
        path.write_bytes(whole[:-cut])  # the tail of the mdat is gone; the moov still lists 40 frames
        try:
            reader = DecordReader(path)
            break
        except VideoDecodeError:
            continue
    assert reader.num_frames == 40  # decord believes the header...
    with pytest.raises(VideoDecodeError):
        reader.read([39])  # ...and cannot give the last frame

    prepare(["--data", str(folder), "--out", str(tmp_path / "out"), "--workers", "0", *QUIET])
    (record,) = read_jsonl(tmp_path / "out" / "manifest.jsonl")
    usable = record["frames"]
    assert record["reported_frames"] == 40 and 30 <= usable < 40
    assert open_video(path).read([usable - 1]).shape[0] == 1
    with pytest.raises(VideoDecodeError):
        open_video(path).read([usable])

    requested: list[int] = []

    def spying_open_video(file: str, backend: str = "auto"):  # noqa: ANN202
        opened = open_video(file, backend)
        read = opened.read
        opened.read = lambda indices: (requested.extend(indices), read(indices))[1]
        return opened

    monkeypatch.setattr("vtok.data.dataset.open_video", spying_open_video)
    # clips of usable - 1 frames: within the 40 frames the header claims, they would reach frame 39
    module = VideoDataModule(path=str(tmp_path / "out" / "manifest.jsonl"), val_fraction=0, num_frames=usable - 1, size=32, num_workers=0)
    module.setup("fit")
    loader = module.train_dataloader()
    for epoch in range(12):
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            module.on_after_batch_transfer(batch, 0)
    assert requested and max(requested) < usable
    assert max(requested) == usable - 1, "the random starts reach the last verified frame"
    assert module.skipped_files == {}


def test_a_manifest_line_whose_file_is_gone_is_skipped_with_a_warning(
    shard_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lines = read_jsonl(shard_dir / "manifest.jsonl")[:3]
    lines.append({**lines[0], "path": str(tmp_path / "gone.mp4")})
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    module = VideoDataModule(path=str(tmp_path / "manifest.jsonl"), val_fraction=0, num_frames=5, size=32, batch_size=2, num_workers=0)
    module.setup("fit")
    batches = [module.on_after_batch_transfer(batch, 0) for batch in module.train_dataloader()]
    assert [b["video"].shape[0] for b in batches] == [2, 2]
    assert module.skipped_files == {str(tmp_path / "gone.mp4"): "no such file"}
    assert any("gone.mp4" in r.message and "no such file" in r.message for r in caplog.records)


def test_reencoding_shortens_the_keyframe_interval_and_scales_the_short_side(video_folder: Path, tmp_path: Path) -> None:
    sources = sorted(video_folder.glob("*.mp4"))[:2]
    (tmp_path / "list.txt").write_text("".join(f"{p}\n" for p in sources))
    out = tmp_path / "out"
    prepare(["--data", str(tmp_path / "list.txt"), "--out", str(out), "--reencode", "--short-side", "32", "--keyframe-interval", "4", "--workers", "0", *QUIET])
    records = read_jsonl(out / "manifest.jsonl")
    assert _names(records) == sorted(p.name for p in sources)
    for record in records:
        assert record["path"].startswith("videos/") and (out / record["path"]).is_file()
        assert (record["frames"], record["height"], record["width"]) == (20, 32, 52)  # 40x64 -> short side 32
        assert record["keyframe_interval"] <= 4
        assert open_video(out / record["path"]).read([19]).shape == (1, 32, 52, 3)


def test_bad_input_is_a_clear_error_never_a_crash(tmp_path: Path, video_folder: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "nothing").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        vtok_main(["prepare", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "out"), *QUIET])
    assert exit_info.value.code == 2 and "no video files found" in capsys.readouterr().err
    write_broken_files(tmp_path / "bad", sorted(video_folder.glob("*.mp4"))[0])
    with pytest.raises(ValueError, match="none of the 5 files .* is usable"):
        prepare(["--data", str(tmp_path / "bad"), "--out", str(tmp_path / "out"), "--min-frames", "9", *QUIET])


def test_an_item_that_stalls_is_reported_and_the_others_finish() -> None:
    # time.sleep stands in for a decoder stuck in C code: the pool is replaced, the rest carries on
    results = dict(run_with_deadlines(time.sleep, [0.1, 30.0, 0.2, 0.3], workers=2, timeout=1.5))
    assert results == {0.1: None, 30.0: STALLED, 0.2: None, 0.3: None}
