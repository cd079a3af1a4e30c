"""The evaluation loop: clips -> encode -> decode -> metrics, codebook statistics, timings, pictures.

Each usable video gives one centre clip under the pinned protocol; unreadable videos are skipped,
counted and listed with their reasons. Discrete models are run the way they are used: ``tokenize``
(timed as encoding), then ``indices_to_latents`` + ``decode`` (timed as decoding), the same
reconstruction as ``detokenize``. ``mode="continuous"`` measures a jointly trained discrete model
through its continuous latents instead (``encode(discrete=False)`` / ``decode(discrete=False)``).
A ``decode_timestep`` t > 0 decodes latents noised to z_t = (1 - t)·z + t·ε, each clip's ε seeded by
(``noise_seed``, its file's name and size: :mod:`vtok.evaluation.noise`) so no result depends on the
batch size or on where the videos live, telling a denoising decoder t; a decoder without timestep
conditioning decodes them as they are, which is the comparison LTX-Video's denoising decoder is
judged by. Everything runs in float32 on the chosen device.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import torch
from einops import rearrange
from tqdm import tqdm

from vtok.data import ClipInfo, VideoClipDataset, file_key
from vtok.data.clips import slower_than
from vtok.data.read_ahead import read_ahead
from vtok.data.transforms import enlarges
from vtok.error_text import first_line
from vtok.evaluation.codebook import CodeCounter
from vtok.evaluation.detectors import load_i3d, load_lpips, lpips_size_reason, lpips_weights_sha256
from vtok.evaluation.metrics import (
    FLAT_ENERGY, energy_ratio, frechet_distance, high_frequency_energy, lpips_per_video, psnr_per_video,
    ssim_per_video,
)  # fmt: skip
from vtok.evaluation.noise import clip_noise, noise_key
from vtok.evaluation.pictures import write_pictures
from vtok.evaluation.report import STAGED_PICTURES, finite_metrics, finite_or_none, staged_pictures, write_outputs
from vtok.vae import FirstFrameTokens, VideoAutoencoder, regular_indices
from vtok.vae.finite import NonFiniteLatents, model_fault, non_finite_clips

T = TypeVar("T")
log = logging.getLogger(__name__)
# FVD is conventionally reported over 2,048 clips or more (as in FVD-2048); from fewer, the distance between
# two samples of one distribution is large (about 640 at 32 clips of 400 I3D features, 40 at 2,048).
FVD_STEADY_CLIPS = 2048


@dataclass
class EvaluationSettings:
    """How to run an evaluation.

    Args:
        device: where the model and the metric networks run.
        batch_size: clips per forward pass.
        max_videos: evaluate at most this many usable videos (``None``: all).
        lpips_weights: VGG16 file for LPIPS (``None``: the torch hub cache; missing there: LPIPS is skipped).
        fvd_weights: ``i3d_torchscript.pt`` for FVD (``None``: the torch hub cache; missing there: FVD is skipped).
        picture_videos: the first this many videos get a picture and a side-by-side mp4.
        mode: ``"discrete"`` (tokens) or ``"continuous"`` (latents before quantization); ``None``
            takes the model's own: discrete for fsq/gq, continuous for kl.
        decode_timestep: noise level t of the latents that are decoded (0: the latents as encoded).
        noise_seed: seed of that latent noise (each clip's noise is seeded by it and its file's name and size).
        target_fps: the protocol's ``--fps``, when set: videos slower than it are reported (their clips
            keep their own rate, stride 1).
        workers: processes decoding the next videos while the model runs (0: read in this process).
    """

    device: torch.device
    batch_size: int = 4
    max_videos: int | None = None
    lpips_weights: str | None = None
    fvd_weights: str | None = None
    picture_videos: int = 4
    mode: Literal["discrete", "continuous"] | None = None
    decode_timestep: float = 0.0
    noise_seed: int = 0
    target_fps: float | None = None
    workers: int = 0

    def resolved_mode(self, model: VideoAutoencoder) -> Literal["discrete", "continuous"]:
        """The mode to run ``model`` in; ``ValueError`` when a continuous model is asked for tokens."""
        if self.mode == "discrete" and not model.is_discrete:
            raise ValueError("--mode discrete needs a discrete model (bottleneck fsq or gq); this one is continuous (kl)")
        if not 0 <= self.decode_timestep <= 1:
            raise ValueError(f"--decode-timestep must be in [0, 1], got {self.decode_timestep}")
        return self.mode or ("discrete" if model.is_discrete else "continuous")


def _timed(function: Callable[[], T], device: torch.device) -> tuple[T, float]:
    """``function()`` and its wall-clock seconds (CUDA work included)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    result = function()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return result, time.perf_counter() - start


