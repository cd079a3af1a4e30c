"""LPIPS perceptual loss on frames (Zhang et al., 1801.03924), VGG16 backbone.

torchmetrics ships LPIPS's linear heads; the VGG16 backbone comes from the file torchvision would
download, ``vgg16-397923af.pth``, read from ``$TORCH_HOME/hub/checkpoints/`` (the standard cache)
or an explicit path. vtok never downloads it and never runs with random backbone features: when
the file is missing, construction fails with a message naming the file and where to put it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchmetrics.functional.image.lpips import _LPIPS

from vtok.error_text import first_line


VGG16_FILE = "vgg16-397923af.pth"
VGG16_URL = f"https://download.pytorch.org/models/{VGG16_FILE}"


def vgg16_weights_path(explicit: str | Path | None = None) -> Path:
    """The explicit path if given, else torchvision's cache location for the VGG16 weights."""
    return Path(explicit).expanduser() if explicit else Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILE


TRAINING_ALTERNATIVES = (
    "(or set model.loss.perceptual_backbone to the file's path), or train without the perceptual "
    "term: --model.loss.perceptual_weight 0"
)


def missing_weights_message(path: Path, alternatives: str = TRAINING_ALTERNATIVES) -> str:
    """What to fetch and where to put it when the VGG16 file is missing; ``alternatives`` ends the message."""
    return (
        f"LPIPS needs the VGG16 backbone weights at {path}, which does not exist. On a machine with "
        f"internet access run: mkdir -p {path.parent} && curl -L -o {path} {VGG16_URL} {alternatives}"
    )


def load_lpips_vgg(backbone_weights: str | Path | None = None, setting: str = "model.loss.perceptual_backbone") -> nn.Module:
    """torchmetrics' LPIPS network with its VGG16 backbone loaded from a local file, frozen, in eval mode.

    Args:
        backbone_weights: the file (``None``: torchvision's cache location).
        setting: the option that names the file, for the advice in errors (e.g. ``--lpips-weights``).

    Raises:
        FileNotFoundError: the backbone weights are not there (the message says how to get them).
        ValueError: the file there is not torchvision's VGG16 weights (damaged, or another model).
    """
    path = vgg16_weights_path(backbone_weights)
    if not path.is_file():
        raise FileNotFoundError(missing_weights_message(path))
    network = _LPIPS(pretrained=True, net="vgg", pnet_rand=True)  # random backbone, shipped linear heads
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        for slice_ in (network.net.slice1, network.net.slice2, network.net.slice3, network.net.slice4, network.net.slice5):
            for index, layer in slice_.named_children():  # named by their index in vgg16.features
                prefix = f"features.{index}."
                layer.load_state_dict({k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)})
    except Exception as error:  # torch.load's many types for damaged files; load_state_dict's RuntimeError
        cause = f"{type(error).__name__}: {first_line(error)}"
        cache = vgg16_weights_path()  # fetched there, never over a file the user named (it may be another model's)
        if path == cache:
            raise ValueError(f"{path} is not torchvision's VGG16 weights ({cause}); fetch it again: curl -L -o {path} {VGG16_URL}") from None
        raise ValueError(
            f"{setting} {path} is not torchvision's VGG16 weights ({cause}); fetch them to the standard cache: "
            f"mkdir -p {cache.parent} && curl -L -o {cache} {VGG16_URL}, then leave out {setting} (or point it at "
            "the fetched file)"
        ) from None
    network.eval().requires_grad_(False)
    return network


class PerceptualLoss(nn.Module):
    """Mean LPIPS distance between the frames of two videos ``[B, 3, T, H, W]`` in ``[-1, 1]``.

    The network is frozen and kept out of the state dict, the optimiser and DDP: it is not
    registered as a submodule, and ``_apply`` moves it along with this module.

    Args:
        backbone_weights: path to ``vgg16-397923af.pth`` (default: the torch hub cache).
        frames: LPIPS on this many randomly chosen frames per clip (``None``: every frame),
            to bound its cost on long clips; in eval mode (validation, test) on evenly spaced ones, so that a
            held-out score does not depend on the seed or the number of ranks.
    """

    def __init__(self, backbone_weights: str | None = None, frames: int | None = None) -> None:
        super().__init__()
        if frames is not None and frames < 1:
            raise ValueError(f"perceptual_frames must be at least 1 (or null for all frames), got {frames}")
        self.frames = frames
        self._network = (load_lpips_vgg(backbone_weights),)  # a tuple hides it from nn.Module registration

    def _apply(self, fn, recurse: bool = True):  # noqa: ANN001, ANN202 - nn.Module's signature
        super()._apply(fn, recurse)
        self._network[0]._apply(fn, recurse)
        return self

    def forward(self, reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        frames = target.shape[2]
        if self.frames is not None and self.frames < frames:
            if self.training:
                keep = torch.randperm(frames, device=target.device)[: self.frames]
            else:
                keep = torch.linspace(0, frames - 1, self.frames, device=target.device).round().long()
            reconstruction, target = reconstruction[:, :, keep], target[:, :, keep]
        to_images = lambda v: v.transpose(1, 2).flatten(0, 1)  # noqa: E731 - [B·T, 3, H, W]
        return self._network[0](to_images(reconstruction), to_images(target)).mean()
