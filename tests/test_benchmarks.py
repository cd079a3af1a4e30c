"""The benchmark scripts run at smoke size and print the JSON lines their READMEs promise; the
speed options change no result; the training step reads the device once per optimizer step.

Scripts run as subprocesses, as a user runs them, with test-size widths (``--tiny``) and tiny
clips. No test asserts a timing.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch import Callback, Trainer
from torch.utils.data import DataLoader

from benchmarks.common import SyncCounter, _failure
from benchmarks.models import TINY
from vtok import VideoAutoencoder
from vtok.tokenizers import FSQ, GroupLFQ
from vtok.losses import AdversarialLoss
from vtok.training import AutoencoderModule
from vtok.training.ema import ema_copy
from vtok.training.speed import should_compile

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--tiny", "--frames", "5", "--size", "16", "--batch-size", "1", "--steps", "1", "--warmup", "0"]

# test name -> the script and its arguments; the scripts of the selected tests start together (see `runs`)
COMMANDS: dict[str, list[str]] = {
    "test_train_step_measures_vtok_and_a_baseline_each_in_its_own_process": [
        "benchmarks.train_step", *SMALL, "--baselines", "wan,vidtok"],
    "test_a_failing_model_leaves_its_traceback_on_stderr_and_one_error_record": [
        "benchmarks.train_step", *SMALL, "--baselines", "", "--set", "latent_channels=[3]"],
    "test_inference_reports_encode_decode_and_tokenize_rates": [
        "benchmarks.inference", *SMALL, "--config", "configs/fsq_4x8x8.yaml", "--only", "vtok"],
    "test_quantizers_compare_with_the_reference_and_take_their_share_of_a_step": [
        "benchmarks.quantizers", *SMALL, "--bits", "16", "--presets", "configs/gq_4x8x8.yaml", "--no-full-size-memory",
        "--step-json", "no/such/train_step.jsonl", "--threads", "2"],
    "test_data_times_files_shards_and_h264_sources_with_both_readers": [
        "benchmarks.data", "--paths", "files,shards,sources", "--workers", "0", "--size", "16", "--frames", "5",
        "--videos", "2", "--video-frames", "12", "--batches", "2", "--batch-size", "2", "--repeat", "2",
        "--sources", "48x64", "--source-videos", "2", "--source-frames", "12", "--step-clips-per-s", "2.0"],
    "test_footprint_counts_flops_and_memory_on_fake_tensors": [
        "benchmarks.footprint", *SMALL[:-4], "--baselines", "wan,vidtok", "--mfu", "0.4"],
    "test_roofline_costs_every_operator_of_a_step_on_fake_tensors": [
        "benchmarks.roofline", *SMALL[:-4], "--baselines", "wan", "--top", "3"],
    "test_profile_step_times_the_operators_of_a_real_step": [
        "benchmarks.profile_step", *SMALL, "--top", "3"],
    "test_quality_at_budget_trains_wan_by_the_same_loop": [
        "benchmarks.quality_at_budget", *SMALL[:-4], "--seconds", "0", "--only", "wan", "--baseline-set", "base_dim=8"],
}  # fmt: skip


def script_env() -> dict[str, str]:
    """The scripts' environment: this checkout first on the path, one OpenMP thread."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module", autouse=True)
def runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.Popen]:
    """Starts the selected tests' scripts at once, as subprocesses from the repository root: each
    spends most of its time importing torch and diffusers, so together they take about as long
    as the slowest one. Each test then waits for its own."""
    selected = {item.originalname for item in request.session.items if item.module.__name__ == __name__}
    # one thread each: with several processes on two shared cores, OpenMP's spinning threads make
    # small convolutions tens of times slower
    env = script_env()
    started = {}
    for name, (module, *args) in COMMANDS.items():
        if name in selected:
            folder = tmp_path_factory.mktemp(module.rsplit(".", 1)[-1])
            where = ["--dir", str(folder)] if module == "benchmarks.data" else ["--data-dir", str(folder)] if "quality" in module else []
            started[name] = subprocess.Popen([sys.executable, "-m", module, *args, *where], cwd=ROOT, env=env,
                                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    yield started
    for process in started.values():
        if process.poll() is None:
            process.kill()
            process.communicate()


def output(runs: dict[str, subprocess.Popen], request: pytest.FixtureRequest) -> list[dict]:
    """The JSON lines (all of them parsed) that the current test's script printed."""
    stdout, stderr = runs[request.node.originalname].communicate(timeout=900)
    assert runs[request.node.originalname].returncode == 0, stderr[-3000:]
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert lines, stderr[-3000:]
    return [json.loads(line) for line in lines]


@pytest.fixture()
def one_thread() -> None:
    """One torch thread: on two shared cores, spinning OpenMP threads slow small convolutions many times."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_module(**speed: bool) -> AutoencoderModule:
    torch.manual_seed(0)
    model = VideoAutoencoder(block_out_channels=[8, 16], latent_channels=4)
    return AutoencoderModule(copy.deepcopy(model), ema_decay=0.99, **speed)


def test_channels_last_gives_the_same_loss_and_gradients_as_the_default(one_thread: None) -> None:
    video = torch.rand(2, 3, 5, 16, 16) * 2 - 1
    results = []
    for module in (tiny_module(), tiny_module(channels_last=True, compile_networks=False)):
        torch.manual_seed(1)  # the same posterior sample
        loss = module._objective(video, step=0, update=0)[0]
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in module.autoencoder.parameters()]))
    (plain, plain_grads), (fast, fast_grads) = results
    assert tiny_module(channels_last=True).autoencoder.encoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-6)
    for a, b in zip(fast_grads, plain_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("quantizer", [FSQ([8, 5, 5, 5], tokens_per_position=2), GroupLFQ(18, 3), GroupLFQ(12, 2, single_token=True)])
def test_quantizers_read_nothing_back_to_the_host(quantizer: torch.nn.Module) -> None:
    z = torch.randn(2, quantizer.channels, 3, 4, 4, requires_grad=True)
    with SyncCounter() as syncs:
        out = quantizer(z)
        (out.codes.square().mean() + sum(out.losses.values())).backward()
    assert syncs.calls == [] and {"perplexity", "batch_usage"} <= out.stats.keys()


class CountSyncs(Callback):
    """Counts, per training batch, the operations that would make a GPU run wait for the device."""

    def __init__(self) -> None:
        self.per_batch: list[list[str]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        # AdamW's step counters live on the host on a GPU too (unless capturable or fused)
        self.counter = SyncCounter(ignore=["torch/optim/"]).__enter__()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self.counter.__exit__(None, None, None)
        self.per_batch.append(self.counter.calls)


def test_a_training_step_synchronises_only_for_the_non_finite_check(one_thread: None) -> None:
    torch.manual_seed(0)
    module = AutoencoderModule(VideoAutoencoder(block_out_channels=[8, 16], latent_channels=4, bottleneck="fsq",
                                                fsq_levels=[5, 5, 5]), ema_decay=0.99, compile_networks="auto")  # fmt: skip
    batches = [{"video": torch.rand(1, 3, 5, 16, 16) * 2 - 1} for _ in range(3)]
    counter = CountSyncs()
    trainer = Trainer(max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, callbacks=[counter], accelerator="cpu")  # fmt: skip
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))
    for calls in counter.per_batch:  # bool(isfinite(...).all()), once per step
        assert [(name, where.rsplit("/", 1)[-1].split(":")[0]) for name, where in calls] == [("_local_scalar_dense", "module.py")], calls
    assert len(counter.per_batch) == 3
    assert module.autoencoder.encoder._compiled_call_impl is None  # "auto", the presets' setting: no compiling on a CPU


def test_compile_networks_auto_means_on_a_gpu() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert [should_compile(c, d) for c in (True, False, "auto") for d in (cpu, cuda)] == [True, True, False, False, False, True]
    with pytest.raises(ValueError, match="true, false or auto"):
        should_compile("yes", cpu)
    compiled = tiny_module(compile_networks=True).autoencoder
    assert compiled.encoder._compiled_call_impl is not None and compiled.decoder._compiled_call_impl is not None
    # "auto" decides in setup(), from the trainer's device (compiling is lazy: no GPU is needed to wrap)
    module = tiny_module(compile_networks="auto")
    assert module.autoencoder.encoder._compiled_call_impl is None
    module._trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=cuda))  # the device this machine lacks
    module.setup("fit")
    wrapped = module.autoencoder.decoder._compiled_call_impl
    assert wrapped is not None and module.autoencoder.encoder._compiled_call_impl is not None
    module.setup("validate")
    assert module.autoencoder.decoder._compiled_call_impl is wrapped  # once
    assert module.inference_autoencoder.decoder._compiled_call_impl is None  # the EMA copy stays plain


def test_the_networks_compile_to_one_graph_each_in_the_cuda_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    """On CUDA the activations are channels-last-3d (vtok/vae/layout.py), a path the CPU never takes:
    traced in that layout, encoder and decoder are still one graph each, without breaks."""
    monkeypatch.setattr("vtok.vae.layout.network_layout", lambda device: torch.channels_last_3d)
    for bottleneck in ("kl", "fsq"):
        model = VideoAutoencoder(block_out_channels=[8, 16], latent_channels=4, layers_per_block=1, patch_size=2,
                                 bottleneck=bottleneck)  # fmt: skip
        video = torch.randn(1, 3, 5, 16, 16)
        try:
            encoded = torch._dynamo.explain(model.encoder)(video)
            latents = model.quantizer.to_decoder(model.quantizer(model.encoder(video)).latents)
            decoded = torch._dynamo.explain(model.decoder)(latents.contiguous(memory_format=torch.channels_last_3d))
        finally:
            torch._dynamo.reset()  # the traces assumed the patched layout: no later test may reuse them
        assert [(r.graph_count, r.graph_break_count) for r in (encoded, decoded)] == [(1, 0), (1, 0)], bottleneck


@pytest.mark.slow
def test_compiled_networks_train_with_the_adaptive_adversarial_weight(one_thread: None) -> None:
    """The adaptive weight differentiates through the compiled decoder twice (``retain_graph``),
    which compiled backward passes refuse while they donate their buffers (about a minute: compiling)."""
    torch.manual_seed(0)
    module = AutoencoderModule(VideoAutoencoder(block_out_channels=[8, 16], latent_channels=4, layers_per_block=1),
                               adversarial=AdversarialLoss(discriminator="patch3d", channels=8, start_step=1),
                               compile_networks=True)  # fmt: skip
    batches = [{"video": torch.rand(1, 3, 5, 32, 32) * 2 - 1} for _ in range(3)]
    trainer = Trainer(max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, accelerator="cpu")  # fmt: skip
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))
    assert trainer.global_step == 3 and module.skipped_steps == 0
    assert all(torch.isfinite(p).all() for p in module.autoencoder.parameters())


def test_mfu_peaks_tell_the_nvl_parts_from_the_sxm_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks.common import peak_tflops

    peaks = {}
    for name in ("NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe", "NVIDIA H100 NVL", "NVIDIA H200", "NVIDIA H200 NVL"):
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None, name=name: name)
        peaks[name] = peak_tflops("cuda")
    assert list(peaks.values()) == [989.4, 756.0, 835.0, 989.4, 835.0] and peak_tflops("cpu") is None


def test_ema_restored_from_a_state_dict_continues_the_same_average() -> None:
    model = torch.nn.Linear(2, 2)
    ema = ema_copy(model, decay=0.9)
    for value in (1.0, 2.0):
        with torch.no_grad():
            model.weight.fill_(value)
        ema.update_parameters(model)
    resumed = ema_copy(torch.nn.Linear(2, 2), decay=0.9)
    resumed.load_state_dict(ema.state_dict())
    with torch.no_grad():
        model.weight.fill_(3.0)
    for average in (ema, resumed):
        with SyncCounter() as syncs:
            average.update_parameters(model)
        assert syncs.count == (1 if average is resumed else 0)  # the resumed one reads its count once
    torch.testing.assert_close(resumed.module.weight, ema.module.weight)
    assert int(resumed.n_averaged) == int(ema.n_averaged) == 3


def test_train_step_measures_vtok_and_a_baseline_each_in_its_own_process(runs, request) -> None:  # noqa: ANN001
    records = output(runs, request)
    assert [r["model"] for r in records] == ["vtok:kl_4x8x8", "wan", "vidtok"], records
    for record in records:
        assert "error" not in record, record
        assert record["clips_per_s"] > 0 and record["tflop_per_clip"] > 0 and record["params_m"] > 0
        assert record["mfu"] is None and record["peak_tflops"] is None  # a CPU has no bf16 peak in the table
        assert record["memory_kind"] == "cpu_peak_rss_growth" and record["precision"] == "fp32"
        assert {"seconds_per_step", "peak_memory_gib", "achieved_tflops", "host_syncs_per_step", "device"} <= record.keys()
    assert records[0]["host_syncs_per_step"] == 0


def test_a_failing_model_leaves_its_traceback_on_stderr_and_one_error_record(runs, request) -> None:  # noqa: ANN001
    process = runs[request.node.originalname]
    stdout, stderr = process.communicate(timeout=900)
    (record,) = [json.loads(line) for line in stdout.splitlines()]
    assert record["model"] == "vtok" and record["error"].startswith("TypeError: '<' not supported"), record
    assert record["arguments"][record["arguments"].index("--size") + 1] == "16", "which run failed"
    # the child's whole traceback reached the parent's stderr (what gpu_suite.sh keeps in log.txt)
    assert "Traceback (most recent call last)" in stderr and 'vtok/vae/autoencoder.py", line' in stderr, stderr[-3000:]


def test_an_out_of_memory_error_keeps_its_first_words() -> None:
    """torch's out-of-memory message is one line of about 600 characters: its last 300 kept only the allocator's advice."""
    line = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. " + "Of the allocated memory ... " * 20
    assert _failure(1, ["Traceback (most recent call last):\n", line + "\n"], None).startswith(line[:80])


def test_a_benchmark_stopped_by_timeout_records_the_model_it_was_running() -> None:
    """``timeout`` sends SIGTERM to its process group, the benchmark and its child alike: the child's
    output so far reaches stderr, and the benchmark records the model it lost before exiting."""
    command = [sys.executable, "-m", "benchmarks.train_step", *SMALL[:-4], "--steps", "100000", "--warmup", "0",
               "--baselines", ""]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, env=script_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)  # fmt: skip
    seen = []
    for line in process.stderr:  # until the child's own log line arrives through the parent: it is measuring
        seen.append(line)
        if "benchmarks.train_step vtok: 5x16x16 clips" in line:
            break
    assert process.poll() is None, "".join(seen)[-3000:]
    os.killpg(process.pid, signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    (record,) = [json.loads(line) for line in stdout.splitlines()]
    assert record["model"] == "vtok" and record["error"].startswith("SIGTERM reached the benchmark"), record
    assert "benchmarks.train_step vtok: 5x16x16 clips" in record["error"]  # the child's last stderr line


def test_activation_checkpointing_leaves_the_model_flops_as_they_are(one_thread: None) -> None:
    """MFU counts the model's FLOPs: the forward that checkpointing recomputes in backward is not one of them."""
    from benchmarks.common import resolve_run_args
    from benchmarks.train_step import measure, parse_args

    common = [*SMALL, "--baselines", ""]
    plain = measure("vtok", resolve_run_args(parse_args(common)))
    recomputing = measure("vtok", resolve_run_args(parse_args([*common, "--activation-checkpointing"])))
    assert recomputing["activation_checkpointing"] and not plain["activation_checkpointing"]
    assert recomputing["tflop_per_clip"] == plain["tflop_per_clip"] > 0


def test_vidtok_runs_whole_through_its_forward_as_an_fsq_tokenizer(one_thread: None) -> None:
    """VidTok's ``forward`` pads the clip's causal past before encoding (its ``encode`` alone would not)."""
    from benchmarks.models import build_subject

    args = SimpleNamespace(config="configs/fsq_4x8x8.yaml", set=[], baseline_set=[], tiny=True)
    subject = build_subject("vidtok", args)
    assert subject.discrete and subject.compression == (4, 8)
    video = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    with torch.no_grad():
        latents, tokens = subject.encode(video), subject.tokenize(video)
        assert latents.shape == (1, 6, 3, 4, 4) and tokens.shape == (1, 3, 4, 4)  # 1 + (9 - 1) / 4 latent frames
        assert subject.decode(latents).shape == video.shape
    assert torch.isfinite(subject.loss(video))
    with pytest.raises(ValueError, match="FSQ tokenizer"):
        build_subject("vidtok", SimpleNamespace(**{**vars(args), "baseline_set": ["regularizer=kl", "double_z=true"]}))


def test_cogvideox_is_refused_clip_lengths_its_decoder_cannot_rebuild() -> None:
    from benchmarks.models import Subject

    cogvideox = Subject("cogvideox", torch.nn.Identity(), (4, 8))
    cogvideox.check(9, 16)  # 3 latent frames: fine
    with pytest.raises(ValueError, match="1 \\+ 8k frames only .* got frames=13; use 9 or 17"):
        cogvideox.check(13, 16)
    Subject("wan", torch.nn.Identity(), (4, 8)).check(13, 16)  # the other 4x models take 1 + 4k


def test_inference_reports_encode_decode_and_tokenize_rates(runs, request) -> None:  # noqa: ANN001
    (record,) = output(runs, request)
    assert record["model"] == "vtok:fsq_4x8x8"
    for key in ("encode", "decode", "tokenize", "encode_decode"):
        assert record[f"{key}_frames_per_s"] > 0
    assert record["encode_tflop_per_clip"] > 0 and record["latent_shape"] == [6, 2, 2, 2]


def test_quantizers_compare_with_the_reference_and_take_their_share_of_a_step(runs, request) -> None:  # noqa: ANN001
    records = output(runs, request)
    rows = [r for r in records if r["benchmark"] == "quantizer"]
    assert sorted(r["quantizer"] for r in rows) == ["vqp_fsq", "vqp_lfq", "vtok_fsq", "vtok_gq"]
    assert all(r["codes"] == 2**16 and r["ms_per_step"] > 0 and r["tensor_peak_bytes"] > 0 for r in rows)
    (memory,) = [r for r in records if r["benchmark"] == "gq_loss_memory"]
    assert memory["lfq_over_gq"] >= 16, memory  # the target, counted exactly
    (share,) = [r for r in records if r["benchmark"] == "quantizer_share"]
    assert share["preset"] == "gq_4x8x8" and 0 < share["share_of_step"] < 1 and share["train_step_seconds"] > 0
    assert "train_step_error" not in share
    assert share["train_step_threads"] == share["threads"] == 2, "the step timed at the bottleneck's thread count"
    # --step-json names no file: the compiled share is missing, and says why
    assert share["share_of_compiled_step"] is None and share["compiled_step_error"].startswith("cannot read no/such/")
    # the training step's own line stays in its child process: no stray "train_step" record
    assert {r["benchmark"] for r in records} == {"quantizer", "gq_loss_memory", "quantizer_share"}


def test_quantizers_take_the_compiled_step_from_a_train_step_line_of_the_same_clip(tmp_path: Path) -> None:
    from benchmarks.common import device_name
    from benchmarks.quantizers import compiled_step, share

    args = SimpleNamespace(frames=17, size=256, batch_size=2, precision="fp32", tiny=False, device="cpu")
    line = {"benchmark": "train_step", "model": "vtok:kl_4x8x8", "frames": 17, "size": 256, "batch_size": 2, "precision": "fp32",
            "tiny": False, "overrides": [], "compile": True, "seconds_per_step": 0.15, "device": device_name("cpu")}  # fmt: skip
    lines = [{**line, "compile": False, "seconds_per_step": 0.19},  # eager
             line,  # compiled, another preset of the same encoder and decoder
             {**line, "model": "vtok:gq_4x8x8", "size": 128, "seconds_per_step": 0.05},  # another clip size
             {**line, "model": "vtok:gq_4x8x8", "overrides": ["patch_size=1"], "seconds_per_step": 0.6},  # another layout
             {"benchmark": "train_step", "model": "vtok", "error": "out of memory"}]  # fmt: skip
    path = tmp_path / "train_step.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert compiled_step(str(path), "configs/gq_4x8x8.yaml", args) == {"compiled_train_step_seconds": 0.15,
                                                                        "compiled_step_of": "vtok:kl_4x8x8"}  # fmt: skip
    path.write_text(path.read_text() + json.dumps({**line, "model": "vtok:gq_4x8x8", "seconds_per_step": 0.16}) + "\n")
    assert compiled_step(str(path), "configs/gq_4x8x8.yaml", args)["compiled_step_of"] == "vtok:gq_4x8x8"  # its own first
    other_size = SimpleNamespace(**{**vars(args), "size": 64})
    assert "no compiled vtok" in compiled_step(str(path), "configs/gq_4x8x8.yaml", other_size)["compiled_step_error"]
    assert share({"ms_per_step": 3.0}, 0.15) == 0.02 and share({"error": "out of memory"}, 0.15) is None