def _decoded(
    model: VideoAutoencoder, latents: torch.Tensor, discrete: bool, timestep: float, noise_seed: int, keys: list[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``latents`` and their decoding, after noising them to ``timestep`` when it is above 0 (clip ``i``'s
    noise drawn on the CPU from ``noise_seed`` and ``keys[i]``: the same on any device and in any batch)."""
    if timestep <= 0:
        return latents, model.decode(latents, discrete=discrete)
    noise = clip_noise(latents.shape[1:], noise_seed, keys, latents.dtype)
    return latents, model.decode_noised(latents, timestep, noise.to(latents.device), discrete=discrete)


class _Evaluation:
    """Accumulates per-video metrics, features, codebook counts and timings over batches."""

    def __init__(
        self, model: VideoAutoencoder, settings: EvaluationSettings, out: Path, frame_size: tuple[int, int]
    ) -> None:
        self.model, self.settings, self.out = model, settings, out
        self.discrete = settings.resolved_mode(model) == "discrete"
        self.lpips, self.lpips_skipped = load_lpips(settings.lpips_weights, settings.device, frame_size)
        if lpips_size_reason(*frame_size):
            log.warning("%s: LPIPS is skipped (metrics.json says so under lpips_skipped)", self.lpips_skipped)
        self.lpips_sha256 = lpips_weights_sha256(settings.lpips_weights) if self.lpips is not None else None
        self.i3d, self.fvd_skipped = load_i3d(settings.fvd_weights, settings.device)
        self.fvd_sha256 = self.i3d.sha256 if self.i3d is not None else None
        self.rows: list[dict[str, Any]] = []
        self.features: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])
        self.codes: CodeCounter | None = None  # whole tokens, over the model's codebook_size
        self.group_codes: CodeCounter | None = None  # a single-token GQ's groups, over a group's vocabulary
        self.first_frame_codes: CodeCounter | None = None  # the first latent frame's extra tokens, if any
        self.seconds = {"encode": 0.0, "decode": 0.0}
        self.high_frequency_energy = torch.zeros(0, 2)  # per video: reconstruction, original
        self.frames = 0
        self.latent_values_per_pixel: float | None = None
        self.token_rates: list[float] = []
        self.pictures: list[dict[str, str]] = []
        self.clip_rates: set[float] = set()  # the clips' real frame rates (source fps / stride)
        self.slower_than_asked: list[str] = []  # videos whose own rate is below the protocol's fps
        self.enlarged: list[str] = []  # videos smaller than the protocol's size: compared enlarged to it
        self.warmed_up = False  # whether the untimed first pass has run

    @torch.no_grad()
    def add(self, videos: list[torch.Tensor], infos: list[ClipInfo]) -> None:
        video = torch.stack(videos).to(self.settings.device)
        if not self.warmed_up:  # one untimed pass: the first pays one-off costs (kernel loading, cuDNN's search)
            self._coded(video, infos)
            self.warmed_up = True
        tokens, latents, reconstruction, seconds = self._coded(video, infos)
        if tokens is not None:
            self._count(regular_indices(tokens))
            if isinstance(tokens, FirstFrameTokens):
                self._count_first_frame(tokens.first_frame_extra)
        _check_finite(self.model, video, {"latents": latents, "reconstructions": reconstruction}, infos)
        self.seconds["encode"] += seconds[0]
        self.seconds["decode"] += seconds[1]
        self.frames += video.shape[0] * video.shape[2]
        self._rates(video, latents, infos)
        self._metrics(video, reconstruction, infos)

    def _coded(
        self, video: torch.Tensor, infos: list[ClipInfo]
    ) -> tuple[torch.Tensor | FirstFrameTokens | None, torch.Tensor, torch.Tensor, tuple[float, float]]:
        """The tokens (``None`` in continuous mode), latents and reconstruction of ``video``, and the
        seconds its encoding and decoding took."""
        model, device = self.model, self.settings.device
        noise = (self.settings.decode_timestep, self.settings.noise_seed, [noise_key(info.path) for info in infos])
        if not self.discrete:
            encoded, encode_seconds = _timed(lambda: model.encode(video, discrete=False), device)
            decoded, decode_seconds = _timed(lambda: _decoded(model, encoded, False, *noise), device)
            return None, *decoded, (encode_seconds, decode_seconds)
        try:
            tokens, encode_seconds = _timed(lambda: model.tokenize(video), device)
        except NonFiniteLatents as error:
            raise _non_finite(model, "latents", video, infos, error.clips[0]) from None
        to_latents = model.indices_to_latents  # timed with the decoding, as detokenize runs it
        decoded, decode_seconds = _timed(lambda: _decoded(model, to_latents(tokens), True, *noise), device)
        return tokens, *decoded, (encode_seconds, decode_seconds)

    def _count(self, indices: torch.Tensor) -> None:
        """Counts the tokens ``[B, K, t, h, w]`` as the model reports them (each of K slots over ``codebook_size``
        values) and, where the quantizer's groups are not the tokens (single-token GQ), the groups too."""
        self.codes = self.codes or CodeCounter(self.model.codebook_size)
        self.codes.update(rearrange(indices, "b k t h w -> (b t h w) k"))
        groups, vocabulary = self.model.quantizer.quantizer.token_groups(indices)
        if groups.shape[1] != indices.shape[1] or vocabulary != self.model.codebook_size:
            self.group_codes = self.group_codes or CodeCounter(vocabulary)
            self.group_codes.update(groups)

    def _count_first_frame(self, extra: torch.Tensor) -> None:
        """Counts the first latent frame's extra tokens ``[B, K_extra, 1, h, w]`` (first-frame strengthening),
        each slot over the vocabulary of their own quantizer."""
        groups, vocabulary = self.model.quantizer.first_frame.token_groups(extra)
        self.first_frame_codes = self.first_frame_codes or CodeCounter(vocabulary)
        self.first_frame_codes.update(groups)

    def _rates(self, video: torch.Tensor, latents: torch.Tensor, infos: list[ClipInfo]) -> None:
        self.clip_rates.update(round(info.fps, 3) for info in infos if info.fps > 0)
        target = self.settings.target_fps
        if target:
            self.slower_than_asked += [info.path for info in infos if info.stride == 1 and slower_than(info.source_fps, target)]
        frames, height, width = video.shape[2:]
        self.enlarged += [info.path for info in infos if enlarges(*info.source_size, (height, width))]
        # per clip, as bits_per_pixel: first-frame extras (zero channels in later frames) count in the first frame alone
        extra = self.model.quantizer.first_frame_channels if self.discrete else 0
        values = (latents.shape[1] - extra) * math.prod(latents.shape[2:]) + extra * math.prod(latents.shape[3:])
        self.latent_values_per_pixel = values / (video.shape[1] * frames * height * width)
        if self.discrete:
            tokens = self.model.tokens_per_clip(frames, height, width)  # first-frame extras included
            self.token_rates += [tokens * info.fps / frames for info in infos if info.fps > 0]

    def _metrics(self, video: torch.Tensor, reconstruction: torch.Tensor, infos: list[ClipInfo]) -> None:
        psnr = psnr_per_video(reconstruction, video).tolist()
        ssim = ssim_per_video(reconstruction, video).tolist()
        energies = torch.stack([high_frequency_energy(reconstruction), high_frequency_energy(video)], dim=1).cpu()
        self.high_frequency_energy = torch.cat([self.high_frequency_energy, energies])
        ratios = energy_ratio(energies[:, 0], energies[:, 1]).tolist()
        sharpness = [finite_or_none(value) for value in ratios]  # NaN for a flat original: none
        lpips = lpips_per_video(self.lpips, reconstruction, video).tolist() if self.lpips is not None else None
        for i, info in enumerate(infos):
            lpips_i = None if lpips is None else lpips[i]
            self.rows.append({"path": info.path, "psnr": psnr[i], "ssim": ssim[i], "lpips": lpips_i, "high_frequency_ratio": sharpness[i]})
        if self.i3d is not None:
            self._add_features(video, reconstruction)
        self._pictures(video, reconstruction, infos)

    def _add_features(self, video: torch.Tensor, reconstruction: torch.Tensor) -> None:
        """The I3D features of both sets for FVD; a detector that fails on these clips (too short or too small
        for the real I3D) skips FVD with the reason, said at once; running out of memory is an error."""
        shape = tuple(video.shape[1:])
        try:
            self.features[0].append(self.i3d(video))
            self.features[1].append(self.i3d(reconstruction))
        except torch.cuda.OutOfMemoryError as error:  # a RuntimeError too: not a property of the clips
            raise ValueError(
                f"the I3D detector ran out of memory on {video.shape[0]} clips of shape {shape}: give a smaller --batch-size"
            ) from error
        except (RuntimeError, torch.jit.Error) as error:  # the second: a TorchScript raise or assert
            self.i3d, self.features = None, ([], [])
            self.fvd_skipped = f"the I3D detector failed on clips of shape {shape}: {_cause(error)}"
            log.warning("FVD is skipped: %s", self.fvd_skipped)

    def _pictures(self, video: torch.Tensor, reconstruction: torch.Tensor, infos: list[ClipInfo]) -> None:
        for i, info in enumerate(infos[: max(self.settings.picture_videos - len(self.pictures), 0)]):
            written = write_pictures(self.out / STAGED_PICTURES, file_key(info.path), video[i], reconstruction[i], info.fps)
            # named where write_outputs moves them
            self.pictures.append({"path": info.path, **{kind: f"pictures/{Path(name).name}" for kind, name in written.items()}})

    def fvd(self) -> float | None:
        if self.i3d is None:
            return None
        if len(self.rows) < 2:
            self.fvd_skipped = f"FVD needs at least 2 videos, {len(self.rows)} could be evaluated"
            return None
        clips = len(self.rows)
        if clips < FVD_STEADY_CLIPS:
            log.warning(
                "FVD from %d clips: below about %d clips the Fréchet distance is mostly the bias of a small "
                "sample (two sets from one distribution score far above 0), so compare it only with FVDs of %d "
                "clips; metrics.json records the count as fvd_clips",
                clips, FVD_STEADY_CLIPS, clips,
            )  # fmt: skip
        return frechet_distance(torch.cat(self.features[0]), torch.cat(self.features[1]))


def _check_finite(
    model: VideoAutoencoder, video: torch.Tensor, outputs: dict[str, torch.Tensor], infos: list[ClipInfo]
) -> None:
    """Raises :func:`_non_finite`'s error for the first clip whose ``outputs`` (by name) hold NaN or inf:
    a diverged model would otherwise give NaN metrics (one host sync per output)."""
    for what, values in outputs.items():
        clips = non_finite_clips(values)
        if clips:
            raise _non_finite(model, what, video, infos, clips[0])


def _non_finite(
    model: VideoAutoencoder, what: str, video: torch.Tensor, infos: list[ClipInfo], clip: int
) -> ValueError:
    """The error for NaN or inf ``what`` (latents, reconstructions) of batch item ``clip``, naming its file:
    the fault of its pixels when they are not finite, else of the model (its weights, or an overflow)."""
    path = infos[clip].path
    if not bool(video[clip].isfinite().all()):
        return ValueError(f"{path} was read as NaN or inf pixels, which no model can measure")
    return ValueError(f"the model gave non-finite {what} for {path}: {model_fault(model)}")


def _cause(error: Exception) -> str:
    """The first line of what went wrong: a TorchScript error puts its traceback first and the cause
    (``RuntimeError: ...``) last, so that line is kept when there is one."""
    named = [line for line in str(error).splitlines() if re.match(r"[A-Za-z_.]*(Error|Exception): ", line)]
    return first_line(named[-1].removeprefix("builtins.") if named else error, 300)  # the prefix: a TorchScript raise


def _token_rate_skipped(run: _Evaluation) -> str | None:
    """Why there is no token rate, where a discrete run has none: no clip's frame rate was known."""
    return "no clip's frame rate is known" if run.discrete and not run.token_rates else None


def _set_sharpness(energies: torch.Tensor) -> float | None:
    """High-frequency energy of the reconstructions over that of the originals, ``energies`` ``[N, 2]``
    averaged over the set first (``None`` when the originals are flat on average, or there are none;
    NaN or inf from non-finite reconstructions stays, so that it is never taken for flat originals)."""
    if not len(energies):
        return None
    decoded, original = energies.mean(0)
    return None if original < FLAT_ENERGY else float(energy_ratio(decoded, original))


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def evaluate(
    model: VideoAutoencoder,
    dataset: VideoClipDataset,
    out: str | Path,
    settings: EvaluationSettings,
    protocol: dict[str, Any],
    model_info: dict[str, Any],
    data: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Evaluates ``model`` on the centre clips of ``dataset`` and writes ``out``'s metrics, table, report and pictures.

    Args:
        model: the autoencoder (moved to ``settings.device``).
        dataset: clips under the pinned protocol (unreadable files are skipped and listed).
        out: output folder (created).
        settings: device, batch size, limits and metric weights.
        protocol: the clip protocol, recorded in the outputs.
        model_info: what to record about the model (path, training step, ...).
        data: what to record about where the videos came from (``--data`` as given and its real path).

    Returns:
        the contents of ``metrics.json``.

    Raises:
        ValueError: no video in ``dataset`` could be read, or the model gave NaN or inf latents or
            reconstructions (the message names the file and blames the weights when they are not finite).
    """
    out = Path(out)
    model = model.to(settings.device).eval()
    with staged_pictures(out):  # moved into out/pictures by write_outputs; gone if the run stops first
        run = _Evaluation(model, settings, out, (protocol["height"], protocol["width"]))
        limit = settings.max_videos if settings.max_videos is not None else len(dataset)
        skipped: list[dict[str, str]] = []
        batch: tuple[list[torch.Tensor], list[ClipInfo]] = ([], [])
        # videos read, towards the most there can be: a skip lowers the total when fewer files than the limit are left,
        # so the bar ends full; closed before an error, which then gets a line of its own
        with tqdm(total=min(limit, len(dataset)), desc="evaluate", unit="video") as progress:
            for _, video, info, skip in read_ahead(dataset, workers=settings.workers):
                if skip is not None:
                    skipped.append(skip)
                    progress.total = min(limit, len(dataset) - len(skipped))
                    progress.set_postfix(skipped=len(skipped))  # refreshes the bar with its new total
                    continue
                progress.update()
                batch[0].append(video)
                batch[1].append(info)
                if len(batch[0]) == settings.batch_size:
                    run.add(*batch)
                    batch = ([], [])
                if len(run.rows) + len(batch[0]) >= limit:
                    break
            if batch[0]:
                run.add(*batch)
        if run.slower_than_asked:
            log.warning(
                "--fps %g is above the frame rate of %d videos (first: %s): their clips run at their own rate; "
                "metrics.json records the real rates under protocol.clip_fps",
                settings.target_fps, len(run.slower_than_asked), run.slower_than_asked[0],
            )  # fmt: skip
        if run.enlarged:
            log.warning(
                "%d videos are smaller than the protocol's %dx%d (first: %s): they are compared enlarged to it "
                "(smoother than real frames of that size); metrics.json counts them under enlarged_videos",
                len(run.enlarged), protocol["height"], protocol["width"], run.enlarged[0],
            )  # fmt: skip
        if not run.rows:
            reasons = "; ".join(f"{s['path']}: {s['reason']}" for s in skipped[:3])
            raise ValueError(
                f"none of the {len(skipped)} videos could be read ({reasons}); check the data path or run `vtok prepare` on it"
            )
        metrics = {**_summary(run, model, protocol, model_info, skipped), "data": data}
        metrics = finite_metrics(metrics)  # null, with a reason, for NaN
        write_outputs(out, metrics, run.rows)
    return metrics


def _summary(
    run: _Evaluation, model: VideoAutoencoder, protocol: dict[str, Any], model_info: dict[str, Any], skipped: list[dict[str, str]]
) -> dict[str, Any]:
    frames, height, width = protocol["frames"], protocol["height"], protocol["width"]
    fvd, sharpness = run.fvd(), _set_sharpness(run.high_frequency_energy)
    return {
        "psnr": _mean([row["psnr"] for row in run.rows]),
        "ssim": _mean([row["ssim"] for row in run.rows]),
        "lpips": _mean([row["lpips"] for row in run.rows]),
        "lpips_skipped": run.lpips_skipped,
        "high_frequency_ratio": sharpness,
        "high_frequency_ratio_skipped": None if sharpness is not None else "the originals are flat (no detail to compare)",
        "fvd": fvd,
        "fvd_skipped": run.fvd_skipped if fvd is None else None,
        "fvd_clips": len(run.rows) if fvd is not None else None,
        "fvd_weights_sha256": run.fvd_sha256,  # also when the detector failed: which file failed
        "lpips_weights_sha256": run.lpips_sha256,
        "mode": "discrete" if run.discrete else "continuous",
        "decode_timestep": run.settings.decode_timestep,
        "codebook_usage": run.codes.usage() if run.codes else None,
        "perplexity": run.codes.perplexity() if run.codes else None,
        "group_codebook_usage": run.group_codes.usage() if run.group_codes else None,
        "group_perplexity": run.group_codes.perplexity() if run.group_codes else None,
        "first_frame_codebook_usage": run.first_frame_codes.usage() if run.first_frame_codes else None,
        "first_frame_perplexity": run.first_frame_codes.perplexity() if run.first_frame_codes else None,
        "bits_per_pixel": model.bits_per_pixel(frames, height, width) if run.discrete else None,
        "latent_values_per_pixel": run.latent_values_per_pixel,
        "tokens_per_second_of_video": _mean(run.token_rates),
        "tokens_per_second_of_video_skipped": _token_rate_skipped(run),
        "compression": str(model.compression),
        "videos": len(run.rows),
        "clips": len(run.rows),
        "skipped_files": len(skipped),
        "skipped": skipped,
        "enlarged_videos": len(run.enlarged),
        "encode_frames_per_s": run.frames / run.seconds["encode"] if run.seconds["encode"] > 0 else None,
        "decode_frames_per_s": run.frames / run.seconds["decode"] if run.seconds["decode"] > 0 else None,
        "protocol": {
            **protocol,
            "clip_fps": sorted(run.clip_rates),
            "batch_size": run.settings.batch_size,
            "noise_seed": run.settings.noise_seed if run.settings.decode_timestep > 0 else None,
        },
        "model": model_info,
        "device": str(run.settings.device),
        "pictures": run.pictures,
    }
