"""Data-parallel training under torchrun (gloo, 2 CPU processes) against one process.

The 2-rank runs are real ``python -m torch.distributed.run --standalone`` jobs on
127.0.0.1; the 1-process run is in this process.  MNIST (a subset) when
``DESCENTLAB_DATA`` holds it, else scikit-learn's digits.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from descentlab import fit

HERE = Path(__file__).parent
DATA = os.environ.get("DESCENTLAB_DATA")
HAS_MNIST = bool(DATA) and (Path(DATA or ".") / "mnist").is_dir()

OPTIONS: dict[str, Any] = {
    "dataset": "mnist" if HAS_MNIST else "digits",
    "subset": 2000 if HAS_MNIST else None,
    "model": "mlp",
    "hidden": [64],
    "optimizer": "momentum",
    "lr": 0.05,
    "momentum": 0.9,
    "batch_size": 50,  # global: 25 examples per rank and step
    "max_epochs": 3,
    "seed": 7,
    "checkpoint_every": 25,
    "threads": 1,
    "quiet": True,
    # explicit, because plain `descentlab train` on MNIST starts from the dlt-logreg preset
    "pixel_scale": 255,
    "eval_style": "full",
}
KILL_AT = 70  # iterations: in the second epoch (40 steps per epoch on 2000 examples)


def _flags(options: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is None:
            continue
        if value is True:
            out.append(flag)
        elif isinstance(value, list):
            out += [flag, ",".join(map(str, value))]
        else:
            out += [flag, str(value)]
    return out


def _env() -> dict[str, str]:
    env = dict(os.environ)
    src = str(HERE.parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    env["MASTER_ADDR"] = "127.0.0.1"
    return env


def _torchrun_cmd(*args: str) -> list[str]:
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        "--nproc_per_node=2", "--rdzv-endpoint=127.0.0.1:0", *args,
    ]  # fmt: skip


def _torchrun(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _torchrun_cmd(*args), env=_env(), capture_output=True, text=True, timeout=timeout
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ranks_by_env(script: Path, *args: str, timeout: float = 120) -> list[int]:
    """Two ranks started the way torchrun's static rendezvous does (env://), in one
    process group of their own, so the script can SIGKILL the whole job."""
    port, procs = _free_port(), []
    for rank in range(2):
        env = {**_env(), "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "LOCAL_WORLD_SIZE": "2", "MASTER_PORT": str(port)}  # fmt: skip
        group = {"process_group": 0} if rank == 0 else {"process_group": procs[0].pid}
        procs.append(
            subprocess.Popen(
                [sys.executable, str(script), *args],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                **group,
            )
        )
    return [p.wait(timeout=timeout) for p in procs]


def _train_2ranks(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return _torchrun("-m", "descentlab", "train", *_flags(OPTIONS), "--out", str(out), *extra)


def _rows(run: Path) -> list[dict[str, Any]]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp") / "run2"
    proc = _train_2ranks(out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def one_process(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return fit(**{**OPTIONS, "out": str(tmp_path_factory.mktemp("one") / "run1")})


def test_two_ranks_equal_one_process(two_ranks: Path, one_process: Any) -> None:
    one = one_process
    two_params = load_file(two_ranks / "model.safetensors")
    for name, value in one.model.state_dict().items():
        torch.testing.assert_close(two_params[name], value, rtol=1e-4, atol=1e-6)
    rows1, rows2 = one.history, _rows(two_ranks)
    assert len(rows1) == len(rows2) == 3
    n_valid = one.summary["n_valid"]
    for a, b in zip(rows1, rows2, strict=True):
        assert a["iteration"] == b["iteration"]
        assert round(a["valid_error"] * n_valid) == round(b["valid_error"] * n_valid)
        assert a["valid_nll"] == pytest.approx(b["valid_nll"], rel=1e-5)
    summary = json.loads((two_ranks / "summary.json").read_text())
    assert summary["test_error"] == one.summary["test_error"]
    assert summary["iterations"] == one.summary["iterations"]


def test_sigkill_then_resume_equals_uninterrupted(two_ranks: Path, tmp_path: Path) -> None:
    run = tmp_path / "killed"
    options = json.dumps({**OPTIONS, "out": str(run)})
    codes = _ranks_by_env(HERE / "kill_after_checkpoint.py", options, str(KILL_AT))
    assert codes == [-9, -9]
    assert not (run / "summary.json").exists()  # it really stopped mid-run
    meta = json.loads((run / "checkpoint" / "manifest.json").read_text())["meta"]
    assert 0 < meta["iteration"] < 120

    resumed = _torchrun("-m", "descentlab", "train", "--resume", str(run), "--quiet")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    want, got = load_file(two_ranks / "model.safetensors"), load_file(run / "model.safetensors")
    for name, value in want.items():
        torch.testing.assert_close(got[name], value, rtol=0, atol=0)
    assert [r["valid_error"] for r in _rows(run)] == [r["valid_error"] for r in _rows(two_ranks)]
