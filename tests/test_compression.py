"""Shapes and the compression table for every supported factor pair; bad shapes are clear errors."""

from __future__ import annotations

import re

import pytest
import torch

from vtok import Compression, VideoAutoencoder
from vtok.vae.compression import SPATIAL_FACTORS, TEMPORAL_FACTORS, resampling_plan


def tiny(**config) -> VideoAutoencoder:
    return VideoAutoencoder(latent_channels=4, block_out_channels=[8, 16], layers_per_block=1, **config)


@pytest.mark.parametrize("temporal", TEMPORAL_FACTORS)
@pytest.mark.parametrize("spatial", SPATIAL_FACTORS)
def test_every_factor_pair_gives_the_documented_shapes(temporal: int, spatial: int) -> None:
    model = tiny(temporal_compression=temporal, spatial_compression=spatial).eval()
    frames, height, width = 1 + 2 * temporal, 2 * spatial, 3 * spatial
    video = torch.rand(1, 3, frames, height, width) * 2 - 1
    with torch.no_grad():
        latents = model.encode(video)
        out = model(video)
    assert str(model.compression) == f"{temporal}x{spatial}x{spatial}"
    assert latents.shape == (1, 4, 3, 2, 3)
    assert out.reconstruction.shape == video.shape
    assert model.compression.latent_shape(frames, height, width) == (3, 2, 3)
    assert model.latent_values_per_pixel() == pytest.approx(4 / (3 * temporal * spatial * spatial))
    # an image is a one-frame clip
    assert model.encode(video[:, :, :1]).shape == (1, 4, 1, 2, 3)


@pytest.mark.parametrize("patch_size", [1, 2, 4])
def test_patchify_takes_part_of_the_spatial_factor(patch_size: int) -> None:
    model = tiny(spatial_compression=16, patch_size=patch_size).eval()
    space_stages = sum(space for space, _ in resampling_plan(model.compression, patch_size))
    assert 2**space_stages * patch_size == 16
    assert model.encoder.conv_in.in_channels == 3 * patch_size**2
    video = torch.rand(1, 3, 5, 32, 32) * 2 - 1
    with torch.no_grad():
        assert model(video).reconstruction.shape == video.shape


def test_plan_puts_time_in_the_last_stages() -> None:
    assert resampling_plan(Compression(4, 8)) == [(True, False), (True, True), (True, True)]
    assert resampling_plan(Compression(8, 4)) == [(True, True), (True, True), (False, True)]
    assert resampling_plan(Compression(1, 16), patch_size=4) == [(True, False), (True, False)]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"spatial_compression": 12}, "choose one of (4, 8, 16, 32)"),
        ({"temporal_compression": 3}, "choose one of (1, 2, 4, 8)"),
        ({"patch_size": 3}, "power of 2 dividing"),
        ({"block_out_channels": [8, 16, 16, 16, 16]}, "give at most 4"),
        ({"block_out_channels": [12, 20]}, "set resample_shortcut=false"),
        # each was accepted and ignored or misread: "zero" replicated, K stayed gq_groups, 5.5 became 5
        ({"frame_padding": "zero"}, "frame_padding='zero' is not supported; choose one of ('replicate', 'zeros')"),
        ({"bottleneck": "gq", "gq_bits": 8, "gq_groups": 2, "tokens_per_position": 4}, "leave tokens_per_position at 1 (or 2)"),
        ({"tokens_per_position": 2}, "bottleneck kl has no tokens; leave it at 1"),
        ({"bottleneck": "fsq", "fsq_levels": [5.5, 3]}, "FSQ levels must be integers (8.0 is 8; range [3, inf)), got [5.5, 3]"),
    ],
)
def test_invalid_configs_name_the_fix(config: dict, message: str) -> None:
    base = {"latent_channels": 4, "block_out_channels": [8, 16], "layers_per_block": 1}
    with pytest.raises(ValueError, match=re.escape(message)):
        VideoAutoencoder(**{**base, **config})


@pytest.mark.parametrize(
    "config",
    [
        {"bottleneck": "fsq", "fsq_levels": [8.0, 5, 5]},  # a float level that is an integer, as earlier configs may hold
        {"bottleneck": "gq", "gq_bits": 8, "gq_groups": 2, "tokens_per_position": 2},  # GQ's own K
        {"bottleneck": "gq", "gq_bits": 8, "gq_groups": 2, "gq_single_token": True, "tokens_per_position": 1},
        {"frame_padding": "zeros"},
    ],
)
def test_configs_that_were_always_valid_still_build(config: dict) -> None:
    model = VideoAutoencoder(latent_channels=4, block_out_channels=[8, 16], layers_per_block=1, **config)
    assert model.config.frame_padding in ("replicate", "zeros")


def test_invalid_clip_shapes_name_the_nearby_valid_sizes() -> None:
    model = tiny()
    with pytest.raises(ValueError, match=r"frames=8 is not 1 \+ k\*4; use 5 or 9.*height=30 .* use 24 or 32"):
        model.encode(torch.zeros(1, 3, 8, 30, 32))
    with pytest.raises(ValueError, match="width=4 .* use 8"):
        model.encode(torch.zeros(1, 3, 5, 8, 4))
    with pytest.raises(ValueError, match=r"expected a video batch \[B, 3, T, H, W\]"):
        model.encode(torch.zeros(3, 5, 8, 8))
    with pytest.raises(ValueError, match=r"expected float pixels in \[-1, 1\], got torch.uint8"):
        model.encode(torch.zeros(1, 3, 5, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="expected latents"):
        model.decode(torch.zeros(1, 5, 2, 1, 1))


def test_compression_parses_time_first() -> None:
    assert Compression.parse("8x32x32") == Compression(temporal=8, spatial=32)
    assert Compression(4, 8).pixels_per_latent_position() == 256
    with pytest.raises(ValueError, match="TxSxS"):
        Compression.parse("32x32x8")
