"""Real processes: SIGKILL, SIGINT and SIGTERM at random iterations, then --resume.

Runs ``scripts/kill_resume.py``'s trials: a reference ``descentlab train`` and a
victim interrupted at random points (after a random number of new checkpoints plus a
random delay, so the signal often lands in the middle of a checkpoint write), resumed
with ``descentlab train --resume`` after each interruption.  The final parameters,
optimizer state, best model, summary numbers and metrics rows must be bit-identical.
SIGINT and SIGTERM must also checkpoint, print one line saying how to resume, and
exit with 130 and 143.  A failure prints its seed and the iterations each interruption
resumed from; DESCENTLAB_KILL_SEED reuses the seed's choices (the exact iteration a
signal lands at also depends on timing).
"""

from __future__ import annotations

import importlib.util
import os
import random
import signal
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "kill_resume.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("kill_resume", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["kill_resume"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


kill_resume = _load_script()

# The three: SGD+momentum with linear decay, Adam, an MLP with dropout and
# shuffling; each killed with SIGKILL, plus one SIGINT and one SIGTERM.
PLAN = {
    "momentum-linear": (signal.SIGKILL, signal.SIGINT),
    "adam": (signal.SIGKILL, signal.SIGTERM),
    "mlp-dropout-shuffle": (signal.SIGKILL,),
}


@pytest.mark.slow
def test_interrupted_at_random_iterations_and_resumed_is_bit_identical(tmp_path):
    # One test for the three trials, so that one background process computes the three
    # references (under pytest-xdist a module fixture would run once per worker).
    # Not the global generator: conftest seeds it, and these points are fresh every run.
    seed = int(os.environ.get("DESCENTLAB_KILL_SEED", random.SystemRandom().randrange(2**32)))
    rng = random.Random(seed)
    configs = {name: [*kill_resume.COMMON, *kill_resume.CONFIGS[name]] for name in PLAN}
    references = kill_resume.References(configs, tmp_path)
    failures = []
    try:
        for name, signals in PLAN.items():
            result = kill_resume.trial(
                name, configs[name], tmp_path, signals=signals, rng=rng, references=references,
                max_new=8,
            )  # fmt: skip
            failures += [f"{name}: {problem}" for problem in _check(result, tmp_path, signals)]
    finally:
        if references.proc.poll() is None:
            references.proc.kill()
            references.proc.wait()
    assert not failures, f"seed {seed} (rerun with DESCENTLAB_KILL_SEED={seed}):\n" + "\n".join(
        failures
    )


def _check(result, workdir, planned) -> list[str]:
    """What is wrong with one trial (empty: nothing)."""
    where = [(signal.Signals(i.signal).name, i.resumed_from) for i in result.interruptions]
    problems = [f"{p} (interruptions {where})" for p in result.differences]
    if [i.signal for i in result.interruptions] != list(planned):
        problems.append(f"planned {[signal.Signals(s).name for s in planned]}, got {where}")
    resumed = [i.resumed_from for i in result.interruptions]
    if resumed != sorted(resumed) or (resumed and resumed[0] <= 0):
        problems.append(f"interruption points out of order: {where}")
    for i in result.interruptions:
        name = signal.Signals(i.signal).name
        if i.signal == signal.SIGKILL:
            if i.returncode != -signal.SIGKILL:
                problems.append(f"{name}: exit {i.returncode}")
            continue
        # graceful: exit 130/143 and one line naming the signal and the resume command
        line = i.stderr.strip()
        advice = f"descentlab train --resume {workdir / (result.name + '-killed')}"
        if (
            i.returncode != (130 if i.signal == signal.SIGINT else 143)
            or "\n" in line
            or name not in line
            or advice not in line
            or "Traceback" in i.stderr
        ):
            problems.append(f"{name}: exit {i.returncode}, stderr {i.stderr!r}")
    return problems