def test_data_times_files_shards_and_h264_sources_with_both_readers(runs, request) -> None:  # noqa: ANN001
    records = output(runs, request)
    paths = [(r["benchmark"], r.get("path"), r.get("backend")) for r in records]
    assert paths == [("prepare", None, None), ("data_loading", "files", None), ("data_loading", "shards", None),
                     ("data_loading", "sources", "decord"), ("data_loading", "sources", "pyav")]  # fmt: skip
    for record in records[3:]:
        assert record["source_height"] == 48 and record["clips_per_s"] > 0
        assert record["loader_over_step"] == pytest.approx(record["clips_per_s"] / 2.0, rel=0.01)


def test_quality_at_budget_trains_wan_by_the_same_loop(runs, request) -> None:  # noqa: ANN001
    (record,) = output(runs, request)
    assert record["model"] == "wan" and record["steps"] == 1 and record["clips_seen"] == 1
    assert record["val_clips"] == 5 and record["val_psnr_db"] > 0
    assert record["val_psnr_real_video_db"] is not None  # the carphone clip was found and held out
    assert record["cudnn_benchmark"] is True and "compile" not in record  # vtok's speed options are vtok's only
    # the one step counts against the budget (compilation and autotuning are paid by a real run too)
    assert record["first_step_s"] == record["train_seconds"] > 0
    assert record["psnr_curve"] == [{"seconds": record["train_seconds"], "steps": 1, "val_psnr_db": record["val_psnr_db"]}]
    # --baseline-set narrows Wan past its test size, and the record says so
    import diffusers

    narrowed = diffusers.AutoencoderKLWan(**{**TINY["wan"], "base_dim": 8})
    assert record["overrides"] == ["base_dim=8"]
    assert record["params_m"] == round(sum(p.numel() for p in narrowed.parameters()) / 1e6, 2)


