"""A sweep on a real Dask cluster (``dask scheduler`` + two ``dask worker`` on 127.0.0.1),
one worker SIGKILLed mid-sweep: the sweep still completes, equal to the local executor's,
with no run lost and none run twice."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("dask.distributed")

from descentlab.cli.main import main
from descentlab.errors import ConfigError
from descentlab.experiments.dask_executor import DaskExecutor
from descentlab.experiments.store import RESULTS_CSV, RUN_STATUS, RUNS_DIR

DASK = Path(sys.executable).parent / "dask"
SRC = str(Path(__file__).parents[2] / "src")
SWEEP = [
    "compare",
    "--dataset",
    "digits",
    "--model",
    "mlp",
    "--hidden",
    "32",
    "--optimizer",
    "sgd",
    "--lr",
    "0.05,0.1",
    "--seeds",
    "2",
    "--batch-size",
    "20",
    "--max-epochs",
    "12",
    "--threads",
    "1",
    "--no-report",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    if not DASK.is_file():
        pytest.skip("the dask command is not installed next to this python")
    env = {
        **os.environ,
        "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "OMP_NUM_THREADS": "1",
    }
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    log = (tmp_path / "dask.log").open("wb")
    workdir = tmp_path / "workers"  # not the tests' working folder
    workdir.mkdir()
    procs = [
        subprocess.Popen(
            [
                str(DASK),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-dashboard",
            ],
            env=env,
            stdout=log,
            stderr=log,
        )
    ]
    try:
        _wait_port(port)
        for i in range(2):
            procs.append(
                subprocess.Popen(
                    [
                        str(DASK),
                        "worker",
                        address,
                        "--host",
                        "127.0.0.1",
                        "--nthreads",
                        "1",
                        "--nworkers",
                        "1",
                        "--no-nanny",
                        "--no-dashboard",
                        "--name",
                        f"w{i}",
                        "--local-directory",
                        str(tmp_path / f"w{i}"),
                    ],
                    env=env,
                    stdout=log,
                    stderr=log,
                    cwd=workdir,
                )
            )
        yield address, procs
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        log.close()


def _results(sweep: Path) -> dict[str, dict[str, Any]]:
    with (sweep / RESULTS_CSV).open(newline="") as f:
        rows = list(csv.DictReader(f))
    names = [r["name"] if "name" in r else r["run"] for r in rows]
    assert len(names) == len(set(names)), "a run appears twice in results.csv"
    return dict(zip(names, rows, strict=True))


def _kill_a_busy_worker(
    sweep: Path, workers: list[subprocess.Popen[bytes]], client: threading.Thread
) -> str:
    """SIGKILL the worker that holds a run in progress; return that run's name."""
    pids = {p.pid: p for p in workers}
    end = time.monotonic() + 120
    while time.monotonic() < end and client.is_alive():
        for status in sorted((sweep / RUNS_DIR).glob(f"*/{RUN_STATUS}")):
            try:
                state = json.loads(status.read_text())
            except (OSError, ValueError):
                continue
            pid = state.get("pid")
            # a run in progress (its config written, so it is past its setup) on a worker
            if (
                state.get("status") == "running"
                and pid in pids
                and (status.parent / "config.toml").exists()
            ):
                os.kill(pid, signal.SIGKILL)
                pids[pid].wait()
                return status.parent.name
        time.sleep(0.1)
    raise AssertionError("no run was seen in progress on a worker")


def test_worker_killed_mid_sweep(cluster: Any, tmp_path: Path) -> None:
    address, procs = cluster
    outcome: dict[str, Any] = {}

    def run_dask() -> None:
        outcome["code"] = main([*SWEEP, "--scheduler", address, "--out", str(tmp_path / "dask")])

    thread = threading.Thread(target=run_dask)
    thread.start()
    killed = _kill_a_busy_worker(tmp_path / "dask", procs[1:], thread)
    # meanwhile, the same sweep with the local executor (in this process)
    assert main([*SWEEP, "--jobs", "1", "--out", str(tmp_path / "local")]) == 0
    thread.join(timeout=300)
    assert not thread.is_alive() and outcome["code"] == 0

    local, dask = _results(tmp_path / "local"), _results(tmp_path / "dask")
    assert set(local) == set(dask) and len(dask) == 4 and killed in dask
    for name, row in local.items():
        assert dask[name]["status"] == "ok", dask[name].get("error")
        for key in ("best_valid_error", "test_error", "best_iteration", "iterations"):
            assert dask[name][key] == row[key], (name, key)
    # the killed run was run again to its end exactly once: one row per validation
    rows = (tmp_path / "dask" / RUNS_DIR / killed / "metrics.jsonl").read_text().splitlines()
    iterations = [json.loads(r)["iteration"] for r in rows if r.strip()]
    assert iterations == sorted(set(iterations))

    # a rerun finds every run done and runs nothing
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "dask").rglob("summary.json")}
    assert main([*SWEEP, "--scheduler", address, "--out", str(tmp_path / "dask")]) == 0
    after = {p: p.stat().st_mtime_ns for p in (tmp_path / "dask").rglob("summary.json")}
    assert before == after


def test_unshared_folder_refused(cluster: Any, tmp_path: Path, monkeypatch: Any) -> None:
    """The workers run in another folder: a relative sweep folder is not the same one."""
    address, _ = cluster
    (tmp_path / "client").mkdir()
    monkeypatch.chdir(tmp_path / "client")
    executor = DaskExecutor(address)
    try:
        with pytest.raises(ConfigError, match="not shared with Dask worker"):
            executor.check_shared(Path("sweep"))
        executor.check_shared(tmp_path / "sweep")  # the same absolute path: shared
    finally:
        executor.close()
    assert not list((tmp_path / "sweep").iterdir())  # the probe files are removed
