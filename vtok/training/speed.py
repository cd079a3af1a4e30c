"""Speed options of the training module: the channels-last-3d memory format and ``torch.compile``
of the encoder and decoder.

Both are off by default and change no result beyond float rounding; ``compile_networks: auto``
(the presets' setting) compiles when training runs on a GPU and skips it on a CPU, where a smoke
run would spend minutes compiling. On CUDA the activations run channels-last-3d whatever this
option says (``vtok/vae/layout.py``: the layout cuDNN's fast 3D kernels and the fused ``rms_norm``
read directly); ``channels_last`` also stores the convolution weights in it, which saves converting
each weight and its gradient at every step (about 2 GB of copies per step of the 4x8x8 presets at
17x256x256, batch 2, by ``benchmarks/layout_copies.py``); a diffusers prior's networks also get
their inputs channels-last. Compilation covers the encoder and the
decoder separately (never the LightningModule, whose step holds Python control flow, logging and
the optimisers) and keeps their parameter names, so checkpoints and exports are unchanged. Both
apply to the live network only: the EMA copy and exported models stay plain.
``benchmarks/train_step.py`` measures them (``--channels-last``, ``--compile``).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch._functorch.config  # not imported by `import torch` alone
from torch import nn

from vtok.vae import VideoAutoencoder
from vtok.vae.diffusers_backbone import PriorDecoder, PriorEncoder


CompileChoice = bool | Literal["auto"]


def should_compile(choice: CompileChoice, device: torch.device) -> bool:
    """Whether ``compile_networks`` means compiling on ``device``: ``True``, or ``"auto"`` on CUDA."""
    if not (isinstance(choice, bool) or choice == "auto"):
        raise ValueError(f"compile_networks must be true, false or auto, got {choice!r}")
    return choice is True or (choice == "auto" and device.type == "cuda")


def channels_last_input(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Forward pre-hook: the first argument (a 5D tensor) in channels-last-3d memory format."""
    first, *rest = args
    return (first.contiguous(memory_format=torch.channels_last_3d), *rest)


def apply_speed_options(
    autoencoder: VideoAutoencoder,
    compile_networks: bool = False,
    channels_last: bool = False,
    compile_mode: str | None = None,
    repeated_backward: bool = False,
) -> None:
    """Applies the options in place; call it after the EMA copy is made, so the copy stays plain.

    Args:
        autoencoder: the live network.
        compile_networks: ``torch.compile`` the encoder and the decoder (in place, names kept).
        channels_last: 3D weights in channels-last-3d memory format; a diffusers prior's inputs too.
        compile_mode: ``torch.compile``'s mode (``None``: the default; e.g. ``"max-autotune"``).
        repeated_backward: the step differentiates through the decoder more than once (the
            adversarial objective's adaptive weight takes gradients with ``retain_graph``).
            Compiled backward passes then must not donate their saved buffers, which torch
            refuses to run twice; this turns donation off for the process.
    """
    if channels_last:
        for parameter in autoencoder.parameters():  # 3D convolutions only (a diffusers backbone also has 2D ones)
            if parameter.dim() == 5:
                parameter.data = parameter.data.contiguous(memory_format=torch.channels_last_3d)
        for network in (autoencoder.encoder, autoencoder.decoder):
            if isinstance(network, (PriorEncoder, PriorDecoder)):  # vtok's own networks: vtok/vae/layout.py
                network.register_forward_pre_hook(channels_last_input)
    if compile_networks:
        if repeated_backward and hasattr(torch._functorch.config, "donated_buffer"):
            torch._functorch.config.donated_buffer = False
        for network in (autoencoder.encoder, autoencoder.decoder):
            network.compile(mode=compile_mode)
