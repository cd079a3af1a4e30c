"""Loader workers come from a fork server, never a fork of the training process (whose threads' locks a fork
copies: a rank's worker hung inside os.fork in CI), and the group's stop signals leave the server to the main process."""

from __future__ import annotations

import multiprocessing.forkserver
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from tests.helpers import small_frame_export
from vtok.data import write_sample_clips
from vtok.data.datamodule import VideoDataModule
from vtok.data.fork_server import fork_server_context
from vtok.data.worker_signals import loader_worker_init

GROUP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


def blocked_signals(pid: int | str) -> set[int]:
    """The signals ``pid`` blocks, from /proc."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    mask = next(int(line.split()[1], 16) for line in lines if line.startswith("SigBlk"))
    return {number for number in range(1, 65) if mask >> (number - 1) & 1}


class WhoAmI(Dataset):
    """Item: the worker's pid, its parent's, the group's signals it blocks, and whether it ignores SIGTERM."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> tuple[int, int, list[int], bool]:
        blocked = sorted(blocked_signals("self") & set(GROUP_SIGNALS))
        return os.getpid(), os.getppid(), blocked, signal.getsignal(signal.SIGTERM) == signal.SIG_IGN


def test_loader_workers_come_from_the_fork_server_that_blocks_the_groups_signals_and_take_their_own_back() -> None:
    context = fork_server_context()
    assert context is not None and context.get_start_method() == "forkserver"
    server = multiprocessing.forkserver._forkserver._forkserver_pid  # noqa: SLF001 (where else would its pid be)
    assert set(GROUP_SIGNALS) <= blocked_signals(server), "a kill -- -PGID that stops the run would end the server first"
    assert not set(GROUP_SIGNALS) & blocked_signals(os.getpid()), "this process gets its signals as before"
    loader = DataLoader(WhoAmI(), batch_size=None, num_workers=2, multiprocessing_context=context,
                        worker_init_fn=loader_worker_init())  # fmt: skip
    for pid, parent, blocked, ignores_sigterm in loader:
        assert pid != os.getpid() and parent == server, "forked by the server, not by this process"
        assert blocked == [] and ignores_sigterm, "the worker ignores the stop signals itself, and takes Ctrl-C"


