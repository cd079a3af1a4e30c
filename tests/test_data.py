"""Data: real mp4 files decoded with decord (and PyAV), clip sampling, broken files skipped and counted."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from PIL import Image

from vtok.data import (
    ClipSpec,
    EpochSampler,
    ImageDataset,
    VideoClipDataset,
    list_files,
    open_video,
    open_video_bytes,
    synthetic_clip,
    write_video,
)
from vtok.data.datamodule import VideoDataModule
from vtok.data.errors import DataSetupError, UnusableFileError, read_notes
from vtok.data.held_out_split import held_out_files
from vtok.data.images import read_rgb_image
from vtok.data.readers import DecordReader, PyAVReader
from vtok.data.sources import IMAGE_SUFFIXES


def test_decord_decodes_what_pyav_wrote(tmp_path: Path) -> None:
    frames = synthetic_clip(12, 48, 64, seed=3)
    path = write_video(tmp_path / "clip.mp4", frames, fps=25)
    reader = DecordReader(path)
    assert (reader.num_frames, reader.height, reader.width) == (12, 48, 64)
    assert reader.fps == pytest.approx(25)
    decoded = reader.read([0, 5, 11])
    assert decoded.shape == (3, 48, 64, 3) and decoded.dtype == torch.uint8
    # H.264 with 4:2:0 chroma is lossy on this colourful texture, but each decoded frame is closest
    # to the frame written at its index
    errors = (decoded[:, None].float() - frames[None].float()).abs().mean(dim=(2, 3, 4))
    assert errors.argmin(dim=1).tolist() == [0, 5, 11]
    assert errors.min(dim=1).values.max() < 12
    torch.testing.assert_close(PyAVReader(path).read([0, 5, 11]).float(), decoded.float(), atol=8, rtol=0)


def test_auto_reader_falls_back_to_pyav_where_decord_mis_decodes(tmp_path: Path) -> None:
    # decord 0.6 returns 4-channel frames for some narrow widths (48 among them); PyAV reads them.
    path = write_video(tmp_path / "narrow.mp4", synthetic_clip(5, 40, 48, seed=0))
    assert open_video(path).read([0, 4]).shape == (2, 40, 48, 3)


def test_auto_reader_sends_mpeg_transport_streams_to_pyav(tmp_path: Path) -> None:
    frames = synthetic_clip(60, 64, 96, seed=5)
    path = tmp_path / "clip.ts"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg2video", rate=25)
        stream.width, stream.height, stream.pix_fmt, stream.bit_rate = 96, 64, "yuv420p", 4_000_000
        for frame in frames.numpy():
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    wanted = list(range(40, 56))

    def error_per_frame(decoded: torch.Tensor) -> torch.Tensor:
        return (decoded.float() - frames[wanted].float()).abs().mean(dim=(1, 2, 3))

    # decord 0.6 opens it and returns other frames than those asked for, without an error
    assert error_per_frame(DecordReader(path).read(wanted)).max() > 30
    assert error_per_frame(open_video(path).read(wanted)).max() < 12


def test_carphone_sample_gives_clips(carphone: Path) -> None:
    reader = open_video(carphone)
    assert (reader.num_frames, reader.height, reader.width) == (120, 144, 176)
    dataset = VideoClipDataset([str(carphone)], ClipSpec(17, frame_stride=2), size=(64, 64))
    sample = dataset[(0, 0)]
    assert sample["video"].shape == (3, 17, 64, 64)
    assert -1 <= sample["video"].min() < sample["video"].max() <= 1


def test_clip_spec_strides_and_target_fps(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    assert ClipSpec(5, frame_stride=2).frame_indices(9, 30.0) == [0, 2, 4, 6, 8]
    assert ClipSpec(3, fps=10).frame_indices(30, 30.0) == [11, 14, 17]  # stride 3, span 7, centred
    assert ClipSpec(3, fps=10, start="first").frame_indices(30, 30.0) == [0, 3, 6]  # a whole video's start
    assert ClipSpec(1).longest(20, 24.0, multiple=4) == ClipSpec(17, 1, start="first")
    monkeypatch.setattr("vtok.data.clips._said", set())
    for _ in range(3):  # a target above the video's rate: every frame, at the video's rate, said once
        assert ClipSpec(3, fps=60).frame_indices(30, 24.0) == [13, 14, 15]
    assert [r.getMessage()[:40] for r in caplog.records] == ["data.fps / --fps 60 is above the frame r"]
    caplog.clear()
    for unknown in (0.0, float("nan")):  # no rate recorded: data.fps cannot apply; said once (NaN crashed)
        assert ClipSpec(3, fps=8, frame_stride=2).stride(unknown) == 2
    assert [r.getMessage()[:50] for r in caplog.records] == ["data.fps / --fps 8, but some videos record no fram"]
    caplog.clear()
    for rate, stride in ((25.0, 1), (48.0, 2), (30.0, 1), (60.0, 2), (29.97, 1)):  # 30 and 60 at 24: 30 fps clips
        assert ClipSpec(3, fps=24).stride(rate) == stride
    assert [r.getMessage() for r in caplog.records] == [
        "data.fps / --fps 24: some videos' frame rates are no whole multiple of it (e.g. 30 fps): their clips run at "
        "30 fps (frame stride 1: strides stay whole, so that frames stay evenly spaced)"
    ], "said once, and not for 25 fps (4 % off)"
    g = torch.Generator().manual_seed(0)
    # every start a clip fits at, the last too (found by a mutation review: a start range one short still passed)
    assert {ClipSpec(9).frame_indices(20, 24.0, g)[0] for _ in range(500)} == set(range(12))
    assert {ClipSpec(9, frame_stride=2).frame_indices(20, 24.0, g)[0] for _ in range(200)} == set(range(4))
    with pytest.raises(ValueError, match="too short"):
        ClipSpec(9).frame_indices(8, 24.0)


def test_sampler_gives_disjoint_rank_shares_that_change_per_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    shares = {}
    for rank in (0, 1):
        monkeypatch.setattr("vtok.data.sampler.rank_and_world", lambda rank=rank: (rank, 2))
        sampler = EpochSampler(10, shuffle=True, seed=3)
        shares[rank] = [index for _, index in sampler]  # pass 0 is epoch 0
        shares[rank, 1] = [index for epoch, index in sampler if epoch == 1]  # pass 1 is epoch 1
    assert sorted(shares[0] + shares[1]) == list(range(10))
    assert sorted(shares[0, 1] + shares[1, 1]) == list(range(10))
    assert shares[0] != shares[0, 1]
    monkeypatch.setattr("vtok.data.sampler.rank_and_world", lambda: (3, 4))  # 10 samples on 4 ranks: 2 repeats
    assert [repeated for _, _, repeated in EpochSampler(10, mark_repeats=True)] == [False, False, True]


def test_sampler_resumes_mid_epoch_and_at_an_epoch_end() -> None:
    straight = EpochSampler(6, seed=1)
    first, second = list(straight), list(straight)
    resumed = EpochSampler(6, seed=1)
    iterator = iter(resumed)
    head = [next(iterator) for _ in range(4)]
    saved = resumed.state_dict()
    again = EpochSampler(6, seed=1)
    again.load_state_dict(saved)
    iter(again)  # an iterator made and dropped while restoring changes nothing
    assert head + list(again) == first
    assert list(again) == second  # the next pass is the next epoch
    ended, into_the_next = EpochSampler(6, seed=1), EpochSampler(6, seed=1)
    ended.load_state_dict({"epoch": 0, "yielded": 6})
    into_the_next.load_state_dict({"epoch": 1, "yielded": 2})  # the epoch restored too (a mutation review's find)
    assert list(ended) == [] and list(ended) == second and list(into_the_next) == second[2:]


@pytest.mark.parametrize("saved_world, resumed_world", [(2, 3), (3, 1), (2, 4)])
def test_sampler_places_from_another_number_of_ranks_finish_the_epoch_with_every_sample_once(
    monkeypatch: pytest.MonkeyPatch, saved_world: int, resumed_world: int
) -> None:
    def ranks(world: int) -> list[EpochSampler]:
        samplers = []
        for rank in range(world):
            monkeypatch.setattr("vtok.data.sampler.rank_and_world", lambda rank=rank: (rank, world))
            samplers.append(EpochSampler(11, seed=5))
        return samplers

    trained, saved = [], []
    for rank, sampler in enumerate(ranks(saved_world)):
        monkeypatch.setattr("vtok.data.sampler.rank_and_world", lambda rank=rank: (rank, saved_world))
        iterator = iter(sampler)
        trained += [next(iterator)[1] for _ in range(2)]  # every rank trained 2 samples
        saved.append(sampler.state_dict())
    rest = []
    for rank, sampler in enumerate(ranks(resumed_world)):
        monkeypatch.setattr("vtok.data.sampler.rank_and_world", lambda rank=rank: (rank, resumed_world))
        sampler.load_state_dict(saved[0])  # every rank takes rank 0's place (all ranks' are equal)
        share = list(sampler)
        assert {epoch for epoch, _ in share} <= {0}
        rest.append([index for _, index in share])
    assert len({len(share) for share in rest}) == 1, "every rank runs the same number of steps"
    assert set(trained + sum(rest, [])) == set(range(11)) and len(set(trained)) == len(trained)
    assert not set(trained) & set(sum(rest, [])), "no sample trained before the stop comes again"
    assert len(sum(rest, [])) - len(set(sum(rest, []))) < resumed_world, "only the padding repeats"


def _videos(loader: DataLoader) -> list[dict]:
    return list(loader)


def test_broken_files_are_skipped_counted_and_replaced(mixed_folder: tuple[Path, dict[str, str]]) -> None:
    folder, broken = mixed_folder
    files = list_files(folder)
    assert len(files) == 9
    dataset = VideoClipDataset(files, ClipSpec(9), size=(32, 32), seed=5)
    loader = DataLoader(dataset, batch_size=3, sampler=EpochSampler(len(files), seed=5), num_workers=2)
    batches = _videos(loader)
    assert [b["video"].shape for b in batches] == [(3, 3, 9, 32, 32)] * 3  # batches keep their size
    skipped = {Path(path).name: reason for b in batches for notes in b["skipped"] for path, reason in read_notes(notes)}
    assert set(skipped) == set(broken)
    assert "empty" in skipped["empty.mp4"] and "too short" in skipped["short.mp4"]
    good = {i for i, f in enumerate(files) if Path(f).name not in broken}
    assert all(int(s) in good for b in batches for s in b["source_index"])
    # substitutes and clips are the same with another number of workers (no per-worker state matters)
    again = _videos(DataLoader(dataset, batch_size=3, sampler=EpochSampler(len(files), seed=5), num_workers=0))
    for first, second in zip(batches, again):
        assert torch.equal(first["source_index"], second["source_index"])
        assert torch.equal(first["video"], second["video"])


def test_random_choices_depend_on_seed_epoch_and_index(video_folder: Path) -> None:
    dataset = VideoClipDataset(list_files(video_folder), ClipSpec(5), size=(32, 32), seed=0, horizontal_flip=True)
    assert torch.equal(dataset[(0, 2)]["video"], dataset[(0, 2)]["video"])
    assert not torch.equal(dataset[(0, 2)]["video"], dataset[(1, 2)]["video"])
    validation = VideoClipDataset(list_files(video_folder), ClipSpec(5), size=(32, 32), train=False)
    assert torch.equal(validation[(0, 2)]["video"], validation[(7, 2)]["video"])  # centre clip, no randomness
    # the data module passes data.horizontal_flip to the held-out sets too: no flip there, whatever the global seed
    # (found by a mutation review: a flip drawn from the global generator passed)
    flipping = VideoClipDataset(list_files(video_folder), ClipSpec(5), size=(32, 32), train=False, horizontal_flip=True)
    for seed in range(6):
        torch.manual_seed(seed)
        assert torch.equal(flipping[(0, 2)]["video"], validation[(0, 2)]["video"]), f"global seed {seed}"


def test_a_dataset_without_a_usable_file_is_a_clear_error(tmp_path: Path, video_folder: Path) -> None:
    from tests.conftest import write_broken_files

    write_broken_files(tmp_path / "bad", sorted(video_folder.glob("*.mp4"))[0])
    dataset = VideoClipDataset(list_files(tmp_path / "bad"), ClipSpec(9), size=(32, 32))
    with pytest.raises(ValueError, match="none of the 5 files gives a usable sample"):
        dataset.first_usable()
    module = VideoDataModule(path=str(tmp_path / "bad"), num_frames=9, size=32, num_workers=0)
    with pytest.raises(ValueError, match="none of the"):
        module.setup("fit")
    with pytest.raises(DataSetupError, match="not a folder"):  # a ValueError: one line from the command line
        VideoDataModule(path=str(tmp_path / "missing"), num_frames=9, size=32).setup("fit")


def test_images_are_one_frame_clips_in_rgb_whatever_their_layout_and_undecodable_ones_are_skipped(tmp_path: Path) -> None:
    frames = synthetic_clip(1, 40, 40, seed=2)[0].numpy()
    Image.fromarray(frames).save(tmp_path / "rgb.png")
    Image.fromarray(frames[..., 0]).save(tmp_path / "gray.png")
    alpha = np.dstack([frames, np.where(np.arange(40) < 20, 255, 0).astype(np.uint8)[None].repeat(40, 0)])
    Image.fromarray(alpha, "RGBA").save(tmp_path / "alpha.png")  # the right half fully transparent
    Image.fromarray(frames[..., 1].astype(np.uint16) * 257).save(tmp_path / "gray16.png")  # 16-bit grey
    Image.fromarray(frames[..., 0].astype(np.float32)).save(tmp_path / "float.tiff")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    rgb = read_rgb_image(str(tmp_path / "rgb.png"))
    assert torch.equal(read_rgb_image(str(tmp_path / "gray.png")), rgb[..., :1].expand(-1, -1, 3))
    assert torch.equal(read_rgb_image(str(tmp_path / "gray16.png")), rgb[..., 1:2].expand(-1, -1, 3)), "scaled, not clipped"
    over_white = read_rgb_image(str(tmp_path / "alpha.png"))
    assert torch.equal(over_white[:, :20], rgb[:, :20]) and bool((over_white[:, 20:] == 255).all())
    files = list_files(tmp_path, frozenset({".png", ".tiff"}))
    assert [Path(f).name for f in files] == ["alpha.png", "broken.png", "float.tiff", "gray.png", "gray16.png", "rgb.png"]
    for index in (0, 3, 4, 5):
        sample = ImageDataset(files, size=(32, 32))[(0, index)]
        assert sample["video"].shape == (3, 1, 32, 32) and sample["source_index"] == index and not sample["skipped"]
    for index, reason in ((1, "cannot decode"), (2, "floating-point values")):
        sample = ImageDataset(files, size=(32, 32))[(0, index)]  # replaced by the next usable file
        assert sample["source_index"] != index and reason in sample["skipped"]
    (tmp_path / "single").mkdir()  # after the listing: files it must not see
    Image.fromarray(frames[..., 1].astype(np.uint16) * 257).save(tmp_path / "single" / "keyed16.png", transparency=int(frames[0, 0, 1]) * 257)
    keyed = read_rgb_image(str(tmp_path / "single" / "keyed16.png"))  # a 16-bit grey value marked transparent: white
    key = rgb[..., 1] == rgb[0, 0, 1]
    assert bool((keyed[key] == 255).all()) and torch.equal(keyed[~key], rgb[..., 1:2].expand(-1, -1, 3)[~key])
    Image.fromarray(frames[..., 0].astype(np.int32), "I").save(tmp_path / "single" / "int32.tif")  # no known range
    with pytest.raises(UnusableFileError, match="32-bit integer values"):
        read_rgb_image(str(tmp_path / "single" / "int32.tif"))
    Image.new("1", (13600, 13600)).save(tmp_path / "single" / "huge.png")  # 185 Mpixels in 23 kB: Pillow refuses it
    with pytest.raises(UnusableFileError, match="more than 178956970 pixels"):  # it was an uncaught error: the run stopped
        read_rgb_image(str(tmp_path / "single" / "huge.png"))
    assert {".tif", ".tiff"} <= IMAGE_SUFFIXES, "a folder of 16-bit TIFFs was 'no image files found'"
    video_as_image = tmp_path / "single" / "clip.png"
    write_video(video_as_image.with_suffix(".mp4"), synthetic_clip(3, 32, 32, seed=1), fps=8).rename(video_as_image)
    with pytest.raises(UnusableFileError, match=r"a video \(mp4\) named as an image"):  # was "cannot identify image file"
        read_rgb_image(str(video_as_image))


def test_data_settings_that_cannot_work_name_themselves_at_setup(
    tmp_path: Path, video_folder: Path, carphone: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def setup_error(**settings: Any) -> str:
        module = VideoDataModule(num_frames=5, size=32, batch_size=2, num_workers=0, **settings)
        with pytest.raises((ValueError, FileNotFoundError)) as error:
            module.setup("fit")
        return str(error.value)

    for index in range(2):
        Image.fromarray(synthetic_clip(1, 40, 40, seed=index)[0].numpy()).save(tmp_path / f"{index}.png")
    assert setup_error(path=str(video_folder), image_path=str(tmp_path), image_batch_size=3).startswith(
        "data.image_path has 2 images, fewer than one batch of data.image_batch_size=3"
    )
    gone = str(tmp_path / "gone")
    assert setup_error(path=str(video_folder), val_path=gone).startswith(f"data.val_path: data source {gone!r}")
    assert setup_error(path=str(video_folder), image_path=gone).startswith("data.image_path: data source")
    with pytest.raises(ValueError, match="images \\(data.image_path\\) train beside videos, not alone"):
        VideoDataModule(image_path=str(tmp_path), num_frames=5, size=32)  # no videos at all
    assert setup_error(path=gone).startswith("data.path: data source")
    VideoDataModule(path=str(carphone), num_frames=5, size=32, batch_size=1, num_workers=0).setup("fit")
    assert any("data.path lists one file: none is held out for validation" in r.message for r in caplog.records)


def test_manifests_list_files_relative_to_themselves(tmp_path: Path, video_folder: Path) -> None:
    names = [p.name for p in sorted(video_folder.glob("*.mp4"))[:2]]
    (tmp_path / "list.jsonl").write_text("".join(json.dumps({"path": str(video_folder / n)}) + "\n" for n in names))
    (video_folder / "list.csv").write_text("path,label\n" + "".join(f"{n},x\n" for n in names))
    assert [Path(p).name for p in list_files(tmp_path / "list.jsonl")] == names
    assert list_files(video_folder / "list.csv") == [str(video_folder / n) for n in names]
    assert len(list_files(str(video_folder / "sample_000*.mp4"))) == 8
    (tmp_path / "bad.csv").write_text("file\nx.mp4\n")
    with pytest.raises(ValueError, match="no 'path' column"):
        list_files(tmp_path / "bad.csv")


def test_datamodule_warns_once_per_unusable_file_and_counts_per_epoch(
    mixed_folder: tuple[Path, dict[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    folder, broken = mixed_folder
    module = VideoDataModule(path=str(folder), val_fraction=0, num_frames=9, size=32, batch_size=3, num_workers=0)
    module.setup("fit")
    loader = module.train_dataloader()
    substituted = []
    for _ in range(2):
        for batch in loader:
            batch = module.on_after_batch_transfer(batch, 0)
            assert "skipped" not in batch
        substituted.append(module.pop_epoch_skips())
    assert set(map(lambda p: Path(p).name, module.skipped_files)) == set(broken)
    warnings = [r for r in caplog.records if "skipping unusable file" in r.message]
    assert len(warnings) == len(broken), "one warning per file, not per epoch"
    # every epoch, each broken file's own slot is filled by another file (files known to be bad count too)
    assert all(count >= len(broken) for count in substituted), substituted
    assert module.pop_epoch_skips() == 0


def test_an_unusable_validation_file_is_stood_in_for_the_same_way_every_time_and_not_scored_twice(
    mixed_folder: tuple[Path, dict[str, str]], video_folder: Path
) -> None:
    """A held-out file that gives no clip took a stand-in drawn anew at each validation (another file's
    own clip, scored a second time), and its skips went into the training epoch's count."""
    folder, broken = mixed_folder
    module = VideoDataModule(path=str(video_folder), val_path=str(folder), num_frames=9, size=32, batch_size=1,
                             val_batch_size=9, num_workers=0)  # fmt: skip
    module.setup("fit")
    module.trainer = type("Validating", (), {"training": False, "global_rank": 0, "world_size": 1})()
    passes = []
    for _ in range(3):
        (batch,) = list(module.val_dataloader())
        batch = module.on_after_batch_transfer(batch, 0)
        stood_in = [i for i, (index, source) in enumerate(zip(batch["index"], batch["source_index"])) if index != source]
        assert len(stood_in) == len(broken) and all(batch["repeated"][i] for i in stood_in), "left out of the metrics"
        assert not any(batch["repeated"][i] for i in range(len(batch["index"])) if i not in stood_in)
        passes.append(batch["source_index"].tolist())
    assert passes[0] == passes[1] == passes[2], "the same clips at every validation"
    assert module.pop_epoch_skips() == 0, "validation's skips are not the training epoch's"
    assert len(module.skipped_files) == len(broken), "each still warned of, once"


