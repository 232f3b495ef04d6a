"""Class 4: one writer per run and per sweep; workers die with their parent."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clihelpers import SRC, one_line_error, run_cli
from descentlab import fit
from descentlab.errors import CheckpointError
from descentlab.fsio import WriterLock

HOLD = """
import sys, time
from descentlab.fsio import WriterLock
WriterLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(60)
"""


def _holder(folder: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(SRC)},
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.parametrize("n", [1, 3])
def test_a_second_writer_is_refused_until_the_holder_dies(tmp_path, n):
    for _ in range(n):
        holder = _holder(tmp_path)
        with pytest.raises(CheckpointError, match=f"pid {holder.pid}@"):
            WriterLock(tmp_path).acquire()
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        WriterLock(tmp_path).acquire().release()  # a dead holder never blocks


def test_resume_of_a_run_in_use_is_refused(capsys, tmp_path):
    run = tmp_path / "r"
    fit("logreg", "digits", max_epochs=1, quiet=True, out=str(run))
    (run / "summary.json").unlink()  # looks interrupted: resumable
    holder = _holder(run)
    try:
        code, _, err = run_cli(capsys, "train", "--resume", str(run), "--quiet")
        one_line_error(code, err, "in use by another descentlab process", f"pid {holder.pid}")
    finally:
        holder.kill()
        holder.wait()
    code, _, err = run_cli(capsys, "train", "--resume", str(run), "--quiet")
    assert code == 0, err


def test_a_second_sweep_on_the_same_folder_is_refused(capsys, tmp_path):
    out = tmp_path / "sweep"
    out.mkdir()
    holder = _holder(out)
    try:
        code, _, err = run_cli(
            capsys, "compare", "--dataset", "digits", "--batch-size", "32", "--out", str(out)
        )
        one_line_error(code, err, "in use", "sweep")
    finally:
        holder.kill()
        holder.wait()


WORKER = """
import os, sys, time
from descentlab.fsio import die_with_parent
if os.fork() == 0:
    die_with_parent()
    print(os.getpid(), flush=True)
    time.sleep(60)
    os._exit(0)
time.sleep(60)
"""


def test_a_worker_exits_when_its_parent_is_killed():
    parent = subprocess.Popen(
        [sys.executable, "-c", WORKER],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(SRC)},
        text=True,
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(child, signal.SIGKILL)
    raise AssertionError("the worker outlived its parent")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_kill_9_of_compare_leaves_no_workers_and_a_rerun_works(tmp_path):
    out = tmp_path / "sweep"
    argv = [
        sys.executable, "-m", "descentlab", "compare", "--dataset", "digits",
        "--lr", "0.01", "0.02", "0.03", "0.04", "--max-epochs", "20", "--jobs", "2",
        "--out", str(out), "--no-report",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    parent = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    pids: set[int] = set()
    deadline = time.monotonic() + 120
    while not pids and time.monotonic() < deadline:
        for status in out.glob("runs/*/sweep_run.json"):
            with contextlib.suppress(ValueError, KeyError, OSError):
                pids.add(json.loads(status.read_text())["pid"])
        time.sleep(0.2)
    assert pids, "no run started"
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(p) for p in pids), "workers outlived the killed sweep"
    rerun = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
