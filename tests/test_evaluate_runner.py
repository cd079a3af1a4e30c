"""The evaluation loop: an I3D detector that cannot score the clips skips FVD with the reason, said at once
and kept in metrics.json, whether the detector fails in an operation or raises itself; running out of memory
in it is an error that names the fix; the speeds leave out the first pass's one-off costs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.helpers import lock_held_elsewhere
from vtok import VideoAutoencoder
from vtok.cli import main
from vtok.commands.evaluate import model_record
from vtok.commands.protocol import ClipProtocol
from vtok.data import ClipSpec, VideoClipDataset, list_files
from vtok.evaluation import runner
from vtok.evaluation.detectors import I3D_FILE


class FailingI3D(nn.Module):
    """An I3D stand-in that fails inside TorchScript on clips under 9 frames, as the real one does on short clips."""

    def forward(
        self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False
    ) -> torch.Tensor:
        return F.max_pool3d(x, [9, 1, 1]).flatten(1)


class RefusingI3D(nn.Module):
    """An I3D stand-in that raises its own error on short clips: TorchScript turns it into ``torch.jit.Error``,
    which is no ``RuntimeError``."""

    def forward(
        self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False
    ) -> torch.Tensor:
        if x.shape[2] < 9:
            raise RuntimeError("input too short")
        return x.mean((2, 3, 4))


def evaluate(fsq_run: dict[str, Path], video_folder: Path, out: Path) -> dict:
    main(["evaluate", "--model", str(fsq_run["export"]), "--data", str(video_folder), "--out", str(out),
          "--max-videos", "2", "--pictures", "0"])  # fmt: skip
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.parametrize("detector", [FailingI3D, RefusingI3D])
def test_a_failing_detector_keeps_the_cause_says_it_and_the_report_names_no_detector(
    detector: type[nn.Module], fsq_run: dict[str, Path], video_folder: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    path = tmp_path / "torch" / "hub" / "checkpoints" / I3D_FILE
    path.parent.mkdir(parents=True)
    torch.jit.script(detector()).save(str(path))
    out = tmp_path / "eval"
    with caplog.at_level("WARNING", logger="vtok"):
        metrics = evaluate(fsq_run, video_folder, out)
    assert metrics["fvd"] is None and metrics["fvd_weights_sha256"] is not None
    reason = metrics["fvd_skipped"]
    assert reason.startswith("the I3D detector failed on clips of shape (3, 5, 32, 32): RuntimeError: "), reason
    assert ("Output size is too small" if detector is FailingI3D else "input too short") in reason, reason
    assert "\n" not in reason
    assert f"FVD is skipped: {reason}" in caplog.text, "said when it happens, not only in metrics.json"
    assert "FVD detector sha256" not in (out / "report.md").read_text()


class OutOfMemoryI3D:
    """Stands in for a detector on a GPU that runs out of memory (no CPU run can)."""

    sha256 = "0" * 64

    def __call__(self, video: torch.Tensor) -> torch.Tensor:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_a_detector_out_of_memory_is_an_error_naming_the_batch_size_not_a_skipped_fvd(
    fsq_run: dict[str, Path], video_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:  # fmt: skip
    monkeypatch.setattr(runner, "load_i3d", lambda weights, device: (OutOfMemoryI3D(), None))
    with pytest.raises(SystemExit) as stop:
        evaluate(fsq_run, video_folder, tmp_path / "eval")
    assert stop.value.code == 2
    error = capsys.readouterr().err
    assert "the I3D detector ran out of memory on 2 clips of shape (3, 5, 32, 32): give a smaller --batch-size" in error
    assert not (tmp_path / "eval" / "metrics.json").exists()


def test_the_first_batch_is_coded_once_untimed_before_the_timed_passes(video_folder: Path, tmp_path: Path) -> None:
    """The first call pays one-off costs (kernel loading, cuDNN's algorithm search): timed, it made every
    evaluation's frames/s a cold figure."""
    model = VideoAutoencoder(block_out_channels=[8, 16], latent_channels=4, layers_per_block=1)
    calls = {"encoder": 0, "decoder": 0}
    for name in calls:
        getattr(model, name).register_forward_hook(lambda *_, name=name: calls.__setitem__(name, calls[name] + 1))
    dataset = VideoClipDataset(list_files(video_folder)[:3], ClipSpec(5), (32, 32), train=False)
    settings = runner.EvaluationSettings(torch.device("cpu"), batch_size=2, picture_videos=0)
    protocol = ClipProtocol(frames=5, height=32, width=32, stride=1, fps=None).as_dict()
    metrics = runner.evaluate(model, dataset, tmp_path / "eval", settings, protocol, model_record("in memory", model, {}))
    assert calls == {"encoder": 3, "decoder": 3}, "two batches, the first twice"
    assert metrics["videos"] == 3 and metrics["encode_frames_per_s"] > 0


def test_a_second_evaluation_into_a_busy_out_is_refused_and_a_killed_ones_lock_is_gone(
    fsq_run: dict[str, Path], video_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Two evaluations into one --out at once replaced each other's metrics.json and deleted each other's pictures
    (each took the other's for an earlier run's)."""
    out = tmp_path / "eval"
    with lock_held_elsewhere(out, ".evaluating.lock"):  # as an evaluation into out still running holds it
        with pytest.raises(SystemExit) as stopped:
            evaluate(fsq_run, video_folder, out)
        assert stopped.value.code == 2
        assert f"another vtok evaluate is still writing into --out {out}: give this one another --out" in capsys.readouterr().err
        assert not (out / "metrics.json").exists()
    assert evaluate(fsq_run, video_folder, out)["videos"] == 2  # a killed holder's lock went with it


def test_the_outputs_name_the_data_and_the_weights_by_their_hash(
    fsq_run: dict[str, Path], video_folder: Path, tmp_path: Path
) -> None:
    """metrics.json and report.md named the model's path only, not the data, nor which weights: an export
    moved or renamed, or a checkpoint overwritten since, left no way to tell which weights gave the numbers."""
    link = tmp_path / "data"
    link.symlink_to(video_folder)
    from_export = evaluate(fsq_run, link, tmp_path / "export")
    main(["evaluate", "--model", str(fsq_run["checkpoint"]), "--data", str(video_folder), "--out", str(tmp_path / "ckpt"),
          "--max-videos", "2", "--pictures", "0"])  # fmt: skip
    from_checkpoint = json.loads((tmp_path / "ckpt" / "metrics.json").read_text())
    assert from_export["data"] == {"path": str(link), "real_path": str(video_folder.resolve())}
    assert from_checkpoint["data"] == {"path": str(video_folder), "real_path": str(video_folder.resolve())}
    sha = from_export["model"]["weights_sha256"]
    assert len(sha) == 64 and sha == from_checkpoint["model"]["weights_sha256"]  # the same weights, either file
    report = (tmp_path / "export" / "report.md").read_text()
    assert f"Weights sha256: `{sha}`." in report
    assert f"Data: `{link}` (real path `{video_folder.resolve()}`)." in report


def test_a_rerun_stopped_before_its_metrics_leaves_the_earlier_evaluation_as_it_was(
    fsq_run: dict[str, Path], video_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rerun into the same --out wrote its pictures over the earlier run's as it went: stopped before its
    metrics.json, the folder held the earlier report beside pictures of the new run (another checkpoint, say)."""
    out = tmp_path / "eval"
    command = ["evaluate", "--model", str(fsq_run["export"]), "--data", str(video_folder), "--out", str(out), "--max-videos", "3"]
    main([*command, "--pictures", "2"])
    before = {path.relative_to(out): path.read_bytes() for path in out.rglob("*") if path.is_file()}
    assert len([name for name in before if name.parent.name == "pictures"]) == 4  # a png and an mp4 each
    with monkeypatch.context() as patch:  # stopped once the pictures were written, before metrics.json
        patch.setattr(runner, "write_outputs", lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
        with pytest.raises(SystemExit, match="130"):
            main([*command, "--pictures", "3", "--decode-timestep", "0.5"])  # other reconstructions, one more picture
    after = {path.relative_to(out): path.read_bytes() for path in out.rglob("*") if path.is_file()}
    assert after == before
    main([*command, "--pictures", "1"])
    (picture,) = json.loads((out / "metrics.json").read_text())["pictures"]
    assert sorted(f"pictures/{path.name}" for path in (out / "pictures").iterdir()) == sorted([picture["grid"], picture["video"]])
    assert not (out / ".pictures-partial").exists()


def test_the_pictures_a_killed_evaluation_staged_are_no_data(
    fsq_run: dict[str, Path], video_folder: Path, tmp_path: Path
) -> None:
    """An evaluation killed before its metrics.json (SIGKILL, the OOM killer) leaves its staged pictures: a later one
    over a folder holding that --out scored the side-by-side videos as data (the hidden folder is listed too)."""
    data = tmp_path / "val"
    data.mkdir()
    video = sorted(video_folder.glob("*.mp4"))[0]
    (data / video.name).write_bytes(video.read_bytes())
    staged = data / "eval_a" / ".pictures-partial"
    staged.mkdir(parents=True)
    (staged / "side_by_side.mp4").write_bytes(video.read_bytes())  # what the killed run wrote: a video that decodes
    main(["evaluate", "--model", str(fsq_run["export"]), "--data", str(data), "--out", str(data / "eval_b"), "--pictures", "0"])
    metrics = json.loads((data / "eval_b" / "metrics.json").read_text())
    assert (metrics["videos"], metrics["skipped_files"]) == (1, 0)
