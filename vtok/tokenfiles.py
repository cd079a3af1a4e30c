"""Token files: one video's token indices in a safetensors file, with what made them.

A token file holds ``indices`` ``[K, t', h', w']`` (int16 when the codebook has at most 2^15
codes, int32 up to 2^31, else int64), for a model with first-frame strengthening also
``first_frame_extra`` ``[K_extra, 1, h', w']`` (see :class:`~vtok.vae.FirstFrameTokens`), and
string metadata: the format and its version,
the source video, the frames used (first frame, count, stride), the clip's frame rate and size, the
clip protocol asked for (``settings``: frames, stride or fps, size) and the model (path, a sha256 of
its weights and one of the weights that decide the tokens, compression, codebook size, tokens per
position). Files are written to a temporary name and renamed into place, so a file under its final
name is always complete; they get the permissions the umask gives any new file (``-rw-r--r--`` under 022).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from vtok.data import ClipInfo
from vtok.data.manifest import file_version
from vtok.data.sources import printable_path
from vtok.error_text import first_line
from vtok.tokenizers.indices import is_integer_dtype
from vtok.vae import FirstFrameTokens, VideoAutoencoder, regular_indices
from vtok.vae.readable_weights import give_umask_permissions

log = logging.getLogger(__name__)

TOKEN_FORMAT = "vtok-tokens"
TOKEN_FORMAT_VERSION = 1
TENSOR = "indices"
EXTRA_TENSOR = "first_frame_extra"
PROTOCOL_KEYS = ("frames", "stride", "fps", "height", "width")  # the clip settings a token file records
NUMBER_KEYS = {"format_version": int, "frames": int, "height": int, "width": int, "fps": float}  # read by vtok


def index_dtype(codebook_size: int) -> torch.dtype:
    """The smallest signed integer type that holds every index of ``codebook_size`` codes."""
    if codebook_size <= 2**15:
        return torch.int16
    return torch.int32 if codebook_size <= 2**31 else torch.int64


def model_identity(model: VideoAutoencoder) -> dict[str, str]:
    """What a token file records of the model that wrote it, and checks against the one decoding it."""
    return {
        "compression": str(model.compression),
        "codebook_size": str(model.codebook_size),
        "tokens_per_position": str(model.tokens_per_position),
        "first_frame_tokens": str(model.config.first_frame_tokens),
    }


def _sha256(tensors: Iterable[tuple[str, torch.Tensor]]) -> str:
    digest = hashlib.sha256()
    for name, tensor in tensors:
        digest.update(f"{name} {tensor.dtype} {tuple(tensor.shape)}\n".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def weights_sha256(model: VideoAutoencoder) -> str:
    """Hex sha256 of ``model``'s weights (names, dtypes, shapes and values): the same for an export and
    the checkpoint it came from, different for any other weights, wherever the files lie."""
    return _sha256(model.state_dict().items())


def tokenizer_sha256(model: VideoAutoencoder) -> str:
    """Hex sha256 of the weights that decide ``model``'s tokens, as :func:`weights_sha256`: all but the
    decoder and the quantizer's projections from codes back to the decoder, so the same for a model
    whose decoder alone was trained further on the frozen tokens (a stage-2 decoder)."""
    decoder_side = {id(p) for p in model.decoder_parameters()}
    decoder_side |= {id(p) for name, p in model.quantizer.named_parameters() if name.startswith("project_out")}
    return _sha256((name, t) for name, t in model.state_dict(keep_vars=True).items() if id(t) not in decoder_side)


def tokenize_settings(protocol: dict[str, Any], model_sha256: str, tokenizer_sha256: str) -> dict[str, str]:
    """What must be the same for two token files to belong in one output folder: the clip protocol
    asked for (frames, stride, fps, height and width of a protocol dict), the model's weights and its
    tokenizer's (see :func:`tokenizer_sha256`), which ``vtok detokenize`` checks."""
    clip = {key: protocol[key] for key in PROTOCOL_KEYS}
    return {
        "settings": json.dumps(clip, sort_keys=True),
        "model_sha256": model_sha256,
        "tokenizer_sha256": tokenizer_sha256,
    }


def settings_mismatch(metadata: dict[str, str], settings: dict[str, str]) -> list[str]:
    """How a token file's ``metadata`` differs from a run's ``settings`` (see :func:`tokenize_settings`),
    one ``<what> <file's> in the file, <run's> now`` text per difference (none: the file belongs)."""
    if metadata.get("settings") is None or metadata.get("model_sha256") is None:
        return ["the file records no clip protocol or weights hash (written by an older vtok)"]
    differences = []
    recorded_sha, wanted_sha = metadata["model_sha256"], settings["model_sha256"]
    if recorded_sha != wanted_sha:
        differences.append(f"model weights sha256 {recorded_sha[:12]}... in the file, {wanted_sha[:12]}... now")
    try:
        recorded = json.loads(metadata["settings"])
    except json.JSONDecodeError:
        recorded = {}
    for key, value in json.loads(settings["settings"]).items():
        if recorded.get(key) != value:
            differences.append(f"{key} {recorded.get(key)} in the file, {value} now")
    return differences


