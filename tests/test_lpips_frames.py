"""What LPIPS scoring hands the network: frames in [-1, 1], the range the LPIPS network's input scaling expects, each
frame of each video once, averaged per video."""

from __future__ import annotations

import torch
from torch import nn

from vtok.evaluation.metrics import lpips_per_video


class _RecordingDistance(nn.Module):
    """A stand-in network: keeps the frame pairs it is given and returns their mean absolute difference."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        self.seen.append((a, b))
        return (a - b).abs().mean(dim=(1, 2, 3), keepdim=True)  # [N, 1, 1, 1], as LPIPS gives


def test_lpips_takes_frames_in_minus_one_to_one_and_averages_them_per_video() -> None:
    """Found by a mutation review: frames handed over in [0, 1] passed, the real network's score being only checked
    to be positive."""
    torch.manual_seed(0)
    target = torch.rand(2, 3, 5, 8, 8) * 2 - 1
    reconstruction = (target + 0.1 * torch.randn_like(target)).clamp(-1, 1)
    reconstruction[1, :, 2] = 3.0  # out of range: scored as shown, clamped to 1
    network = _RecordingDistance()
    scores = lpips_per_video(network, reconstruction, target, frames_per_pass=4)
    frames = torch.cat([a for a, _ in network.seen]), torch.cat([b for _, b in network.seen])
    assert frames[0].shape == frames[1].shape == (10, 3, 8, 8)
    assert torch.equal(frames[1], target.transpose(1, 2).reshape(10, 3, 8, 8))
    assert torch.equal(frames[0], reconstruction.clamp(-1, 1).transpose(1, 2).reshape(10, 3, 8, 8))
    expected = (reconstruction.clamp(-1, 1) - target).abs().mean(dim=(1, 3, 4)).mean(1)  # per frame, then per video
    torch.testing.assert_close(scores, expected)
