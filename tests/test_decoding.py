"""Decoding: every reader gives the frames a player shows, or says why it cannot.

Files decord reads wrong without an error (AVI or MPEG-4 Part 2 with B-frames, edit lists), files
with several video streams, display rotations, frame sizes that change part-way, and damage the
decoder would conceal. The ground truth is PyAV decoding the file in order from its first frame.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from vtok.data import ClipSpec, VideoClipDataset, open_video, synthetic_clip
from vtok.data.clips import VideoLength
from vtok.data.decord_check import CHECK_VERSION
from vtok.data.errors import UnusableFileError
from vtok.data.images import read_rgb_image
from vtok.data.manifest import read_jsonl
from vtok.data.probe import probe_video
from vtok.data.pyav_frames import displayed_array
from vtok.data.decode_errors import FrameSizeChangeError
from vtok.data.read_ahead import read_ahead
from vtok.data.readers import DecordReader, PyAVReader, VideoDecodeError
from vtok.data.reencode import reencode_video
from vtok.commands.prepare import main as prepare

QUIET = ["--no-progress", "--workers", "0"]


def _write(
    path: Path, frames: int = 60, height: int = 64, width: int = 64, codec: str = "libx264", **options: str
) -> Path:
    """Synthetic frames encoded with ``codec`` and encoder ``options`` (``bf``: B-frames, ``g``: keyframe
    interval; ``rotation``: a display matrix, in degrees counter-clockwise)."""
    rotation = options.pop("rotation", None)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=24)
        stream.width, stream.height, stream.pix_fmt, stream.options = width, height, "yuv420p", options
        if rotation is not None:
            stream.set_display_rotation(int(rotation))
        for array in synthetic_clip(frames, height, width, seed=2).numpy():
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode())
    return path


def _in_order(path: Path, stream_index: int | None = None) -> np.ndarray:
    """Every frame of the file's best (or the given) video stream, as coded, decoded from the start."""
    with av.open(str(path)) as container:
        stream = container.streams.best("video") if stream_index is None else container.streams[stream_index]
        return np.stack([frame.to_ndarray(format="rgb24", threads=1) for frame in container.decode(stream)])


def _error(frames: torch.Tensor | np.ndarray, truth: np.ndarray) -> float:
    frames = frames.numpy() if isinstance(frames, torch.Tensor) else frames
    assert frames.shape == truth.shape, (frames.shape, truth.shape)
    return float(np.abs(frames.astype(np.int16) - truth).mean())


@pytest.mark.parametrize(
    "name, codec, options",
    [
        ("h264_bframes.avi", "libx264", {"bf": "3", "g": "30"}),
        ("xvid_like.avi", "mpeg4", {"bf": "1", "g": "12"}),
        ("mpeg4_bframes.mp4", "mpeg4", {"bf": "2", "g": "30"}),
    ],
)
def test_b_frames_in_avi_and_mpeg4_part2_give_the_frames_asked_for(
    tmp_path: Path, name: str, codec: str, options: dict[str, str]
) -> None:
    # decord 0.6 returns frames of another stretch after a seek in these files, without an error
    path = _write(tmp_path / name, codec=codec, **options)
    truth = _in_order(path)
    for start in (1, 2, 11, 16, 25, 31, 32, 47):
        clip = open_video(path).read(list(range(start, start + 4)))  # a fresh reader per clip, as training opens
        assert _error(clip, truth[start : start + 4]) < 3, f"clip at frame {start}"
    dataset = VideoClipDataset([str(path)], ClipSpec(9), (64, 64), train=False)
    video, info = dataset.load_with_info(0)
    assert info.first_frame == 25 and video.shape == (3, 9, 64, 64)


def _trim_by_stream_copy(source: Path, destination: Path, frames: int) -> Path:
    """What ``ffmpeg -ss ... -c copy`` writes: every packet, shifted so that the first ``frames`` have
    negative timestamps and an edit list that tells players to skip them."""
    with av.open(str(source)) as inp, av.open(str(destination), "w") as out:
        stream = inp.streams.video[0]
        copy = out.add_stream_from_template(stream)
        step = int(round(1 / 24 / stream.time_base))
        for packet in inp.demux(stream):
            if packet.size and packet.pts is not None:
                packet.pts -= frames * step
                packet.dts -= frames * step
                packet.stream = copy
                out.mux(packet)
    return destination


