"""A frame's latent never depends on later frames; a decoded frame never on later latents."""

from __future__ import annotations

import pytest
import torch

from vtok import VideoAutoencoder


@pytest.mark.parametrize("temporal", [2, 4, 8])
@pytest.mark.parametrize("frame_padding", ["replicate", "zeros"])
def test_encoder_latents_ignore_future_frames(temporal: int, frame_padding: str) -> None:
    torch.manual_seed(0)
    model = VideoAutoencoder(
        temporal_compression=temporal,
        spatial_compression=4,
        latent_channels=4,
        block_out_channels=[8, 16],
        layers_per_block=1,
        frame_padding=frame_padding,
    ).eval()
    video = torch.rand(1, 3, 1 + 3 * temporal, 8, 8) * 2 - 1
    with torch.no_grad():
        reference = model.encode(video)
        for latent_frame in range(3):
            last_seen = latent_frame * temporal  # latent j covers input frames up to j·t
            perturbed = video.clone()
            perturbed[:, :, last_seen + 1 :] = torch.rand_like(perturbed[:, :, last_seen + 1 :])
            latents = model.encode(perturbed)
            torch.testing.assert_close(latents[:, :, : latent_frame + 1], reference[:, :, : latent_frame + 1])
            assert not torch.allclose(latents[:, :, latent_frame + 1 :], reference[:, :, latent_frame + 1 :])


def test_decoder_frames_ignore_future_latents() -> None:
    torch.manual_seed(0)
    model = VideoAutoencoder(
        temporal_compression=4, spatial_compression=4, latent_channels=4, block_out_channels=[8, 16], layers_per_block=1
    ).eval()
    latents = torch.randn(1, 4, 3, 2, 2)
    with torch.no_grad():
        reference = model.decode(latents)
        perturbed = latents.clone()
        perturbed[:, :, 2] = torch.randn_like(perturbed[:, :, 2])
        video = model.decode(perturbed)
    # latent frames 0 and 1 decode to frames 0..4
    torch.testing.assert_close(video[:, :, :5], reference[:, :, :5])
    assert not torch.allclose(video[:, :, 5:], reference[:, :, 5:])