def test_quality_summary_says_from_when_vtok_stayed_at_each_baselines_final_psnr() -> None:
    from benchmarks.quality_at_budget import summary

    curve = [{"seconds": s, "steps": 10 * s, "val_psnr_db": p} for s, p in [(15, 12.0), (30, 14.0), (45, 13.0), (60, 15.0)]]
    records = [{"model": "vtok:kl_4x8x8", "val_psnr_db": 15.0, "psnr_curve": curve},
               {"model": "wan", "val_psnr_db": 13.5}, {"model": "ltx", "val_psnr_db": 15.5}, {"model": "cogvideox", "error": "oom"}]  # fmt: skip
    result = summary(records, 60.0)
    assert result["val_psnr_db"] == {"vtok:kl_4x8x8": 15.0, "wan": 13.5, "ltx": 15.5}
    assert result["vtok_minus_baseline_db"] == {"wan": 1.5, "ltx": -0.5}
    # 14 dB at 30 s touched wan's 13.5, but the curve fell back under it at 45 s
    assert result["vtok_seconds_to_stay_at_baseline_final_psnr"] == {"wan": 60, "ltx": None}
    assert summary(records[1:], 60.0)["vtok_seconds_to_stay_at_baseline_final_psnr"] == {}


def test_footprint_counts_flops_and_memory_on_fake_tensors(runs, request) -> None:  # noqa: ANN001
    records = output(runs, request)
    assert [r["model"] for r in records] == ["vtok:kl_4x8x8", "wan", "vidtok"]  # VidTok's FSQ: real weights, fake inputs
    for record in records:
        assert record["train_tflop_per_clip"] > record["encode_tflop_per_clip"] > 0
        assert record["estimated_train_peak_gib"] > 0 and set(record["h100_clips_per_s_at_mfu"]) == {"0.4"}