def test_an_mp4_trimmed_by_stream_copy_gives_the_frames_a_player_shows(tmp_path: Path) -> None:
    source = _write(tmp_path / "source.mp4", frames=40, g="40", bf="0")
    (tmp_path / "videos").mkdir()
    trimmed = _trim_by_stream_copy(source, tmp_path / "videos" / "trimmed.mp4", 10)
    truth = _in_order(trimmed)
    assert len(truth) == 30 and _error(truth, _in_order(source)[10:]) == 0  # PyAV shows frames 10-39 of the source
    for backend in ("auto", "pyav"):
        reader = open_video(trimmed, backend)
        assert reader.num_frames == 30, backend  # decord counts the header's 40
        assert _error(reader.read(list(range(30))), truth) < 3, backend
        assert _error(open_video(trimmed, backend).read([25]), truth[25:26]) < 3, backend
        with pytest.raises(VideoDecodeError):
            open_video(trimmed, backend).read([30])
    reason = "decord counts 40 frames where PyAV presents 30 (an edit list?)"
    assert DecordReader(trimmed).check_against_pyav() == reason
    with pytest.raises(UnusableFileError, match="decord reads it wrong: decord counts 40 frames"):
        probe_video(str(trimmed), "decord")
    prepare(["--data", str(tmp_path / "videos"), "--out", str(tmp_path / "out"), *QUIET])
    (record,) = read_jsonl(tmp_path / "out" / "manifest.jsonl")
    assert record["frames"] == 30 and "reported_frames" not in record


def _with_size_change(path: Path) -> Path:
    """12 frames of 64x64, then 12 of 64x96, in one H.264 stream (as spliced broadcast captures are)."""
    raw = b""
    for index, width in enumerate((64, 96)):
        segment = path.with_name(f"segment{index}.h264")
        with av.open(str(segment), "w", format="h264") as container:
            stream = container.add_stream("libx264", rate=24)
            stream.width, stream.height, stream.pix_fmt = width, 64, "yuv420p"
            for array in synthetic_clip(12, 64, width, seed=index).numpy():
                container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
            container.mux(stream.encode())
        raw += segment.read_bytes()
    joined = path.with_name("joined.h264")
    joined.write_bytes(raw)
    with av.open(str(joined), format="h264") as inp, av.open(str(path), "w") as out:
        copy = out.add_stream_from_template(inp.streams.video[0])
        copy.time_base = Fraction(1, 90000)
        for index, packet in enumerate(p for p in inp.demux(inp.streams.video[0]) if p.size):
            packet.stream, packet.time_base = copy, copy.time_base
            packet.pts = packet.dts = index * 3750
            out.mux(packet)
    return path


@pytest.mark.parametrize("suffix", [".ts", ".mkv"])  # PyAV reads .ts; decord would read .mkv, scaling every frame
def test_a_frame_size_change_skips_the_file_with_the_reason(tmp_path: Path, suffix: str) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    changing = _with_size_change(videos / f"changing{suffix}")
    good = _write(videos / "good.mp4", frames=30)
    for junk in tmp_path.glob("videos/*.h264"):
        junk.unlink()
    reason = "frame size changes from 64x64 to 64x96 (HxW) at frame 12"
    with pytest.raises(FrameSizeChangeError, match=re.escape(reason)):
        open_video(changing).read(list(range(16)))
    dataset = VideoClipDataset([str(changing), str(good)], ClipSpec(20), (32, 32), train=False)
    (_, unusable, _, skip), (_, usable, _, _) = read_ahead(dataset)
    assert unusable is None and usable is not None
    assert skip == {"path": str(changing), "reason": reason}
    summary = prepare(["--data", str(videos), "--out", str(tmp_path / "out"), *QUIET])
    assert summary.accepted == 1 and summary.rejected == [(str(changing), reason)]


