"""Running the CLI and judging its refusals: shared by the hostile-input and reliability
tests and by ``scripts/fuzz_cli.py``.

A refusal is *clean* when it exits with the expected code, prints exactly one
non-empty stderr line (argparse's usage line aside, where allowed) and no traceback or
"internal error".
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from descentlab.cli.main import main

SRC = Path(__file__).resolve().parents[1] / "src"

#: A two-stage ``compare`` that finishes in seconds: 2 optimizers × 2 lrs on a tiny MLP,
#: lr tuned on seed 0, then a second seed (the sweep and fused-sweep tests add their flags).
TINY_COMPARE = [
    "compare",
    "--dataset", "digits",
    "--model", "mlp",
    "--hidden", "16",
    "--optimizer", "sgd,adam",
    "--lr", "0.03", "0.3",
    "--batch-size", "64",
    "--max-epochs", "2",
    "--early-stopping", "none",
    "--shuffle",
    "--seeds", "2",
    "--select-lr",
]  # fmt: skip


def run_cli(capsys: Any, *argv: str) -> tuple[int, str, str]:
    """``descentlab ARGV`` in-process: (exit code, stdout, stderr)."""
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse errors exit directly
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


def refusal_problem(
    code: int, err: str, *, exit_codes: Collection[int] = (2,), usage_ok: bool = False
) -> str | None:
    """Why ``(code, err)`` is not a clean refusal, or None if it is one.

    ``usage_ok``: argparse's own refusal (a ``usage:`` line, then the error) is clean too.
    """
    lines = [line for line in err.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    if code not in exit_codes:
        return f"exit {code}: {last}"
    if "Traceback" in err or "internal error" in err:
        return f"exit {code} with traceback/internal error: {last}"
    usage_error = usage_ok and any(line.startswith("usage:") for line in lines)
    if len(lines) != 1 and not usage_error:
        return f"{len(lines)} stderr lines: {lines[:2]}"
    return None


def one_line_error(code: int, err: str, *words: str, exit_code: int = 2) -> str:
    """Assert a clean refusal with exit ``exit_code`` naming ``words``; return its line."""
    problem = refusal_problem(code, err, exit_codes=(exit_code,))
    assert problem is None, f"{problem}; stderr: {err}"
    line = err.strip()
    for word in words:
        assert word.lower() in line.lower(), (word, line)
    return line


#: Runs ``argv[2:]`` and writes its peak RSS (KiB) to ``argv[1]``; exits as it did.  The
#: measured command is a grandchild of the test process: a child's ``ru_maxrss`` counts
#: the memory of the process it was forked from (Linux carries the high-water mark
#: across exec), so a child of a large pytest worker would report the worker's size.
_PEAK_OF_CHILD = """
import os, signal, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(str(usage.ru_maxrss))
code = os.waitstatus_to_exitcode(status)
if code < 0:  # end as the child ended: by the same signal
    signal.signal(-code, signal.SIG_DFL)
    os.kill(os.getpid(), -code)
sys.exit(code)
"""


def run_measured(
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    preexec_fn: Callable[[], None] | None = None,
) -> tuple[int | None, str, float, int]:
    """``python -m descentlab ARGV`` in a child, with this checkout's sources first.

    Returns (exit code, stderr, seconds, peak RSS in bytes of that process alone); the
    exit code is None when the child ran past ``timeout`` and was killed (the peak is
    then not known: the figure returned is the wrapper's).
    """
    import tempfile

    full_env = {**os.environ, "PYTHONPATH": str(SRC), **(env or {})}
    with tempfile.TemporaryDirectory(prefix="descentlab-peak-") as folder:
        report = Path(folder) / "peak"
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-c", _PEAK_OF_CHILD, str(report),
             sys.executable, "-m", "descentlab", *argv],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=full_env,
            preexec_fn=preexec_fn,  # a limit set here holds for the measured process too
            start_new_session=True,  # a timeout kills both
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        code: int | None = None
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                code = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                os.killpg(proc.pid, 9)
                _pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        seconds = time.perf_counter() - t0
        peak_kib = int(report.read_text()) if report.is_file() else usage.ru_maxrss
    return code, err, seconds, peak_kib * 1024
