"""The building blocks: causal padding, RMS norm, resampling shortcuts, patchify."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensorMode

from benchmarks.footprint import norms_in_float32
from vtok.vae.causal_conv import CausalConv3d, pad_time
from vtok.vae.norm import ChannelRMSNorm
from vtok.vae.patchify import patchify, unpatchify
from vtok.vae.resample import Downsample3d, Upsample3d


def test_causal_conv_sees_copies_of_the_first_frame_before_the_clip() -> None:
    conv = CausalConv3d(2, 3, 3)
    x = torch.randn(1, 2, 4, 5, 5)
    padded = torch.cat([x[:, :, :1], x[:, :, :1], x], dim=2)
    expected = F.conv3d(padded, conv.weight, conv.bias, padding=(0, 1, 1))
    torch.testing.assert_close(conv(x), expected)
    zeros = CausalConv3d(2, 3, 3, frame_padding="zeros")
    expected = F.conv3d(F.pad(x, (0, 0, 0, 0, 2, 0)), zeros.weight, zeros.bias, padding=(0, 1, 1))
    torch.testing.assert_close(zeros(x), expected)


def test_rms_norm_normalises_each_position_over_channels() -> None:
    norm = ChannelRMSNorm(6)
    with torch.no_grad():
        norm.weight.copy_(torch.arange(1.0, 7.0))
    x = torch.randn(2, 6, 3, 4, 5)
    expected = x / x.square().mean(1, keepdim=True).add(norm.eps).sqrt() * norm.weight.view(1, 6, 1, 1, 1)
    torch.testing.assert_close(norm(x), expected)
    torch.testing.assert_close(norm(x.contiguous(memory_format=torch.channels_last_3d)), expected)


def test_resampling_shapes_and_parameter_free_shortcuts() -> None:
    x = torch.randn(1, 4, 5, 8, 8)
    down = Downsample3d(4, 8, space=True, time=True)
    assert down(x).shape == (1, 8, 3, 4, 4)
    up = Upsample3d(8, 4, space=True, time=True)
    assert up(down(x)).shape == x.shape
    # with the convolutions zeroed, the shortcuts alone are average-pooling and nearest upsampling
    for conv in (down.conv, up.conv):
        torch.nn.init.zeros_(conv.weight)
        torch.nn.init.zeros_(conv.bias)
    # down in time too: frame 0 copied before the clip pairs the frames (0, 0), (1, 2), (3, 4), and
    # output channel 2c + p is the 2x2 average of input channel c over the p-th frames of the pairs
    pooled = F.avg_pool3d(torch.cat([x[:, :, :1], x], dim=2), (1, 2, 2))
    torch.testing.assert_close(down(x), torch.stack([pooled[:, :, 0::2], pooled[:, :, 1::2]], dim=2).flatten(1, 2))
    # and up: output channel c at frame 2t + p is input channel 2c + p at frame t, each pixel 2x2,
    # less the first frame (latent frame 0 becomes one frame)
    y = torch.randn(1, 8, 3, 4, 4)
    frames = torch.stack([y[:, 0::2], y[:, 1::2]], dim=3).flatten(2, 3)  # [1, 4, 6, 4, 4]
    torch.testing.assert_close(up(y), frames.repeat_interleave(2, -1).repeat_interleave(2, -2)[:, :, 1:])
    same = Downsample3d(4, 4, space=True, time=False)
    torch.nn.init.zeros_(same.conv.weight)
    torch.nn.init.zeros_(same.conv.bias)
    torch.testing.assert_close(same(x), F.avg_pool3d(x, (1, 2, 2)))
    up_same = Upsample3d(4, 4, space=True, time=True)
    torch.nn.init.zeros_(up_same.conv.weight)
    torch.nn.init.zeros_(up_same.conv.bias)
    z = torch.randn(1, 4, 3, 2, 2)
    nearest = F.interpolate(z, scale_factor=(2, 2, 2), mode="nearest")[:, :, 1:]
    torch.testing.assert_close(up_same(z), nearest)


def test_patchify_is_the_exact_inverse_of_unpatchify() -> None:
    x = torch.randn(2, 3, 5, 16, 24)
    for p in (1, 2, 4, 8):
        assert patchify(x, p).shape == (2, 3 * p * p, 5, 16 // p, 24 // p)
        assert torch.equal(unpatchify(patchify(x, p), p), x)


def test_rms_norm_under_autocast_keeps_the_input_dtype() -> None:
    """Under bf16 autocast with CUDA's rule for norms (float32 inputs; emulated on the CPU by
    ``norms_in_float32``), the norm still runs in bf16 (float32 accumulation inside the kernel): the
    activation after it is bf16, not a float32 copy, and equals the float32 result rounded once."""
    torch.manual_seed(0)
    norm = ChannelRMSNorm(16)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    x = (torch.randn(2, 16, 3, 4, 4) * 3 + 1).bfloat16().requires_grad_()
    with norms_in_float32(), torch.autocast("cpu", dtype=torch.bfloat16):
        y = norm(x)
        upcast = F.rms_norm(x.movedim(1, -1), (16,))  # what autocast does to a norm that lets it
    assert upcast.dtype == torch.float32 and y.dtype == torch.bfloat16
    reference = norm(x.float()).detach()
    torch.testing.assert_close(y.float(), reference.bfloat16().float(), atol=0.04, rtol=0.01)
    y.float().sum().backward()
    assert x.grad is not None and x.grad.dtype == torch.bfloat16 and norm.weight.grad.dtype == torch.float32


def test_on_cuda_padding_resampling_and_patchify_keep_activations_channels_last() -> None:
    """On CUDA the network runs channels-last-3d, the layout cuDNN's fast bf16 3D kernels read
    without transposing (on an H200 the conversions and cuDNN's own transposes took 31 % of the
    eager step before; benchmarks/README.md): patchify turns the loader's channels-first video
    channels-last, and the causal padding and both resamplings hand every convolution a
    channels-last input. Checked on fake CUDA tensors (shapes and strides, no GPU); on a CPU the
    network stays channels-first, which its convolutions answer in anyway."""
    channels_last = torch.channels_last_3d
    inputs: list[tuple[int, ...]] = []
    with FakeTensorMode(), torch.device("cuda"):
        x = torch.randn(1, 8, 5, 8, 8).contiguous(memory_format=channels_last)
        assert pad_time(x, 2, 0, "replicate").is_contiguous(memory_format=channels_last)
        assert pad_time(x, 1, 1, "replicate").is_contiguous(memory_format=channels_last)
        assert patchify(torch.randn(1, 3, 5, 8, 8), 2).is_contiguous(memory_format=channels_last)
        assert unpatchify(x, 2).is_contiguous(memory_format=channels_last)
        for layer in (Upsample3d(8, 8, space=True, time=True), Downsample3d(8, 8, space=True, time=True)):
            layer.conv.register_forward_pre_hook(lambda _, args: inputs.append(args[0].stride()))
            assert layer(x).is_contiguous(memory_format=channels_last)
    assert all(stride[1] == 1 for stride in inputs) and len(inputs) == 2  # channels innermost
    assert patchify(torch.randn(1, 3, 5, 8, 8), 2).is_contiguous()  # on the CPU