def _thumbnail_first(path: Path) -> Path:
    """A 1-frame 32x32 thumbnail (MJPEG in an mkv, H.264 in an mp4) as stream 0, then the 20-frame 64x64 video."""
    mkv = path.suffix == ".mkv"
    with av.open(str(path), "w", format="matroska" if mkv else "mp4") as container:
        thumbnail = container.add_stream("mjpeg" if mkv else "libx264", rate=24)
        thumbnail.width = thumbnail.height = 32
        thumbnail.pix_fmt = "yuvj420p" if mkv else "yuv420p"
        video = container.add_stream("libx264", rate=24)
        video.width = video.height = 64
        video.pix_fmt = "yuv420p"
        for stream, frames, size in ((thumbnail, 1, 32), (video, 20, 64)):
            for array in synthetic_clip(frames, size, size, seed=size).numpy():
                container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
            container.mux(stream.encode())
    return path


@pytest.mark.parametrize("suffix", ["mkv", "mp4"])
def test_every_reader_reads_the_best_video_stream_not_a_thumbnail(tmp_path: Path, suffix: str) -> None:
    """In an mp4 the thumbnail, first, is the one track marked default (as a mov muxer writes it), which FFmpeg
    since 5.1 ranks first: PyAV read it (1 frame), decord the video, and `auto` took PyAV's side."""
    (tmp_path / "videos").mkdir()
    path = _thumbnail_first(tmp_path / "videos" / f"thumb_first.{suffix}")
    truth = _in_order(path, stream_index=1)
    for backend in ("auto", "pyav", "decord"):
        reader = open_video(path, backend)
        assert (reader.num_frames, reader.height, reader.width) == (20, 64, 64), backend
        assert _error(reader.read([0, 19]), truth[[0, 19]]) < 3, backend
    copy = reencode_video(str(path), tmp_path / "copy.mp4", frames=20, fps=24.0).path
    assert _error(PyAVReader(copy).read(list(range(20))), truth) < 6
    prepare(["--data", str(tmp_path / "videos"), "--out", str(tmp_path / "out"), *QUIET])
    (record,) = read_jsonl(tmp_path / "out" / "manifest.jsonl")
    assert (record["frames"], record["height"], record["codec"], record["keyframe_interval"]) == (20, 64, "h264", 20)


