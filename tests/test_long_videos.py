"""Long videos: chunked causal encode/decode equals one pass with memory set by the chunk; tiling."""

from __future__ import annotations

import warnings

import numpy
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from vtok import VideoAutoencoder
from vtok.vae.tiling import tile_starts, tiled_map


def tiny(**config) -> VideoAutoencoder:
    torch.manual_seed(0)
    return VideoAutoencoder(latent_channels=4, block_out_channels=[8, 16], layers_per_block=1, **config).eval()


@pytest.mark.parametrize("temporal", [1, 2, 4, 8])
@pytest.mark.parametrize("bottleneck", ["kl", "fsq"])
def test_chunked_encode_and_decode_equal_one_pass(temporal: int, bottleneck: str) -> None:
    config = {"bottleneck": bottleneck, "fsq_levels": [8, 5, 5, 5]} if bottleneck == "fsq" else {}
    model = tiny(temporal_compression=temporal, **config)
    video = torch.rand(1, 3, 1 + 7 * temporal, 16, 24) * 2 - 1
    with torch.no_grad():
        model.temporal_chunk = None
        latents, decoded = model.encode(video), None
        decoded = model.decode(latents)
        for chunk in (1, 2, 3):
            model.temporal_chunk = chunk
            torch.testing.assert_close(model.encode(video), latents, atol=1e-5, rtol=0)
            torch.testing.assert_close(model.decode(latents), decoded, atol=1e-5, rtol=0)
            if bottleneck == "fsq":
                model.temporal_chunk = None
                tokens = model.tokenize(video)
                model.temporal_chunk = chunk
                assert torch.equal(model.tokenize(video), tokens)


def test_chunk_and_overlap_settings_are_checked_when_set() -> None:
    """0, -1 or 2.5 latent frames per chunk, or a negative overlap, failed deep in the chunking with
    range()'s, einops' or a convolution's error."""
    model = tiny(decoder_causal=False)
    for chunk in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match=rf"temporal_chunk must be None or an integer >= 1 .*got {chunk!r}"):
            model.temporal_chunk = chunk
    with pytest.raises(ValueError, match=r"temporal_overlap must be None or an integer >= 0 .*got -1"):
        model.temporal_overlap = -1
    assert (model.temporal_chunk, model.temporal_overlap) == (4, None), "refused values leave the settings"
    model.temporal_chunk, model.temporal_overlap = None, 0
    assert (model.temporal_chunk, model.temporal_overlap) == (None, 0)
    model.temporal_chunk, model.temporal_overlap = numpy.int64(2), numpy.int64(3)  # numpy's integers, as enable_tiling takes
    assert (model.temporal_chunk, model.temporal_overlap) == (2, 3) and type(model.temporal_chunk) is int
    assert tiny().temporal_overlap is None, "one model's setting is its own"


def test_long_videos_without_gradients_keep_memory_to_the_chunk_and_with_them_say_so() -> None:
    """Autograd kept every chunk's activations: tokenize of 257 frames took +2.5 GB with gradients on, +0.16 GB
    without. tokenize now runs without them; encode/decode warn when gradients are on over several chunks."""
    model = tiny(bottleneck="fsq", fsq_levels=[8, 5, 5, 5])
    video = torch.rand(1, 3, 41, 16, 16) * 2 - 1  # 11 latent frames: three chunks of 4
    tokens = model.tokenize(video)
    assert not tokens.requires_grad and tokens.grad_fn is None
    with pytest.warns(UserWarning, match=r"temporal chunks with gradients on.*torch.inference_mode\(\)"):
        latents = model.encode(video)
    assert latents.requires_grad, "still differentiable when asked"
    with pytest.warns(UserWarning, match="temporal chunks with gradients on"):
        model.decode(latents.detach())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with torch.inference_mode():
            assert torch.equal(model.detokenize(tokens), model.decode(model.encode(video)))
        model.encode(video[:, :, :17])  # one chunk: nothing kept beyond a one-pass's graph
    with pytest.raises(ValueError, match="at least one clip"):  # encoded before, and its latents refused by decode
        model.encode(video[:0])


def test_tiles_must_be_whole_pixels() -> None:
    """32.0 passed the multiple-of check and failed at the first encode with Python's slicing error."""
    model = tiny()
    for tile, overlap in ((32.0, 8), (32, 8.0), ("32", 8)):
        with pytest.raises(ValueError, match="must be integers"):
            model.enable_tiling(tile, overlap)
    model.enable_tiling(numpy.int64(32), 8)
    assert model.tile == (32, 8)


