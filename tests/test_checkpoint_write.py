"""A checkpoint the disk cannot take: the error says what was written and why, and no partial file is left."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

_SAVE_UNDER_A_FILE_SIZE_LIMIT = textwrap.dedent(
    """
    import resource, signal, sys, torch
    from vtok.training.checkpoint_io import AtomicCheckpointIO, CheckpointWriteError
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    try:
        AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.zeros(1 << 20)}}, sys.argv[1])
    except CheckpointWriteError as error:
        print(error)
    """
)


def test_a_checkpoint_write_that_fails_says_how_far_it_got_and_leaves_nothing(tmp_path: Path) -> None:
    """torch's writer reported a failed write as ``unexpected pos 704 vs 598``, which names neither the file nor
    the disk; a run whose disk filled up stopped with that line alone."""
    destination = tmp_path / "checkpoints" / "step=50.ckpt"
    result = subprocess.run(
        [sys.executable, "-c", _SAVE_UNDER_A_FILE_SIZE_LIMIT, str(destination)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    message = result.stdout
    assert f"could not write the checkpoint {destination}: 0.00 GiB written" in message, message
    assert "not for want of space: a file size limit (ulimit -f)" in message, message
    assert "unexpected pos" in message, "the writer's own error is kept at the end"
    assert list(destination.parent.iterdir()) == [], "no partial file is left"
