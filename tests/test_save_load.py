"""save_pretrained / from_pretrained round-trips VideoAutoencoder exactly, as flat JSON + safetensors."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from vtok import VideoAutoencoder


def test_round_trip_gives_identical_outputs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = VideoAutoencoder(
        temporal_compression=2, spatial_compression=8, latent_channels=6, block_out_channels=(8, 16), layers_per_block=1
    ).eval()
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["block_out_channels"] == [8, 16] and config["bottleneck"] == "kl"
    assert all(not isinstance(v, dict) for v in config.values()), "the config must stay flat"
    assert list(tmp_path.glob("*.safetensors")), "weights must be safetensors, not pickles"

    loaded = VideoAutoencoder.from_pretrained(tmp_path).eval()
    video = torch.rand(2, 3, 5, 16, 16) * 2 - 1
    with torch.no_grad():
        assert torch.equal(model.encode(video), loaded.encode(video))
        latents = model.encode(video)
        assert torch.equal(model.decode(latents), loaded.decode(latents))
        assert torch.equal(model(video).reconstruction, loaded(video).reconstruction)
    assert str(loaded.compression) == "2x8x8"