@pytest.mark.parametrize("rotation", [90, 180, -90])
def test_a_display_rotation_is_applied_by_every_reader_and_the_reencoded_copy(tmp_path: Path, rotation: int) -> None:
    path = _write(tmp_path / f"rot{rotation}.mp4", frames=10, height=48, width=80, rotation=str(rotation))
    shown = np.rot90(_in_order(path), rotation // 90, axes=(1, 2))  # counter-clockwise, as FFmpeg's display matrix says
    for backend in ("auto", "pyav"):
        reader = open_video(path, backend)
        assert (reader.height, reader.width) == shown.shape[1:3], backend
        assert _error(reader.read(list(range(10))), shown) < 3, backend
    copy = reencode_video(str(path), tmp_path / "copy.mp4", frames=10, fps=24.0).path
    with av.open(str(copy)) as container:
        assert next(container.decode(video=0)).rotation == 0  # written upright, with no display matrix
    assert _error(open_video(copy).read(list(range(10))), shown) < 6
    info = probe_video(str(path))
    assert (info.height, info.width) == shown.shape[1:3]


def test_a_jpeg_is_read_in_its_exif_orientation(tmp_path: Path) -> None:
    array = np.zeros((48, 80, 3), np.uint8)
    array[:, :20] = 255  # a white band on the left, as stored
    image = Image.fromarray(array)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    image.save(tmp_path / "portrait.jpg", exif=exif.tobytes())
    read = read_rgb_image(str(tmp_path / "portrait.jpg"))
    with Image.open(tmp_path / "portrait.jpg") as stored:
        shown = np.array(ImageOps.exif_transpose(stored))
    assert read.shape == (80, 48, 3) and torch.equal(read, torch.from_numpy(shown))
    assert read[:20].float().mean() > 200 and read[-20:].float().mean() < 50  # the band is now on top


def test_decord_keeps_the_files_it_reads_right(tmp_path: Path, carphone: Path) -> None:
    files = [
        carphone,
        _write(tmp_path / "keyframe_every_8.mp4", frames=40, g="8"),
        _write(tmp_path / "b_frames.mp4", frames=60, bf="3", g="24"),
        _write(tmp_path / "rot180.mp4", frames=10, rotation="180"),  # decord turns it as PyAV does
        _write(tmp_path / "clip.mkv", frames=30, g="10"),
    ]
    for path in files:
        assert DecordReader(path).check_against_pyav() is None, path.name


@pytest.mark.parametrize("suffix", ["mp4", "mkv"])
def test_an_open_gop_past_the_checked_frames_gives_the_frames_asked_for(tmp_path: Path, suffix: str) -> None:
    """x264's open GOPs: a keyframe's leading pictures are shown before it, so decord (which numbers keyframes
    in decoding order) seeks 4 frames short; with the first keyframe past the frames the check compares, the
    clip at 318 was frames 314-317 with no word."""
    options = {"x264-params": "keyint=320:min-keyint=320:open-gop=1:bframes=8:b-adapt=0:scenecut=0"}
    path = _write(tmp_path / f"open_gop.{suffix}", frames=340, height=32, width=32, **options)
    assert "leading pictures of an open GOP" in DecordReader(path).check_against_pyav()
    truth = _in_order(path)
    for start in (300, 314, 318, 322, 330):
        clip = open_video(path).read(list(range(start, start + 4)))
        assert _error(clip, truth[start : start + 4]) < 3, f"clip at frame {start}"


def test_a_worker_checks_each_file_against_pyav_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path / "clip.mp4", frames=30, g="8")
    checks: list[str] = []
    check = DecordReader.check_against_pyav
    monkeypatch.setattr(DecordReader, "check_against_pyav", lambda self: (checks.append(self.path), check(self))[1])
    monkeypatch.setattr("vtok.data.readers._decord_verdicts", {})
    for _ in range(3):
        open_video(path).read([5])
    assert checks == [str(path)]
    path.write_bytes(_write(tmp_path / "other.mp4", frames=20, g="8").read_bytes())  # a new file at the same path
    open_video(path).read([5])
    assert checks == [str(path)] * 2