def test_a_skipped_file_whose_name_holds_a_newline_or_tab_is_counted_under_its_name(tmp_path: Path, video_folder: Path) -> None:
    """Skip notes were ``path<TAB>reason`` lines: such a name crashed the main process or was misread."""
    for video in sorted(video_folder.glob("*.mp4"))[:3]:
        (tmp_path / video.name).symlink_to(video)
    odd = {str(tmp_path / "bad\nname.mp4"), str(tmp_path / "tab\tname.mp4")}
    for path in odd:
        Path(path).write_bytes(b"")
    module = VideoDataModule(path=str(tmp_path), val_fraction=0, num_frames=5, size=32, batch_size=1, num_workers=1)
    module.setup("fit")
    for batch in module.train_dataloader():
        module.on_after_batch_transfer(batch, 0)
    assert set(module.skipped_files) == odd and all("empty" in reason for reason in module.skipped_files.values())
    assert module.pop_epoch_skips() >= 2


def test_datamodule_writes_sample_clips_and_splits_them(tmp_path: Path) -> None:
    module = VideoDataModule(synthetic_videos=6, synthetic_dir=str(tmp_path), val_fraction=0.2, num_frames=5, size=[32, 48], num_workers=0)
    module.prepare_data()
    module.setup("fit")
    held_out = held_out_files([str(path) for path in tmp_path.rglob("*.mp4")], 0.2, module.seed, str(module._synthetic_folder()))
    assert len(module.datasets["val"]) == len(held_out) >= 1 and len(module.datasets["train"]) == 6 - len(held_out)
    batch = next(iter(module.val_dataloader()))
    assert batch["video"].shape == (1, 3, 5, 32, 48)
    with pytest.raises(ValueError, match="set data.path"):
        VideoDataModule()


