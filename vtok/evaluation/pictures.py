"""Pictures of an evaluation: original / reconstruction / amplified error, and side-by-side videos."""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.utils import make_grid, save_image

from vtok.data.writers import to_uint8_frames, write_video

ERROR_GAIN = 4.0  # the error row shows |reconstruction - original| (in [0, 1] pixel units) times this


def error_grid(video: torch.Tensor, reconstruction: torch.Tensor, max_frames: int = 4) -> torch.Tensor:
    """``[3, H', W']`` image in ``[0, 1]`` of one video ``[3, T, H, W]`` in ``[-1, 1]``: a row of
    original frames, a row of reconstructed frames, and a row of the absolute error (mean over
    RGB, grey, times :data:`ERROR_GAIN`, clipped), frames evenly spaced over the clip."""
    frames = video.shape[1]
    picks = torch.linspace(0, frames - 1, min(frames, max_frames)).round().long()
    original = video[:, picks].float().clamp(-1, 1).add(1).div(2)  # [3, F, H, W]
    decoded = reconstruction[:, picks].float().clamp(-1, 1).add(1).div(2)
    error = (decoded - original).abs().mean(0, keepdim=True).mul(ERROR_GAIN).clamp(0, 1).expand_as(original)
    tiles = torch.cat([original, decoded, error], dim=1).transpose(0, 1)  # [3·F, 3, H, W]
    return make_grid(tiles.cpu(), nrow=len(picks), padding=2, pad_value=1.0)


def write_pictures(
    folder: Path, name: str, video: torch.Tensor, reconstruction: torch.Tensor, fps: float
) -> dict[str, str]:
    """Writes ``folder/<name>.png`` (:func:`error_grid`) and ``folder/<name>.mp4`` (original left,
    reconstruction right); returns their paths relative to ``folder``'s parent.

    Args:
        folder: where the files go (created).
        name: file stem.
        video: the original ``[3, T, H, W]`` in ``[-1, 1]``.
        reconstruction: the decoded video, same shape.
        fps: frame rate of the mp4 (8 when unknown).
    """
    folder.mkdir(parents=True, exist_ok=True)
    save_image(error_grid(video, reconstruction), folder / f"{name}.png")
    written = {"grid": f"{folder.name}/{name}.png"}
    frames = to_uint8_frames(torch.cat([video, reconstruction], dim=-1))
    if frames.shape[1] % 2 == 0 and frames.shape[2] % 2 == 0:  # H.264 needs even sizes
        write_video(folder / f"{name}.mp4", frames, fps=fps if fps > 0 else 8.0)
        written["video"] = f"{folder.name}/{name}.mp4"
    return written