def token_metadata(
    model: VideoAutoencoder,
    info: ClipInfo,
    height: int,
    width: int,
    model_path: str,
    settings: dict[str, str] | None = None,
) -> dict[str, str]:
    """The string metadata of a token file for a clip of ``info`` tokenized by ``model``, with the
    run's ``settings`` (see :func:`tokenize_settings`) when given."""
    fields: dict[str, Any] = {
        "format": TOKEN_FORMAT,
        "format_version": TOKEN_FORMAT_VERSION,
        "source": printable_path(info.path),
        "source_real": printable_path(os.path.realpath(info.path)),  # "source" may be relative to a folder not recorded
        # a rerun redoes the video when its file changed since it was read (size, modification time)
        **(info.source_version or file_version(info.path)),
        "first_frame": info.first_frame,
        "frames": info.frames,
        "stride": info.stride,
        "fps": info.fps,
        "height": height,
        "width": width,
        **model_identity(model),
        "model": model_path,
        **(settings or {}),
    }
    return {key: str(value) for key, value in fields.items()}


def write_token_file(path: str | Path, tokens: torch.Tensor | FirstFrameTokens, metadata: dict[str, str]) -> Path:
    """Writes one clip's tokens (stored in :func:`index_dtype`) and ``metadata`` atomically.

    Args:
        path: the token file (parent folders are created).
        tokens: one clip's token indices ``[K, t', h', w']``, or :class:`FirstFrameTokens` of one clip.
        metadata: as :func:`token_metadata` gives.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dtype = index_dtype(int(metadata["codebook_size"]))
    tensors = {TENSOR: tokens.indices, EXTRA_TENSOR: tokens.first_frame_extra} if isinstance(tokens, FirstFrameTokens) else {TENSOR: tokens}
    stored = {name: tensor.detach().cpu().to(dtype).contiguous() for name, tensor in tensors.items()}
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(stored, str(temporary), metadata=metadata)
    give_umask_permissions(temporary)  # save_file makes it owner-only, unreadable to a team sharing the tokens
    os.replace(temporary, path)
    return path


def _unreadable(path: Path, error: Exception) -> ValueError:
    return ValueError(f"{path} is not a readable vtok token file ({first_line(error)}); write it again with `vtok tokenize`")


def _check_numbers(path: Path, metadata: dict[str, str], keys: Iterable[str] = NUMBER_KEYS) -> None:
    """Raises ``ValueError`` naming the file unless each of ``keys`` (of :data:`NUMBER_KEYS`) is in
    ``metadata`` and parses as its type: readers of a header's numbers then meet no KeyError or bare int() error."""
    for key in keys:
        try:
            NUMBER_KEYS[key](metadata[key])
        except (KeyError, ValueError):
            raise ValueError(
                f"{path}: token metadata {key!r} missing or not a number; write it again with `vtok tokenize`"
            ) from None