def test_prepares_workers_say_what_they_find_as_the_calling_process_does(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file read with PyAV, not decord, is said so in an info line. Prepare's workers (two by default) started by
    the fork server had no handler, so the line was lost unless --workers 0."""
    videos = tmp_path / "videos"
    videos.mkdir()
    _trim_by_stream_copy(_write(tmp_path / "source.mp4", frames=40, g="40", bf="0"), videos / "trimmed.mp4", 10)
    caplog.set_level(logging.INFO, logger="vtok")
    prepare(["--data", str(videos), "--out", str(tmp_path / "out"), "--no-progress", "--workers", "1"])
    said = [record for record in caplog.records if "read with PyAV, not decord" in record.getMessage()]
    assert [(record.levelname, Path(record.getMessage().split(":")[0]).name) for record in said] == [("INFO", "trimmed.mp4")]


def test_training_trusts_the_reader_prepare_recorded_and_checks_nothing_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    _write(videos / "plain.mp4", frames=30, g="8")
    _trim_by_stream_copy(_write(tmp_path / "source.mp4", frames=40, g="40", bf="0"), videos / "trimmed.mp4", 10)
    prepare(["--data", str(videos), "--out", str(tmp_path / "out"), *QUIET])
    records = sorted(read_jsonl(tmp_path / "out" / "manifest.jsonl"), key=lambda record: record["path"])
    assert [(Path(r["path"]).name, r["reader"]) for r in records] == [("plain.mp4", "decord"), ("trimmed.mp4", "pyav")]
    assert [r.get("decord_check") for r in records] == [CHECK_VERSION, None]

    checks: list[str] = []
    check = DecordReader.check_against_pyav
    monkeypatch.setattr(DecordReader, "check_against_pyav", lambda self: (checks.append(self.path), check(self))[1])
    monkeypatch.setattr("vtok.data.readers._decord_verdicts", {})
    files = [record["path"] for record in records]
    lengths = [VideoLength.from_record(record) for record in records]
    dataset = VideoClipDataset(files, ClipSpec(30), (32, 32), lengths=lengths, train=False)
    clips = [dataset.load_with_info(index)[0] for index in range(2)]
    assert checks == [], "a file prepare checked is not checked again"
    unprepared = VideoClipDataset(files, ClipSpec(30), (32, 32), train=False)
    assert [torch.equal(unprepared.load_with_info(index)[0], clip) for index, clip in enumerate(clips)] == [True, True]
    assert checks == files, "without the record, each file is checked once"
    monkeypatch.setattr("vtok.data.readers._decord_verdicts", {})
    older = VideoLength.from_record({key: value for key, value in records[0].items() if key != "decord_check"})
    VideoClipDataset(files[:1], ClipSpec(30), (32, 32), lengths=[older], train=False).load_with_info(0)
    assert checks == [*files, files[0]], "a verdict of an older check (it missed open GOPs) is checked again"
    forced = VideoClipDataset(files, ClipSpec(30), (32, 32), backend="decord", lengths=lengths, train=False)
    with pytest.raises(VideoDecodeError, match="decord reads it wrong"):
        forced.load_with_info(1)  # recorded as pyav: the explicit decord backend does not read it wrong
    monkeypatch.setattr("vtok.data.readers.decord_available", lambda: False)  # prepared where decord has no wheel
    assert probe_video(files[0]).reader is None, "PyAV alone says nothing of decord: no reader recorded"


def _frames_and_marks(path: Path) -> tuple[np.ndarray, list[bool]]:
    """Every frame, decoded as FFmpeg does by default (concealing damage), and which it marks corrupt."""
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    return np.stack([f.to_ndarray(format="rgb24", threads=1) for f in frames]), [f.is_corrupt for f in frames]


def _damage_quietly(source: Path, destination: Path) -> int:
    """Writes ``source`` with 40 random bytes over part of a P- or B-frame, where FFmpeg conceals them:
    every frame decodes without an error, and it marks the damaged ones corrupt (the decoder noticed).
    Returns the first damaged frame. Not all damage is noticed: the candidates are tried in turn."""
    clean, _ = _frames_and_marks(source)
    with av.open(str(source)) as container:
        packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size and not p.is_keyframe]
    destination.parent.mkdir(parents=True, exist_ok=True)
    for (position, size), seed in [(packet, seed) for packet in packets[8:14] for seed in range(3)]:
        data = bytearray(source.read_bytes())
        start = position + size // 4
        data[start : start + 40] = np.random.default_rng(seed).integers(0, 256, 40, dtype=np.uint8).tobytes()
        destination.write_bytes(bytes(data))
        try:
            concealed, corrupt = _frames_and_marks(destination)
        except av.error.FFmpegError:
            continue  # an error, not concealment
        wrong = np.abs(concealed.astype(np.int16) - clean).reshape(len(clean), -1).max(1) > 0
        if len(concealed) == len(clean) and any(corrupt) and corrupt.index(True) == np.argmax(wrong) > 0:
            return int(np.argmax(wrong))
    raise AssertionError("no candidate damage is concealed and noticed by this FFmpeg")


@pytest.mark.parametrize("flags", [[], ["--reencode"]], ids=["in-place", "reencoded"])
def test_every_frame_cuts_damage_the_decoder_would_conceal(tmp_path: Path, flags: list[str]) -> None:
    # By default FFmpeg returns every frame of this file without an error, some of them smeared
    source = _write(tmp_path / "source.mp4", frames=30, crf="10", g="10")
    first_bad = _damage_quietly(source, tmp_path / "videos" / "damaged.mp4")
    assert 0 < first_bad < 30
    out = tmp_path / "out"
    summary = prepare(["--data", str(tmp_path / "videos"), "--out", str(out), "--every-frame", *flags, *QUIET])
    assert (summary.accepted, summary.shortened) == (1, 1)
    (record,) = read_jsonl(out / "manifest.jsonl")
    assert record["reported_frames"] == 30 and record["frames"] == first_bad  # every clean frame, no damaged one


_FORKED_READ = """
import sys
import torch
from vtok.data.readers import PyAVReader

path = sys.argv[1]
PyAVReader(path).read([0, 1])  # the parent converts frames first, as a main process may


class Clips(torch.utils.data.Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, index):
        return PyAVReader(path).read([index, index + 2])


loader = torch.utils.data.DataLoader(Clips(), batch_size=2, num_workers=1, multiprocessing_context="fork")
print(tuple(next(iter(loader)).shape))
"""


def test_pyav_reads_in_a_loader_worker_forked_after_the_parent_read(tmp_path: Path) -> None:
    """PyAV 19's frame conversions start a pool of scaling threads by default, and a worker forked
    after one hung at its first conversion (seen with PyAV 19.0.2 on Python 3.12; PyAV 18, which this
    machine has, never hung): vtok converts on one thread. Run in a subprocess so a hang fails the
    test at its timeout instead of stopping the suite."""
    path = _write(tmp_path / "clip.mp4", frames=6)
    command = [sys.executable, "-c", _FORKED_READ, str(path)]
    # a session of its own, so a timeout kills the hung worker too (it ignores SIGTERM; killing
    # only the parent would leave it running)
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = child.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        pytest.fail("a loader worker hung reading with PyAV")
    assert child.returncode == 0, err[-2000:]
    assert out.strip().splitlines()[-1] == "(2, 2, 64, 64, 3)"


@pytest.mark.parametrize("codec, layout", [("png", "rgba"), ("qtrle", "argb")])
def test_a_videos_alpha_channel_is_laid_over_white_as_an_images_is(tmp_path: Path, codec: str, layout: str) -> None:
    """Both readers dropped the alpha channel, so the junk colour under transparent pixels was trained on."""
    path, frame = tmp_path / f"{codec}.mov", np.zeros((32, 32, 4), np.uint8)
    frame[..., 0], frame[:, 16:, 3], frame[:, 8:16, 3] = 255, 255, 128  # red: transparent, half, opaque
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=24)
        stream.width, stream.height, stream.pix_fmt = 32, 32, layout
        for _ in range(5):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgba")))
        container.mux(stream.encode())
    Image.fromarray(frame, "RGBA").save(tmp_path / "same.png")
    expected = torch.from_numpy(np.asarray(read_rgb_image(str(tmp_path / "same.png"))))
    for backend in ("auto", "pyav"):
        frames = open_video(path, backend).read([0, 4])
        assert (frames.int() - expected.int()).abs().max() <= 1, backend
        assert frames[0, 0, 0].tolist() == [255, 255, 255] and frames[0, 0, 20].tolist() == [255, 0, 0]
    with pytest.raises(VideoDecodeError, match="decord drops its alpha channel"):
        DecordReader(path)
    copy = reencode_video(str(path), tmp_path / "copy.mp4", frames=5, fps=24.0).path
    assert (PyAVReader(copy).read([0])[0, :, :8].float() - 255).abs().mean() < 3  # the copy is flattened too


def test_an_alpha_frame_is_laid_over_white_before_it_is_resized() -> None:
    """Resized first, the colour under transparent pixels bled into their opaque neighbours' edge."""
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., 0] = 255  # red under the transparent columns 0-16
    rgba[:, 17:] = (0, 0, 255, 255)  # opaque blue
    edge = displayed_array(av.VideoFrame.from_ndarray(rgba, format="rgba"), size=(16, 16))[0, 8].astype(int)
    assert abs(edge[0] - edge[1]) <= 2 and edge[2] == 255, edge  # white and blue: [128, 128, 255], no red