def test_a_process_forked_after_the_server_started_starts_a_server_of_its_own() -> None:
    """multiprocessing's fork server state came with the fork: the child waited on the parent's server as if
    it were its own child and failed (a rank that ddp_fork forks after an earlier run in the same program)."""
    fork_server_context()
    parents = multiprocessing.forkserver._forkserver._forkserver_pid  # noqa: SLF001
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child reports its workers' parent, or the error, and leaves without running pytest's exit
        try:
            loader = DataLoader(WhoAmI(), batch_size=None, num_workers=1, multiprocessing_context=fork_server_context())
            message = str(next(iter(loader))[1])
        except BaseException as error:  # noqa: BLE001 (any failure is the report)
            message = f"{type(error).__name__}: {error}"
        os.write(write, message.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as report:
        answer = report.read()
    os.waitpid(child, 0)
    assert answer.isdigit() and int(answer) not in (parents, os.getpid()), answer


def test_the_data_modules_loaders_start_their_workers_from_the_fork_server(video_folder: Path) -> None:
    module = VideoDataModule(path=str(video_folder), val_fraction=0.25, num_frames=5, size=32, num_workers=2, batch_size=2)
    module.setup("fit")
    for loader in (module.train_dataloader(), module.val_dataloader()):
        assert loader.multiprocessing_context.get_start_method() == "forkserver"
        assert next(iter(loader))["video"].shape[1:] == torch.Size([3, 5, 32, 32])
    in_process = VideoDataModule(path=str(video_folder), num_frames=5, size=32, num_workers=0, batch_size=2)
    in_process.setup("fit")
    assert in_process.train_dataloader().multiprocessing_context is None


KILLED_OUTRIGHT = """
import multiprocessing.forkserver, sys, time
from tests.helpers import small_frame_export
from vtok.data import write_sample_clips
from vtok.data.datamodule import VideoDataModule

if __name__ == "__main__":
    module = VideoDataModule(path=sys.argv[1], val_fraction=0.25, num_frames=5, size=32, num_workers=2, batch_size=2)
    module.setup("fit")
    loaders = [module.train_dataloader(), module.val_dataloader()]  # as a fit holds them: 4 persistent workers
    for loader in loaders:
        next(iter(loader))
    workers = [child.pid for child in multiprocessing.active_children()]
    print(" ".join(map(str, [multiprocessing.forkserver._forkserver._forkserver_pid, *workers])), flush=True)
    time.sleep(600)
"""


def test_a_main_process_killed_outright_takes_the_fork_server_and_its_workers_with_it(tmp_path: Path, video_folder: Path) -> None:
    """The server lives while any process holds its 'alive' pipe, its workers among them, and a torch worker lives
    while its parent, the server, does: after a kill -9 of the main process all of them waited on each other for good."""
    script = tmp_path / "killed.py"
    script.write_text(KILLED_OUTRIGHT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    process = subprocess.Popen([sys.executable, str(script), str(video_folder)], stdout=subprocess.PIPE, text=True, env=env)
    pids = [int(pid) for pid in process.stdout.readline().split()]
    assert len(pids) == 5, "the server and four workers"
    process.kill()
    process.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
        time.sleep(0.2)
    left = [pid for pid in pids if Path(f"/proc/{pid}").exists()]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, "the fork server or a worker outlived its main process"


def test_a_worker_whose_caller_let_its_loader_go_before_it_started_ends_without_a_traceback(tmp_path: Path) -> None:
    """Ctrl-C while a loader's workers start: the main process's teardown unlinks the queues' semaphores before the
    server's child reads its start request, and each child printed multiprocessing's traceback under the one-line
    stop (FileNotFoundError in SemLock._rebuild)."""
    script = tmp_path / "abandon.py"
    script.write_text(
        "import gc\nfrom vtok.data.fork_server import fork_server_context\n\nif __name__ == '__main__':\n"
        "    context, codes = fork_server_context(), []\n    for _ in range(3):\n"
        "        queue = context.Queue()\n        process = context.Process(target=print, args=(queue,))\n"
        "        process.start()\n        del queue\n        gc.collect()  # its semaphores unlinked at once\n"
        "        process.join(60)\n        codes.append(process.exitcode)\n    print(codes)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[1, 1, 1]", done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]


def test_a_script_that_calls_vtok_without_the_main_guard_is_told_to_add_it(tmp_path: Path) -> None:
    """Each worker re-runs a script with no ``if __name__ == "__main__":``; its vtok call met the calling run's own lock
    on --out ("another vtok evaluate is still writing into --out") where Python's advice would have said to add the
    guard: said nowhere (and `vtok prepare`'s pool restarted such workers, with that message, for good)."""
    write_sample_clips(tmp_path / "clips", count=2, frames=9, height=32, width=32)
    model = small_frame_export(tmp_path / "export")
    script = tmp_path / "unguarded.py"
    script.write_text(
        "from vtok.cli import main\n"
        f"main(['evaluate', '--model', {str(model)!r}, '--data', {str(tmp_path / 'clips')!r}, '--out', "
        f"{str(tmp_path / 'out')!r}, '--workers', '2', '--pictures', '0', '--device', 'cpu', '--frames', '9', '--size', '32'])\n"
    )
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "Call vtok under `if __name__ == \"__main__\":` in that script" in done.stderr, done.stderr[-2000:]
    assert "still writing into --out" not in done.stderr


def test_an_unguarded_script_running_prepare_with_workers_stops_once(tmp_path: Path) -> None:
    """`vtok prepare --workers 2` from a script without the guard: multiprocessing's pool replaced each worker that
    died as it started, for good, and the run printed the advice hundreds of times until killed."""
    write_sample_clips(tmp_path / "clips", count=1, frames=9, height=32, width=32)
    script = tmp_path / "unguarded.py"
    script.write_text(
        "from vtok.cli import main\n"
        f"main(['prepare', '--data', {str(tmp_path / 'clips')!r}, '--out', {str(tmp_path / 'out')!r}, '--workers', '2', "
        "'--no-progress'])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert done.stderr.count("Call vtok under `if __name__ == \"__main__\":` in that script") == 1, done.stderr[-2000:]
    assert "vtok's worker processes cannot start" in done.stderr, done.stderr[-2000:]
