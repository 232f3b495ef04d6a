"""Every script in examples/ runs with --tiny, in a subprocess, so none of them rots."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def _has_mnist() -> bool:
    data = os.environ.get("DESCENTLAB_DATA")
    return bool(data) and (Path(data) / "mnist").is_dir()


def _extra_args(script: Path, tmp_path: Path) -> list[str]:
    if script.name == "train_mnist_mlp.py":
        # MNIST when the files are here (never downloaded by a test), else the digits.
        dataset = [] if _has_mnist() else ["--dataset", "digits"]
        return [*dataset, "--out", str(tmp_path / "run")]
    if script.name == "comparison_sweep.py":
        return ["--out", str(tmp_path / "sweep")]
    return []


def test_the_examples_are_there():
    names = {p.name for p in EXAMPLES}
    assert {
        "train_mnist_mlp.py",
        "optimizer_in_plain_pytorch.py",
        "sklearn_pipeline.py",
        "comparison_sweep.py",
    } <= names


@pytest.mark.slow
@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_tiny(script, tmp_path):
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",  # one thread each: the suite runs tests side by side
        "MPLBACKEND": "Agg",
        "PYTHONWARNINGS": "error::UserWarning,error::FutureWarning,error::DeprecationWarning",
    }
    proc = subprocess.run(
        [sys.executable, str(script), "--tiny", *_extra_args(script, tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert proc.stdout.strip(), "an example should show what it did"
    if script.name == "train_mnist_mlp.py":
        assert "load_run(" in proc.stdout and (tmp_path / "run" / "model.safetensors").is_file()
    if script.name == "comparison_sweep.py":
        assert (tmp_path / "sweep" / "results.csv").is_file()
        assert (tmp_path / "sweep" / "report.md").is_file()