@pytest.mark.parametrize("temporal", [1, 4])
def test_chunked_encode_and_decode_with_activation_checkpointing_give_the_one_pass_gradients(temporal: int) -> None:
    """Backward recomputed checkpointed chunks after the stream had moved on: a shape error at temporal
    factor 4, silently 20 % wrong decoder gradients at 1."""
    model = tiny(temporal_compression=temporal).train()
    video = torch.rand(1, 3, 1 + 8 * temporal, 16, 16) * 2 - 1

    def gradients(chunk: int | None, checkpointing: bool) -> torch.Tensor:
        model.zero_grad()
        model.temporal_chunk = chunk
        model.enable_gradient_checkpointing() if checkpointing else model.disable_gradient_checkpointing()
        model.decode(model.encode(video)).square().mean().backward()
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    one_pass = gradients(None, False)
    chunked = gradients(3, True)
    assert model.encoder.gradient_checkpointing and model.decoder.gradient_checkpointing, "switched back on after streaming"
    torch.testing.assert_close(chunked, one_pass, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("frames", [81, 161])
def test_a_non_causal_decoder_decodes_each_latent_frame_at_most_twice(frames: int) -> None:
    """Chunks of 4 latent frames, each with twice the reach (2 x 10) of context either side, decoded each
    frame about ten times over (7x one pass's time at the LTX preset); chunks are at least twice the
    overlap, and a clip within one chunk's window goes in one pass. The result is one pass's either way."""
    model = tiny(decoder_causal=False)
    latents = torch.randn(1, 4, frames, 1, 1)
    decoded_frames: list[int] = []
    model.decoder.register_forward_pre_hook(lambda _, args: decoded_frames.append(args[0].shape[2]))
    with torch.no_grad():
        model.temporal_chunk = None
        full = model.decode(latents)
        decoded_frames.clear()
        model.temporal_chunk = 4
        torch.testing.assert_close(model.decode(latents), full, atol=1e-5, rtol=0)
    assert sum(decoded_frames) <= 2 * frames, decoded_frames
    assert len(decoded_frames) == (1 if frames <= 1 + 40 + 2 * 20 else 4), decoded_frames  # chunks of 40 after the first


class LargestConvolution(TorchDispatchMode):
    """Records the largest convolution output: the activation memory a pass needs."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        out = func(*args, **(kwargs or {}))
        if func.overloadpacket is torch.ops.aten.convolution:
            self.largest = max(self.largest, out.numel())
        return out


def test_activation_memory_is_set_by_the_chunk_not_the_video_length() -> None:
    model = tiny()
    model.temporal_chunk = 2
    largest = {}
    for frames in (9, 33, 65):
        video = torch.rand(1, 3, frames, 16, 16) * 2 - 1
        with torch.no_grad(), LargestConvolution() as encode_probe:
            latents = model.encode(video)
        with torch.no_grad(), LargestConvolution() as decode_probe:
            model.decode(latents)
        largest[frames] = (encode_probe.largest, decode_probe.largest)
    assert largest[9] == largest[33] == largest[65]
    model.temporal_chunk = None
    with torch.no_grad(), LargestConvolution() as one_pass:
        model.encode(torch.rand(1, 3, 65, 16, 16))
    assert one_pass.largest > 5 * largest[65][0]


def test_tile_blending_is_exact_for_local_functions() -> None:
    assert tile_starts(48, 32, 16) == [0, 16] and tile_starts(50, 32, 16) == [0, 16, 18]
    assert tile_starts(56, 32, 16) == [0, 16, 24]
    # 48x64: the blend weights sum to 1 everywhere; 56 and 50: the last tile, flush with the edge,
    # overlaps two others, so the weights sum past 1 there and only dividing by them is exact
    for size in [(48, 64), (56, 56), (50, 64)]:
        x = torch.rand(1, 2, 3, *size)
        for fn, scale in [
            (lambda t: t * 2 + 1, 1.0),
            (lambda t: torch.nn.functional.avg_pool3d(t, (1, 8, 8)), 1 / 8),  # an "encoder"
            (lambda t: t.repeat_interleave(8, -1).repeat_interleave(8, -2), 8.0),  # a "decoder"
        ]:
            if size[0] % 8 and scale != 1.0:
                continue  # 18 is no multiple of 8: only a per-pixel function tiles there
            torch.testing.assert_close(tiled_map(fn, x, tile=32, overlap=16, scale=scale), fn(x))


def test_model_tiling_covers_large_frames() -> None:
    model = tiny()
    video = torch.rand(1, 3, 1, 64, 96) * 2 - 1  # tiles are spatial: one frame will do
    with torch.no_grad():
        latents = model.encode(video)
        decoded = model.decode(latents)
        model.enable_tiling(tile=96, overlap=16)  # one tile covers the frame: the same result
        torch.testing.assert_close(model.encode(video), latents)
        torch.testing.assert_close(model.decode(latents), decoded)
        errors = {}
        for overlap in (0, 16):  # two tiles across, starting 32 pixels (4 latent positions) apart
            model.enable_tiling(tile=64, overlap=overlap)
            tiled_latents = model.encode(video)
            tiled = model.decode(latents)  # the one-pass latents: the decoder's tiling alone
            assert tiled_latents.shape == latents.shape and tiled.shape == decoded.shape
            errors[overlap] = (
                ((tiled_latents - latents).abs().mean() / latents.abs().mean()).item(),
                ((tiled - decoded).abs().mean() / decoded.abs().mean()).item(),
            )
    # tiles see less context than one pass: close, not equal, and closer with a blended overlap
    assert max(errors[16]) < 0.15, errors
    assert errors[16][0] < errors[0][0] and errors[16][1] < errors[0][1], "blending, closer to one pass"
    with pytest.raises(ValueError, match="multiples of 8"):
        model.enable_tiling(tile=30, overlap=8)