def test_roofline_costs_every_operator_of_a_step_on_fake_tensors(runs, request) -> None:  # noqa: ANN001
    records = output(runs, request)
    assert [r["model"] for r in records] == ["vtok:kl_4x8x8", "wan"]
    for record in records:
        shares = record["time_share_by_category"]
        assert shares["convolution"] > 0 and sum(shares.values()) == pytest.approx(1, abs=0.02)
        assert 0 < record["eager_mfu_upper_bound"] <= 1 and record["eager_step_ms_lower_bound"] > 0
        assert len(record["top_ops"]) == 3 and record["estimated_peak_gib"] > 0
        assert sum(op["share"] for op in record["top_ops"]) <= 1
    assert records[0]["time_share_by_category"]["normalisation"] > 0  # vtok's RMS norms, costed as fused kernels


def test_layout_copies_counts_the_copies_of_a_cuda_step_on_fake_tensors(capsys: pytest.CaptureFixture[str]) -> None:
    import torch.nn.functional as F

    from benchmarks.layout_copies import main

    patched = (F.rms_norm, F.interpolate)
    records = {}
    for layout in ([], ["--channels-last"]):  # in this process: fake tensors, no compute
        main([*SMALL[:-4], "--top", "3", *layout])
        (line,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
        records[bool(layout)] = json.loads(line)
    assert (F.rms_norm, F.interpolate) == patched  # CUDA's rules are patched in for the run only
    for channels_last, record in records.items():
        assert record["model"] == "vtok:kl_4x8x8" and record["channels_last"] is channels_last
        assert {"convolutions", "cudnn_formats", "conv_input_layouts", "conv_grad_output_layouts", "layout_copies",
                "dtype_casts", "cat", "slice_backward_zero_fills", "cudnn_internal_transposes", "copy_kernel_launches",
                "top_sites"} <= record.keys()  # fmt: skip
        convs = record["convolutions"]["forward"]
        assert convs == record["convolutions"]["backward"] > 0
        # every convolution's input is already channels-last-3d, so cuDNN never transposes
        assert record["conv_input_layouts"] == {"NDHWC": convs} == record["cudnn_formats"]["forward"]
        assert all(d["count"] == 0 for d in record["cudnn_internal_transposes"].values())
        assert record["copy_kernel_launches"] == record["layout_copies"]["events"] + record["dtype_casts"]["events"]
        assert record["cat"]["events"] > 0 and record["slice_backward_zero_fills"]["gb"] > 0  # causal padding
        sites = record["top_sites"]
        assert len(sites) == 3 and [s["gb"] for s in sites] == sorted((s["gb"] for s in sites), reverse=True)
        assert all(s.keys() == {"op", "phase", "site", "layouts", "count", "gb"} for s in sites)
        assert all(s["phase"] in ("fwd", "bwd") and ".py:" in s["site"] and s["count"] > 0 for s in sites)
    # channels-first weights are copied to channels-last for each convolution; --channels-last stores them so
    (plain, fast), convs = records.values(), records[False]["convolutions"]["forward"]
    assert plain["conv_weight_layouts"] == {"NCDHW": convs} and fast["conv_weight_layouts"] == {"NDHWC": convs}
    assert fast["layout_copies"]["events"] < plain["layout_copies"]["events"]


def test_profile_step_times_the_operators_of_a_real_step(runs, request) -> None:  # noqa: ANN001
    (record,) = output(runs, request)
    assert record["model"] == "vtok:kl_4x8x8" and record["step_ms"] > 0 and record["op_ms_per_step"] > 0
    assert record["share_by_category"]["convolution"] > 0 and sum(record["share_by_category"].values()) == pytest.approx(1, abs=0.02)
    assert len(record["top_ops"]) == 3 and all(op["name"].startswith("aten::") for op in record["top_ops"])
    assert record["top_kernels"] == []  # a CPU run has no device kernels
    memory = record["memory_gib"]
    assert memory["saved_for_backward"] > memory["weights"] > 0 and memory["peak"] is None  # no allocator peak on a CPU
