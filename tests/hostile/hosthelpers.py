"""Small helpers shared by the hostile-input tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from descentlab.cli.main import main

SRC = Path(__file__).resolve().parents[2] / "src"


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``descentlab ARGV`` in-process: (exit code, stdout, stderr)."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(code: int, err: str, *words: str, exit_code: int = 2) -> str:
    """Exit code 2 (default), exactly one stderr line, no traceback, the given words."""
    assert code == exit_code, f"exit {code}, stderr: {err}"
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and "internal error" not in err, err
    for word in words:
        assert word.lower() in lines[0].lower(), (word, lines[0])
    return lines[0]


def measure_peak(*argv: str, env: dict[str, str] | None = None, timeout: float = 60):
    """``python -m descentlab ARGV`` in a child: (exit code, stderr, seconds, peak RSS bytes)."""
    full_env = {**os.environ, "PYTHONPATH": str(SRC), **(env or {})}
    t0 = time.perf_counter()
    with open(os.devnull, "wb") as devnull:
        proc = subprocess.Popen(
            [sys.executable, "-m", "descentlab", *argv],
            stdout=devnull,
            stderr=subprocess.PIPE,
            env=full_env,
        )
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            raise TimeoutError(argv)
        time.sleep(0.05)
    err = proc.stderr.read().decode() if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, err, time.perf_counter() - t0, usage.ru_maxrss * 1024
