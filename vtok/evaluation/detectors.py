"""The pretrained networks behind LPIPS and FVD, from local files only.

LPIPS uses VGG16 (``vgg16-397923af.pth``, see :mod:`vtok.losses.perceptual`). FVD uses the
Kinetics-400 I3D of the common FVD implementations: ``i3d_torchscript.pt``, the TorchScript port of
the tf.hub I3D behind the original TensorFlow FVD, which StyleGAN-V
(``src/metrics/frechet_video_distance.py``) and the PyTorch FVD code that follows it load with
``torch.jit.load``. Its call is ``detector(videos, rescale=False, resize=True, return_features=True)``:
float videos ``[B, 3, T, H, W]`` with values in ``[-1, 1]`` (``rescale=True`` would instead take
``[0, 255]`` and map it to ``[-1, 1]`` inside, as StyleGAN-V does with uint8 frames), frames resized
to 224x224 inside the network, and the 400 logits before the softmax returned as features. vtok's
videos already live in ``[-1, 1]``, so they go in unchanged (clipped).

Nothing is downloaded: a file missing from its standard place makes the metric ``null`` with a
reason that says what to fetch and where to put it; an explicit path that does not exist is an error.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from vtok.error_text import first_line
from vtok.losses.perceptual import load_lpips_vgg, missing_weights_message, vgg16_weights_path

I3D_FILE = "i3d_torchscript.pt"
I3D_URL = "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1"  # the file StyleGAN-V fetches
LPIPS_MIN_SIZE = 16  # VGG16's four poolings before its fifth feature map leave 1 pixel of 16


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def i3d_weights_path(explicit: str | Path | None = None) -> Path:
    """The explicit path if given, else ``$TORCH_HOME/hub/checkpoints/i3d_torchscript.pt`` (the torch hub cache)."""
    return Path(explicit).expanduser() if explicit else Path(torch.hub.get_dir()) / "checkpoints" / I3D_FILE


def missing_i3d_message(path: Path) -> str:
    return (
        f"FVD needs the Kinetics-400 I3D detector (TorchScript, the one StyleGAN-V uses) at {path}, which does "
        f"not exist. On a machine with internet access run: mkdir -p {path.parent} && curl -L -o {path} "
        f"'{I3D_URL}' (or pass --fvd-weights FILE)"
    )


def _require_explicit(path: Path, explicit: str | Path | None, what: str) -> None:
    if explicit and not path.is_file():
        raise FileNotFoundError(f"--{what} {path}: no such file")


class I3DFeatures:
    """The FVD detector loaded from ``path``: I3D features of video batches.

    Args:
        path: ``i3d_torchscript.pt``.
        device: where it runs.

    Raises:
        ValueError: the file is not a loadable TorchScript module.
    """

    def __init__(self, path: Path, device: torch.device) -> None:
        self.path = path
        self.sha256 = sha256_of(path)
        try:
            self.network = torch.jit.load(str(path), map_location=device).eval()
        except Exception as error:  # TorchScript raises RuntimeError and friends for foreign files
            raise ValueError(f"{path} is not a TorchScript I3D detector ({first_line(error)}); fetch it again from {I3D_URL}") from None

    @torch.no_grad()
    def __call__(self, videos: torch.Tensor) -> torch.Tensor:
        """float64 features ``[B, D]`` on the CPU of videos ``[B, 3, T, H, W]`` in ``[-1, 1]``."""
        features = self.network(videos.float().clamp(-1, 1), rescale=False, resize=True, return_features=True)
        return features.double().cpu()


def load_i3d(explicit: str | Path | None, device: torch.device) -> tuple[I3DFeatures | None, str | None]:
    """The FVD detector, or ``None`` and the reason it is not there.

    Args:
        explicit: ``--fvd-weights``; ``None`` looks in the torch hub cache.
        device: where it runs.

    Raises:
        FileNotFoundError: ``explicit`` names no file.
        ValueError: the file is not a TorchScript module.
    """
    path = i3d_weights_path(explicit)
    _require_explicit(path, explicit, "fvd-weights")
    if not path.is_file():
        return None, missing_i3d_message(path)
    return I3DFeatures(path, device), None


def lpips_weights_sha256(explicit: str | Path | None) -> str:
    """Hex sha256 of the VGG16 backbone file that :func:`load_lpips` reads for ``explicit``."""
    return sha256_of(vgg16_weights_path(explicit))


def lpips_size_reason(height: int, width: int) -> str | None:
    """Why LPIPS cannot measure ``height x width`` frames (``None`` when it can): VGG16 halves them in
    four poolings before its last features, which need at least one pixel per side."""
    if min(height, width) >= LPIPS_MIN_SIZE:
        return None
    return f"LPIPS (VGG16) needs frames of at least {LPIPS_MIN_SIZE}x{LPIPS_MIN_SIZE} pixels, got {height}x{width}"


def load_lpips(
    explicit: str | Path | None, device: torch.device, frame_size: tuple[int, int]
) -> tuple[nn.Module | None, str | None]:
    """The LPIPS network (VGG16 backbone from a local file), or ``None`` and the reason it is not there
    or cannot measure frames of ``frame_size``.

    Args:
        explicit: ``--lpips-weights``; ``None`` looks in the torch hub cache.
        device: where it runs.
        frame_size: height and width of the frames it would compare.

    Raises:
        FileNotFoundError: ``explicit`` names no file.
        ValueError: the file is not torchvision's VGG16 weights; for an ``explicit`` file the message
            says to fetch them to the standard cache path, never over the user's file.
    """
    path = vgg16_weights_path(explicit)
    _require_explicit(path, explicit, "lpips-weights")
    too_small = lpips_size_reason(*frame_size)
    if too_small:
        return None, too_small
    if not path.is_file():
        return None, missing_weights_message(path, "(or pass --lpips-weights FILE)")
    return load_lpips_vgg(path, setting="--lpips-weights").to(device), None
