"""Small helpers shared by the hostile-input tests (the CLI runners: ../clihelpers.py)."""

from __future__ import annotations

from clihelpers import run_measured


def measure_peak(*argv: str, env: dict[str, str] | None = None, timeout: float = 60):
    """``python -m descentlab ARGV`` in a child: (exit code, stderr, seconds, peak RSS bytes)."""
    code, err, seconds, peak = run_measured(list(argv), env=env, timeout=timeout)
    if code is None:
        raise TimeoutError(argv)
    return code, err, seconds, peak
