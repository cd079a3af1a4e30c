"""Discrete VideoAutoencoders: tokenize/detokenize, the compression they report, and training them."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy
import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import CSVLogger

from tests.helpers import TINY_DATA, csv_logger, metric_column, tiny_fit_args
from vtok import VideoAutoencoder
from vtok.cli import main
from vtok.presets import CONFIG_DIR
from vtok.tokenfiles import TOKEN_FORMAT, TOKEN_FORMAT_VERSION, index_dtype, read_token_file, write_token_file
from vtok.tokenizers import GroupLFQ
from vtok.training import AutoencoderModule, CodebookMonitor
from vtok.training.rank_states import from_every_rank

DISCRETE = {
    "fsq": {"bottleneck": "fsq", "fsq_levels": [8, 5, 5, 5]},
    "fsq_mt2": {"bottleneck": "fsq", "fsq_levels": [8, 5, 5, 5], "tokens_per_position": 2},
    "gq": {"bottleneck": "gq", "gq_bits": 18, "gq_groups": 3},
    "gq_single": {"bottleneck": "gq", "gq_bits": 12, "gq_groups": 2, "gq_single_token": True},
}


def tiny(**config) -> VideoAutoencoder:
    torch.manual_seed(0)
    return VideoAutoencoder(latent_channels=8, block_out_channels=[8, 16], layers_per_block=1, **config).eval()


@pytest.mark.parametrize("name", DISCRETE)
def test_detokenize_of_tokenize_equals_decode_of_encode(name: str) -> None:
    model = tiny(**DISCRETE[name])
    video = torch.rand(2, 3, 9, 16, 24) * 2 - 1
    with torch.no_grad():
        indices = model.tokenize(video)
        assert indices.dtype == torch.int64
        assert indices.shape == (2, model.tokens_per_position, 3, 2, 3)
        assert 0 <= int(indices.min()) and int(indices.max()) < model.codebook_size
        assert torch.equal(model.detokenize(indices), model.decode(model.encode(video)))
        assert torch.equal(model(video).indices, indices)


def test_gq_inference_skips_the_entropy_loss_that_validation_still_computes(monkeypatch: pytest.MonkeyPatch) -> None:
    """tokenize and encode would build [N, G, 2^(bits/G)] float32 logits over the whole latent for
    a loss they throw away; validation runs under no_grad too, and still logs the entropy."""
    model = tiny(**DISCRETE["gq"])
    calls: list[tuple[int, ...]] = []
    entropies = GroupLFQ._entropies

    def counted(self: GroupLFQ, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        calls.append(tuple(x.shape))
        return entropies(self, x)

    monkeypatch.setattr(GroupLFQ, "_entropies", counted)
    video = torch.rand(2, 3, 9, 16, 24) * 2 - 1
    with torch.no_grad():
        out = model(video)  # what validation runs
        assert len(calls) == 1 and {"entropy", "commitment"} <= set(out.losses) and "codebook_entropy" in out.stats
        indices, codes = model.tokenize(video), model.encode(video)
    assert len(calls) == 1, "inference computed the entropy loss"
    assert torch.equal(indices, out.indices) and torch.equal(codes, out.latents)


@pytest.mark.parametrize("dtype", [torch.uint16, torch.uint32, torch.int32])
def test_detokenize_takes_unsigned_index_dtypes(dtype: torch.dtype) -> None:
    """uint16 is the natural storage of a 64,000-code vocabulary; its range check raised
    NotImplementedError ("min_all" not implemented for 'UInt16')."""
    model = tiny(bottleneck="fsq", fsq_levels=[8, 8, 8, 5, 5, 5])
    with torch.no_grad():
        tokens = model.tokenize(torch.rand(1, 3, 5, 16, 16) * 2 - 1)
        assert torch.equal(model.detokenize(tokens.to(dtype)), model.detokenize(tokens))
        with pytest.raises(ValueError, match=r"range over \[64000, 64000\], outside \[0, 64000\)"):
            model.detokenize(torch.full_like(tokens, 64000).to(dtype))


@pytest.mark.parametrize("codebook_size", [2**15, 2**15 + 1, 64_000, 2**16])
def test_a_token_file_keeps_every_index_of_its_codebook(tmp_path: Path, codebook_size: int) -> None:
    """Stored in the smallest type that holds them: int16 up to 2^15 codes. One power of two more (found by a
    mutation review) wrote half a 64,000-code vocabulary's tokens as negative numbers, and every test passed."""
    metadata = {"format": TOKEN_FORMAT, "format_version": str(TOKEN_FORMAT_VERSION), "frames": "9", "height": "16",
                "width": "16", "fps": "24", "codebook_size": str(codebook_size)}  # fmt: skip
    indices = torch.tensor([0, 1, codebook_size // 2, codebook_size - 1]).view(1, 1, 2, 2)
    path = write_token_file(tmp_path / "clip.safetensors", indices, metadata)
    assert torch.equal(read_token_file(path)[0], indices)
    assert index_dtype(codebook_size) == (torch.int16 if codebook_size <= 2**15 else torch.int32)


def test_discrete_models_report_their_compression() -> None:
    fsq = tiny(**DISCRETE["fsq_mt2"])
    assert (fsq.codebook_size, fsq.tokens_per_position) == (1000, 2)
    assert fsq.bits_per_token == pytest.approx(9.9658, abs=1e-4)
    # 2 tokens x log2(1000) bits per 4x8x8 latent position, over 3 latent frames of a 9-frame clip
    assert fsq.bits_per_pixel(9, 16, 24) == pytest.approx(2 * 9.9658 * 3 * 2 * 3 / (9 * 16 * 24), rel=1e-4)
    gq = tiny(**DISCRETE["gq"])
    assert (gq.codebook_size, gq.tokens_per_position, gq.bits_per_token) == (64, 3, 6.0)
    assert str(gq.compression) == "4x8x8"
    kl = tiny()
    assert kl.codebook_size is None and kl.bits_per_pixel(9, 16, 24) is None


def test_bad_token_requests_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="needs a discrete model"):
        tiny().tokenize(torch.zeros(1, 3, 5, 8, 8))
    model = tiny(**DISCRETE["fsq"])
    with pytest.raises(ValueError, match=r"outside \[0, 1000\)"):
        model.detokenize(torch.full((1, 1, 2, 1, 1), 1000))
    with pytest.raises(ValueError, match="integer tensor"):
        model.detokenize(torch.zeros(1, 1, 2, 1, 1))
    with pytest.raises(ValueError, match="must be a torch tensor, got ndarray"):  # numpy's dtype has no is_floating_point
        model.detokenize(numpy.zeros((1, 1, 2, 1, 1), dtype=numpy.int64))
    video = torch.zeros(1, 3, 5, 8, 8)
    video[0, 0, 0, 0, 0] = float("nan")  # rounding NaN would give an index out of any codebook
    for discrete in (model, tiny(**DISCRETE["gq"])):  # GQ's sign test would map it to index 0 silently
        with pytest.raises(ValueError, match=r"the video has non-finite values \(NaN or inf pixels\)"):
            discrete.tokenize(video)
    diverged = tiny(**DISCRETE["fsq"])
    with torch.no_grad():
        diverged.encoder.conv_in.weight.view(-1)[0] = float("nan")
    with pytest.raises(ValueError, match="its weights are NaN/inf") as error:  # the pixels are fine: not theirs
        diverged.tokenize(torch.zeros(2, 3, 5, 8, 8))
    assert "encoder.conv_in.weight" in str(error.value) and "pixels:" in str(error.value) and error.value.clips == [0, 1]
    with pytest.raises(ValueError, match=r"the video is torch.float64 and the model torch.float32: use video.to\(model.dtype\)"):
        model.encode(torch.zeros(1, 3, 5, 8, 8, dtype=torch.float64))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast casts as it goes: allowed
        model.encode(torch.zeros(1, 3, 5, 8, 8, dtype=torch.bfloat16))
    for config, message in [
        ({"bottleneck": "fsq", "fsq_levels": []}, "non-empty"),
        ({"bottleneck": "fsq", "fsq_levels": [8, 1]}, ">= 3"),
        ({"bottleneck": "gq", "gq_bits": 10, "gq_groups": 3}, "must divide"),
        ({"bottleneck": "gq", "gq_bits": 34, "gq_groups": 2}, "exceeds 16"),
        ({"first_frame_tokens": 2}, "first_frame_tokens=2: extra first-frame tokens need bottleneck fsq"),  # kl ignored it
        ({"first_frame_tokens": -1}, "first_frame_tokens=-1: extra first-frame tokens need bottleneck fsq and a whole count >= 1"),
        ({**DISCRETE["fsq"], "first_frame_tokens": -1}, "first_frame_tokens=-1"),
        # from Python or an edited config.json: 1 or 2 tokens made, 1.5 or 2.5 counted in bits per pixel
        ({**DISCRETE["fsq"], "first_frame_tokens": 1.5}, "first_frame_tokens=1.5"),
        ({**DISCRETE["fsq"], "tokens_per_position": 2.5}, "tokens_per_position must be an integer"),
    ]:
        with pytest.raises(ValueError, match=message):
            tiny(**config)


@pytest.mark.parametrize("name", ["fsq_mt2", "gq"])
def test_discrete_models_round_trip_through_save_pretrained(name: str, tmp_path: Path) -> None:
    model = tiny(**DISCRETE[name])
    model.save_pretrained(tmp_path)
    loaded = VideoAutoencoder.from_pretrained(tmp_path).eval()
    video = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    with torch.no_grad():
        assert torch.equal(model.tokenize(video), loaded.tokenize(video))
        assert torch.equal(model(video).reconstruction, loaded(video).reconstruction)


def test_the_straight_through_gradient_reaches_the_encoder() -> None:
    model = tiny(**DISCRETE["fsq"]).train()
    model(torch.rand(1, 3, 5, 16, 16) * 2 - 1).reconstruction.square().mean().backward()
    assert model.encoder.conv_in.weight.grad.abs().sum() > 0


DISCRETE_PRESETS = ["fsq_4x8x8", "fsq_4x16x16_mt2", "gq_4x8x8", "gq_4x16x16"]


@pytest.mark.parametrize("preset", DISCRETE_PRESETS)
def test_each_discrete_preset_trains_and_logs_usage(preset: str, tmp_path: Path) -> None:
    main(
        [
            "fit", "--config", str(CONFIG_DIR / f"{preset}.yaml"), *TINY_DATA,
            "--model.autoencoder.block_out_channels", "[16, 32]",
            "--model.loss.perceptual_weight", "0", "--model.adversarial.channels", "8",
            "--model.optimizer.lr", "5e-4", "--model.optimizer.warmup_steps", "0",
            "--data.synthetic_dir", str(tmp_path / "clips"), "--trainer.default_root_dir", str(tmp_path / "run"),
            "--trainer.max_steps", "24", "--trainer.limit_val_batches", "0", "--trainer.enable_progress_bar", "false",
            "--trainer.callbacks+", "vtok.training.CodebookMonitor", "--trainer.callbacks.window_steps", "6",
            *csv_logger(tmp_path),
        ]  # fmt: skip
    )
    l1 = metric_column(tmp_path / "run", "train/l1")
    assert sum(l1[-6:]) < 0.9 * sum(l1[:6]), f"L1 did not fall: {l1[:6]} -> {l1[-6:]}"
    usage = metric_column(tmp_path / "run", "codebook/usage")
    assert len(usage) == 4 and all(0 < u <= 1 for u in usage)
    assert metric_column(tmp_path / "run", "train/perplexity")


def test_codebook_monitor_counts_codes_per_slot_over_a_window(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The real callback on a real fsq_mt2 module (2 slots of 1000 codes), fed the training step's
    ``indices`` [B, K, T, H, W] with known codes; what reaches the trainer's logger is recorded."""
    module = AutoencoderModule(tiny(**DISCRETE["fsq_mt2"]))
    logged: list[dict[str, float]] = []
    logger = CSVLogger("unused")
    monkeypatch.setattr(logger, "log_metrics", lambda metrics, step: logged.append(metrics))
    trainer = Trainer(accelerator="cpu", devices=1, logger=logger, enable_checkpointing=False, enable_progress_bar=False)
    monitor = CodebookMonitor(window_steps=2)  # collapse below 5% of a slot's codes

    def step(first_slot: torch.Tensor, second_slot: torch.Tensor) -> None:  # 64 positions each
        indices = torch.stack([first_slot, second_slot]).reshape(1, 2, 1, 8, 8)
        monitor.on_train_batch_end(trainer, module, {"indices": indices}, None, 0)

    with caplog.at_level(logging.WARNING, logger="vtok.training.codebook"):
        step(torch.arange(64), torch.full((64,), 5))
        assert logged == [], "nothing before the window is full"
        step(torch.arange(32, 96), torch.tensor([5, 6]).repeat(32))  # codes 0-95 in slot 0, {5, 6} in slot 1
        assert logged[-1] == pytest.approx({"codebook/usage": (0.096 + 0.002) / 2, "codebook/min_slot_usage": 0.002})
        [warning] = [r.getMessage() for r in caplog.records]
        assert warning.startswith("codebook collapse: a token slot used only 0.2% of its 1000 codes"), warning
        caplog.clear()
        for _ in range(2):  # a fresh window: 64 codes (6.4%) in each slot, above the threshold
            step(torch.arange(64), torch.arange(100, 164))
        assert logged[-1] == pytest.approx({"codebook/usage": 0.064, "codebook/min_slot_usage": 0.064})
        assert len(logged) == 2 and caplog.records == []


def test_held_out_scores_of_a_gq_model_do_not_depend_on_how_the_clips_are_batched() -> None:
    """GQ's entropy term is the batch's codebook entropy, not a clip's score: in val/loss it made one
    checkpoint score 0.157 in batches of 2, 0.216 in batches of 1, and another figure on two ranks."""
    module = AutoencoderModule(tiny(**DISCRETE["gq"]))
    module.trainer = Trainer(logger=False, accelerator="cpu")
    video = torch.rand(4, 3, 5, 32, 32) * 2 - 1

    def scores(batches: list[torch.Tensor]) -> dict[str, float]:
        module._held_out_means = None
        with torch.no_grad():
            for part in batches:
                module._score({"video": part}, "val")
        return module._held_out_means.means(from_every_rank)

    whole, singles, uneven = scores([video]), scores(list(video.split(1))), scores([video[:3], video[3:]])
    assert whole.keys() == singles.keys() == uneven.keys() and "val/loss" in whole and "val/entropy" not in whole
    for other in (singles, uneven):  # uneven batches: a mean of batch means passed the even ones (a mutation review's find)
        assert all(whole[key] == pytest.approx(other[key], rel=1e-5, abs=1e-6) for key in whole), (whole, other)


def test_codebook_monitor_watches_the_first_frame_tokens_too(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The first-frame extra tokens (their own codebook) were never counted: a collapse there went unseen."""
    with caplog.at_level(logging.WARNING, logger="vtok.training.codebook"):
        main(tiny_fit_args(tmp_path, 2, "--model.autoencoder.bottleneck", "fsq", "--model.autoencoder.fsq_levels", "[8,5,5,5]",
                           "--model.autoencoder.first_frame_tokens", "1", "--trainer.callbacks+", "vtok.training.CodebookMonitor",
                           "--trainer.callbacks.window_steps", "2", "--trainer.callbacks.collapse_threshold", "0.99",
                           "--trainer.limit_val_batches", "0", *csv_logger(tmp_path),
                           "--trainer.log_every_n_steps", "1"))  # fmt: skip
    first_frame = metric_column(tmp_path / "run", "codebook/first_frame_usage")
    regular = metric_column(tmp_path / "run", "codebook/usage")
    assert len(first_frame) == len(regular) == 1 and 0 < first_frame[0] <= 1 and 0 < regular[0] <= 1
    assert metric_column(tmp_path / "run", "codebook/min_slot_usage") == [min(first_frame[0], regular[0])]
    warnings = [r.getMessage() for r in caplog.records if r.getMessage().startswith("codebook collapse")]
    kinds = [w.split(" used")[0].removeprefix("codebook collapse: a ") for w in warnings]
    assert kinds == ["token slot", "first-frame token slot"], warnings
