"""Loader workers write vtok's warnings as the main process does."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # this checkout's vtok, whichever one pip installed
SCRIPT = """
import logging
import sys
import time
from vtok.console import show_vtok_messages
from vtok.data.datamodule import VideoDataModule

if __name__ == "__main__":
    show_vtok_messages()
    own = logging.FileHandler(sys.argv[2])  # a user's log file, with a formatter that cannot be pickled
    own.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    own.formatter.converter = lambda seconds: time.gmtime(seconds)
    logging.getLogger("vtok").addHandler(own)
    data = VideoDataModule(shards=sys.argv[1], num_frames=5, size=32, batch_size=1, num_workers=1)
    data.setup("fit")
    print(len(list(data.train_dataloader())), "batches")
"""


def test_a_loader_workers_warning_carries_the_vtok_prefix(shard_dir: Path, tmp_path: Path) -> None:
    """A worker started by the fork server had no handler: its stale-index warning came out bare, and a log
    filtered on `vtok WARNING` lost it in every run with loader workers. A user's own handler on the vtok logger
    neither doubles it nor, with a formatter that cannot be pickled, stops the loader. (A process of its own: the
    fork server keeps the stderr it started with, which a test's capture has replaced since.)"""
    folder = tmp_path / "shards"
    shutil.copytree(shard_dir / "shards", folder)
    index = json.loads((folder / "index.json").read_text())
    index["shards"][0]["samples"] = 3  # it holds 2
    (folder / "index.json").write_text(json.dumps(index))
    (tmp_path / "stream.py").write_text(SCRIPT)
    done = subprocess.run([sys.executable, str(tmp_path / "stream.py"), str(folder), str(tmp_path / "own.log")],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert done.returncode == 0 and "batches" in done.stdout, done.stderr
    stale = [line for line in done.stderr.splitlines() if "index.json says 3" in line]
    assert len(stale) == 1 and stale[0].startswith("vtok WARNING: "), done.stderr  # one worker, one epoch: once
