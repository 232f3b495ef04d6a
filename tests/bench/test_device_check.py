"""The prepared GPU check (scripts/device_check.sh) runs, at toy size on the CPU.

A GPU is lent to some sessions only; the script they run must work when they get one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "scripts" / "device_check.sh"


def test_every_step_of_the_device_check_runs(tmp_path: Path) -> None:
    env = {**os.environ, "SMOKE": "1", "OUT": str(tmp_path), "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    steps = [line for line in done.stdout.splitlines() if line.startswith("== ")]
    names = [line.split(":")[0][3:] for line in steps[:-1]]
    assert names == ["environment", "optim", "train", "sweep-logreg", "sweep-mlp", "ddp-gloo"]
    assert all(": exit 0 after" in line for line in steps[:-1])
    assert steps[-1] == "== device check: every step passed"
    # the fused sweeps report members equal to their separate runs
    for name in ("sweep-logreg", "sweep-mlp"):
        text = (tmp_path / f"{name}.txt").read_text()
        assert "parameters 0.00e+00, errors 0.00e+00" in text, text
