"""``VideoAutoencoder.from_pretrained`` on a folder that lacks its config or its weights names what is missing
(diffusers named a ``.bin`` file the folder never had, after a line about "unsafe serialization")."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

import pytest
import torch

from vtok import VideoAutoencoder


def _tiny() -> VideoAutoencoder:
    return VideoAutoencoder(block_out_channels=[8, 16], latent_channels=4, layers_per_block=1)


def test_a_folder_without_weights_or_config_says_which_is_missing(tmp_path: Path) -> None:
    model = _tiny()
    model.save_pretrained(tmp_path / "no-weights")
    (tmp_path / "no-weights" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"no-weights has no weights file diffusion_pytorch_model.safetensors: re-export"):
        VideoAutoencoder.from_pretrained(tmp_path / "no-weights")
    model.save_pretrained(tmp_path / "half", variant="fp16")
    with pytest.raises(FileNotFoundError, match=r"it holds the weights of variant 'fp16': pass variant="):
        VideoAutoencoder.from_pretrained(tmp_path / "half")
    loaded = VideoAutoencoder.from_pretrained(tmp_path / "half", variant="fp16")
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())
    model.save_pretrained(tmp_path / "sharded", variant="fp16", max_shard_size="50KB")  # named 'fp16-00001-of-00010' ...
    with pytest.raises(FileNotFoundError, match=r"it holds the weights of variant 'fp16': pass variant="):
        VideoAutoencoder.from_pretrained(tmp_path / "sharded")
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "last.ckpt").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"it is a training run's folder: give one of its checkpoints \(.*last.ckpt\) "
                       r"to vtok.export.load_autoencoder"):
        VideoAutoencoder.from_pretrained(tmp_path / "run")


def test_pickled_weights_still_load(tmp_path: Path) -> None:
    model = _tiny()
    model.save_pretrained(tmp_path / "bin", safe_serialization=False)
    loaded = VideoAutoencoder.from_pretrained(tmp_path / "bin")
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())


def test_a_cast_of_a_model_gives_no_warning_about_an_empty_float32_list() -> None:
    """diffusers warned "should be kept in float32: []. Casting directly with `to()` can lead to inconsistent
    results" on every ``model.to(torch.bfloat16)``: its list of modules is never ``None``, empty or not."""
    model = _tiny()
    logger = logging.getLogger("diffusers.models.modeling_utils")  # diffusers' own handler writes to a stream
    seen = logging.handlers.BufferingHandler(capacity=100)  # bound before pytest's capture: watched here instead
    logger.addHandler(seen)
    try:
        model.to(torch.bfloat16)
    finally:
        logger.removeHandler(seen)
    assert not [r for r in seen.buffer if "kept in float32" in r.getMessage()] and next(model.parameters()).dtype == torch.bfloat16


def test_a_config_that_is_json_but_no_object_is_named_as_such(tmp_path: Path) -> None:
    _tiny().save_pretrained(tmp_path)
    for text in ("[]", "null", "7"):  # failed with "'list' object has no attribute 'get'"
        (tmp_path / "config.json").write_text(text)
        with pytest.raises(ValueError, match=r"config.json holds a JSON \w+, expected an object"):
            VideoAutoencoder.from_pretrained(tmp_path)