def read_token_header(path: str | Path) -> tuple[dict[str, str], list[int]]:
    """The metadata and the ``indices`` shape of a token file, reading only its header.

    Raises:
        FileNotFoundError: no file there.
        ValueError: not a safetensors file, not one written by ``vtok tokenize``, or without one of
            :data:`NUMBER_KEYS` as a number.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no token file at {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            shape = list(handle.get_slice(TENSOR).get_shape()) if TENSOR in handle.keys() else None
    except Exception as error:  # safetensors raises SafetensorError and OSError for damaged files
        raise _unreadable(path, error) from None
    if metadata.get("format") != TOKEN_FORMAT or shape is None:
        raise ValueError(f"{path} is a safetensors file but not a vtok token file (no '{TOKEN_FORMAT}' metadata and '{TENSOR}' tensor)")
    _check_numbers(path, metadata, ["format_version"])  # a newer format may record other keys: say so first
    if int(metadata["format_version"]) > TOKEN_FORMAT_VERSION:
        raise ValueError(f"{path} was written by a newer vtok (token format {metadata['format_version']}); upgrade vtok")
    _check_numbers(path, metadata)
    return metadata, shape


def read_token_file(path: str | Path) -> tuple[torch.Tensor | FirstFrameTokens, dict[str, str]]:
    """One clip's int64 tokens (indices ``[K, t', h', w']``, or :class:`FirstFrameTokens` when the
    file holds first-frame extras) and the metadata of a token file.

    Raises:
        FileNotFoundError: no file there.
        ValueError: the file is damaged or not a vtok token file.
    """
    metadata, _ = read_token_header(path)
    try:
        tensors = load_file(str(path))
    except Exception as error:
        raise _unreadable(Path(path), error) from None
    for name, tensor in tensors.items():  # .long() would truncate floats (and take bools as 0 and 1) silently
        if not is_integer_dtype(tensor.dtype):
            raise ValueError(
                f"{path} holds '{name}' of dtype {tensor.dtype}, not integer token indices; write it again with `vtok tokenize`"
            )
    indices = tensors[TENSOR]
    if indices.ndim != 4:
        raise ValueError(f"{path} holds indices of shape {tuple(indices.shape)}, expected [K, t, h, w]")
    if EXTRA_TENSOR in tensors:
        return FirstFrameTokens(indices.long(), tensors[EXTRA_TENSOR].long()), metadata
    return indices.long(), metadata


def check_model_matches(metadata: dict[str, str], model: VideoAutoencoder, tokens: str | Path) -> None:
    """Raises ``ValueError`` unless ``model`` can decode the tokens ``metadata`` describes.

    The configuration must agree (compression, codebook size, tokens per position, first-frame
    tokens). The weights may differ, but only on the decoder side: a decoder trained on the frozen
    encoder and quantizer of the model that tokenized (a generative or denoising stage-2 decoder) is
    meant to decode its tokens, so other weights with the same :func:`tokenizer_sha256` are logged
    (INFO, both weights hashes) and decoded. Another encoder or quantizer gives the same indices
    other meanings: the video would be no model's reconstruction of the clip, so that is refused,
    naming both hashes. A file from before the tokenizer hash was recorded cannot tell the two
    apart: other weights then give a warning naming both hashes, and are decoded.

    Args:
        metadata: the token file's metadata.
        model: the model asked to decode them.
        tokens: the token file (named in the message).
    """
    wrote = f"the model that wrote them ({metadata.get('model')})"
    if not model.is_discrete:
        raise ValueError(f"the model is continuous (kl) and has no tokens; {tokens} needs {wrote}")
    expected = model_identity(model)
    found = {"first_frame_tokens": "0", **metadata}  # files from before first-frame tokens have none
    wrong = [f"{key} {found.get(key)} in the file, {value} in the model" for key, value in expected.items() if found.get(key) != value]
    if wrong:
        raise ValueError(f"{tokens} does not fit this model ({'; '.join(wrong)}); decode it with {wrote}")
    recorded = metadata.get("model_sha256")
    own = weights_sha256(model) if recorded is not None else None
    if recorded is None or recorded == own:
        return  # the very weights, or a file from before the weights hash (nothing to compare)
    weights = f"weights sha256 {recorded[:12]}... in the file, {own[:12]}... in the model"
    recorded_tokenizer = metadata.get("tokenizer_sha256")
    if recorded_tokenizer is None:
        log.warning(
            "%s was written by other weights (%s) and records no tokenizer hash: the video is right only if "
            "this model's encoder and quantizer are the ones that tokenized (a decoder trained on their frozen tokens)",
            tokens, weights,
        )  # fmt: skip
        return
    own_tokenizer = tokenizer_sha256(model)
    if recorded_tokenizer != own_tokenizer:
        raise ValueError(
            f"{tokens} was tokenized by another encoder or quantizer (tokenizer sha256 {recorded_tokenizer[:12]}... in "
            f"the file, {own_tokenizer[:12]}... in the model; {weights}): its indices mean other codes to this "
            f"model; decode it with {wrote} or a decoder trained on its frozen tokens"
        )
    log.info(
        "%s: decoding with another decoder than the tokenizing model's (%s; the same encoder and quantizer): "
        "expected for a decoder trained on the frozen tokens (a stage-2 decoder)",
        tokens, weights,
    )  # fmt: skip


def check_token_grid(
    tokens: torch.Tensor | FirstFrameTokens, metadata: dict[str, str], model: VideoAutoencoder, where: str | Path
) -> None:
    """Raises ``ValueError`` unless the token grid ``[K, t', h', w']`` (and a first-frame model's extra
    tokens ``[E, 1, h', w']``) is the one ``model`` gives for the clip the metadata records (a file
    edited or written by something else decodes to a clip of another size than it claims, or fails
    inside the network).

    Args:
        tokens: one clip's tokens, as :func:`read_token_file` gives them.
        metadata: the token file's metadata.
        model: the model asked to decode them.
        where: the token file (named in the message).
    """
    indices = regular_indices(tokens)
    frames, height, width = (int(metadata[key]) for key in ("frames", "height", "width"))
    expected = model.compression.latent_shape(frames, height, width)
    if tuple(indices.shape[1:]) != expected:
        raise ValueError(
            f"{where} holds a {'x'.join(map(str, indices.shape[1:]))} token grid, but its {frames}x{height}x{width} "
            f"clip gives {'x'.join(map(str, expected))} at {model.compression}: the file was changed after tokenizing"
        )
    extra = tokens.first_frame_extra if isinstance(tokens, FirstFrameTokens) else None
    count = model.config.first_frame_tokens
    if count and extra is None:
        raise ValueError(
            f"{where} holds no '{EXTRA_TENSOR}' tokens, but the model reads {count} per first-latent-frame position"
        )
    if extra is not None and tuple(extra.shape) != (count, 1, *expected[1:]):
        wanted = "none" if not count else f"[{count}, 1, {expected[1]}, {expected[2]}]"
        raise ValueError(
            f"{where} holds '{EXTRA_TENSOR}' tokens of shape {list(extra.shape)}, but the model reads {wanted} for "
            f"its {'x'.join(map(str, expected))} grid: the file was changed after tokenizing"
        )