def test_a_file_repeated_in_a_manifest_is_held_out_whole_or_not_at_all(tmp_path: Path, video_folder: Path) -> None:
    files = sorted(video_folder.glob("*.mp4"))[:6]
    lines = [{"path": str(files[0])}] * 5 + [{"path": str(path)} for path in files[1:]]  # the first file weighted 5x
    (tmp_path / "link.mp4").symlink_to(files[1])
    lines += [{"path": "link.mp4"}, {"path": str(tmp_path / ".." / tmp_path.name / "link.mp4")}]  # files[1], spelt twice more
    (tmp_path / "list.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    for seed in range(6):
        module = VideoDataModule(path=str(tmp_path / "list.jsonl"), val_fraction=0.3, seed=seed, num_frames=3, size=32, num_workers=0)
        train, val = module._split()
        real = {Path(r["path"]).resolve() for r in train}, {Path(r["path"]).resolve() for r in val}
        assert not real[0] & real[1], f"seed {seed}: a file in both splits"
        assert len({r["path"] for r in val}) == len(val) >= 1, "each held-out file validated once"
        assert Counter(r["path"] for r in train)[str(files[0])] in (0, 5), "training keeps the weighting"


def test_videos_a_manifest_records_as_smaller_than_the_training_size_are_counted(
    tmp_path: Path, video_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = sorted(video_folder.glob("*.mp4"))[:3]  # 64x40
    lines = [{"path": str(path), "width": 64, "height": 40} for path in files[:2]] + [{"path": str(files[2])}]
    (tmp_path / "list.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (tmp_path / "list.csv").write_text("path,width,height\n" + "".join(f"{path},64,40\n" for path in files[:2]) + f"{files[0]},64,40\n")
    for manifest, size, warned in (("list.jsonl", 32, False), ("list.jsonl", 48, True), ("list.csv", 48, True)):
        caplog.clear()
        with caplog.at_level("WARNING", logger="vtok.data.datamodule"):
            module = VideoDataModule(path=str(tmp_path / manifest), val_fraction=0, num_frames=3, size=size, num_workers=0)
            module.setup("fit")
        message = "2 of the 2 videos whose size the manifest records are smaller than data.size [48, 48]"  # a repeat once
        assert (message in caplog.text) == warned, (manifest, size, caplog.text)
        assert not warned or "40x64, height x width as data.size)" in caplog.text, caplog.text


def test_a_clip_that_fails_to_decode_does_not_change_what_later_samples_of_that_worker_hold(tmp_path: Path, video_folder: Path) -> None:
    """A file whose header promises 40 frames but whose tail is cut off: clips near its start decode,
    clips near its end do not. Which sample a key gives must not depend on what the worker read before."""
    source = tmp_path / "faststart.mp4"  # the index up front, so the cut-off file still opens
    with av.open(str(source), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for frame in synthetic_clip(40, 48, 64, seed=1).numpy():
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(source.read_bytes()[: source.stat().st_size * 6 // 10])
    files = [str(cut), str(sorted(video_folder.glob("*.mp4"))[0])]

    def fresh_worker() -> VideoClipDataset:
        return VideoClipDataset(files, ClipSpec(9), (32, 32), train=True, seed=0)

    served = {epoch: fresh_worker()[(epoch, 0)] for epoch in range(12)}
    # a failing clip's slot is filled by a retry (another file's clip, or another clip of the same file)
    failing = [epoch for epoch, sample in served.items() if sample["skipped"]]
    decoding = [epoch for epoch, sample in served.items() if not sample["skipped"] and sample["source_index"] == 0]
    assert failing and decoding, "the cut file must give some clips and fail on others"
    worker = fresh_worker()
    assert "cut.mp4" in worker[(failing[0], 0)]["skipped"], "the failing clip is skipped and counted"
    for epoch in decoding:  # after it, the worker still reads the file's other clips, as a fresh one does
        sample = worker[(epoch, 0)]
        assert sample["source_index"] == 0 and sample["skipped"] == "", f"epoch {epoch}: the file was written off"
        assert torch.equal(sample["video"], served[epoch]["video"])


def test_a_manifests_frame_counts_bound_the_clips_and_videos_open_from_memory(
    tmp_path: Path, video_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = sorted(video_folder.glob("*.mp4"))[0]  # 20 frames
    (tmp_path / "list.jsonl").write_text(json.dumps({"path": str(path), "frames": 8, "fps": 12.0}) + "\n")
    module = VideoDataModule(path=str(tmp_path / "list.jsonl"), val_fraction=0, num_frames=3, fps=6, size=32, num_workers=0)
    module.setup("fit")
    requested: list[int] = []
    read = DecordReader.read
    monkeypatch.setattr(DecordReader, "read", lambda self, indices: (requested.extend(indices), read(self, indices))[1])
    for epoch in range(8):
        module.datasets["train"][(epoch, 0)]
    # the recorded 12 fps (not the file's 24) sets the stride to 2; starts stay within the 8 recorded frames
    assert max(requested) <= 7 and {b - a for a, b in zip(requested[::3], requested[1::3])} == {2}
    from_memory = open_video_bytes(path.read_bytes(), "clip in memory")
    assert (from_memory.num_frames, from_memory.path) == (20, "clip in memory")
    assert torch.equal(from_memory.read([0, 19]), open_video(path).read([0, 19]))


def test_a_tiny_frame_far_from_the_output_aspect_ratio_still_gives_a_clip() -> None:
    from vtok.data.transforms import crop_box, frames_to_clip

    frames = synthetic_clip(2, 2, 2, seed=0)  # 2x2 pixels, to be cropped to 64x256 (1:4)
    assert crop_box(2, 2, 64, 256) == (0, 0, 1, 2)
    assert frames_to_clip(frames, (64, 256)).shape == (3, 2, 64, 256)
    assert frames_to_clip(frames, (256, 64), torch.Generator().manual_seed(0)).shape == (3, 2, 256, 64)


def test_a_file_damaged_past_its_first_clips_gives_a_clip_when_it_is_its_own_substitute(tmp_path: Path) -> None:
    """An mp4 cut at 60 % (its header still says 60 frames) as the only file: a clip drawn past the damage
    fails, and each retry drew the same clip again, so 16 of 30 epochs stopped with NoUsableDataError."""
    path = tmp_path / "full.mp4"
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:  # the index first: cut, it still counts 60
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt, stream.options = 32, 32, "yuv420p", {"g": "8"}
        for array in synthetic_clip(60, 32, 32, seed=1).numpy():
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode())
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(path.read_bytes()[: int(path.stat().st_size * 0.6)])
    dataset = VideoClipDataset([str(cut)], ClipSpec(9), (32, 32), train=True)
    samples = [dataset[(epoch, 0)] for epoch in range(30)]
    assert sum(bool(sample["skipped"]) for sample in samples) > 3, "clips past the damage were drawn and failed"


def test_held_out_files_that_are_also_training_files_are_said(
    video_folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """data.val_path (or vtok test's data.test_path) that lists training videos was accepted without a word: its
    scores were printed as held-out ones. Another spelling of the same files (a symlinked folder) is the same."""
    (tmp_path / "linked").symlink_to(video_folder)
    settings = {"path": str(video_folder), "num_frames": 9, "size": 32, "batch_size": 1, "num_workers": 0}
    VideoDataModule(**settings, val_path=str(tmp_path / "linked")).setup("fit")
    assert "8 of the 8 files of data.val_path are also training files" in caplog.text
    VideoDataModule(**settings, test_path=str(tmp_path / "linked"), val_fraction=0.25).setup("test")
    assert "6 of the 8 files of data.test_path are also training files" in caplog.text, "2 held out for validation"
    caplog.clear()
    (tmp_path / "copies").mkdir()
    for video in sorted(video_folder.glob("*.mp4"))[:2]:
        shutil.copy(video, tmp_path / "copies")  # the same pictures, other files: not detected, and not warned of
    VideoDataModule(**settings, val_path=str(tmp_path / "copies")).setup("fit")
    assert "also training files" not in caplog.text
