#!/usr/bin/env python
"""Kill training with SIGKILL at random points, resume, and check nothing changed.

For each configuration this runs ``descentlab train`` twice:

* the reference, uninterrupted;
* the victim, killed with ``kill -9`` at random moments (after a random number of
  new checkpoints, plus a random delay, so the kill lands at a random iteration —
  often in the middle of a checkpoint write) and resumed with
  ``descentlab train --resume`` after each kill, until a resume runs to the end.
  An interruption may also be SIGINT or SIGTERM (``trial(signals=...)``); then the
  process must write a checkpoint, print how to resume and exit with 130 or 143.

It then asserts that the two runs are bit-identical: the final parameters and
optimizer state (the last checkpoint), the best model (``model.safetensors``), every
number of ``summary.json`` except timings, and every row of ``metrics.jsonl``
except its ``seconds``.  ``tests/reliability/test_kill_resume.py`` runs a short
version in the test suite; run this script for a longer soak::

    python scripts/kill_resume.py                       # every config, 3 kills each
    python scripts/kill_resume.py --kills 10 --rounds 5 --seed 7 --config adam

Exit status 0 when every trial matched, 1 otherwise.  Needs only scikit-learn's
bundled ``digits`` data (no download).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

COMMON = [
    "--dataset",
    "digits",
    "--batch-size",
    "20",
    "--max-epochs",
    "3",
    "--checkpoint-every",
    "6",
    "--threads",
    "1",
    "--quiet",
]

# The issue asks for at least SGD+momentum with linear decay, Adam, and an MLP with
# dropout and shuffling; the others widen the net for soak runs.
CONFIGS: dict[str, list[str]] = {
    "momentum-linear": [
        *("--model", "mlp", "--hidden", "32", "--optimizer", "momentum", "--momentum", "0.9"),
        *("--lr", "0.05", "--schedule", "linear:tau=150,final_ratio=0.05"),
        *("--validation-frequency", "7", "--patience", "150"),
    ],
    "adam": ["--model", "mlp", "--hidden", "32", "--optimizer", "adam", "--lr", "0.002"],
    "mlp-dropout-shuffle": [
        *("--model", "mlp", "--hidden", "64", "--dropout", "0.3", "--shuffle"),
        *("--optimizer", "sgd", "--lr", "0.1"),
    ],
    "nesterov-plateau-polyak": [
        *("--model", "mlp", "--hidden", "32", "--optimizer", "nesterov", "--momentum", "0.9"),
        *("--lr", "0.05", "--schedule", "plateau:factor=0.5,patience=0"),
        *("--polyak-start", "60", "--early-stopping", "epochs", "--patience", "2"),
    ],
    "rmsprop-ema-shuffle": [
        *("--model", "logreg", "--optimizer", "rmsprop", "--lr", "0.003"),
        *("--ema", "0.9", "--shuffle", "--l2", "0.0001"),
    ],
}
TIMING_KEYS = ("seconds",)  # any key containing one of these words is a timing


@dataclass
class Interruption:
    """One interruption: the signal, the exit status and the iteration resumed from."""

    signal: int
    returncode: int
    resumed_from: int  # iterations done at the newest checkpoint after the interruption
    stderr: str


@dataclass
class Trial:
    """What happened to one configuration."""

    name: str
    interruptions: list[Interruption] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.differences


def _command(python: str, *args: str) -> list[str]:
    return [python, "-m", "descentlab", "train", *args]


def _manifest(run: Path) -> dict[str, Any] | None:
    try:
        value = json.loads((run / "checkpoint" / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _generation(run: Path) -> int:
    manifest = _manifest(run)
    return int(manifest["generation"]) if manifest else -1


def _run(cmd: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def _signal_at_random(
    proc: subprocess.Popen,
    run: Path,
    rng: random.Random,
    signum: int,
    *,
    max_new: int,
    jitter: float,
    timeout: float,
) -> bool:
    """Send ``signum`` once 1..max_new more checkpoints exist and a random delay passed.

    Returns False if the process finished first (nothing was interrupted).
    """
    target = max(_generation(run), 0) + rng.randint(1, max_new)
    while proc.poll() is None and _generation(run) < target:
        time.sleep(0.002)
    if proc.poll() is not None:
        return False
    time.sleep(rng.uniform(0.0, jitter))
    if proc.poll() is not None:
        return False
    proc.send_signal(signum)
    proc.wait(timeout=timeout)
    return True


def compare_runs(reference: Path, other: Path) -> list[str]:
    """Differences between two finished run directories (timings excluded)."""
    from safetensors.torch import load_file

    from descentlab.train.checkpoint import load_checkpoint

    problems: list[str] = []

    def same_tensors(a: dict[str, Any], b: dict[str, Any], what: str) -> None:
        import torch

        if set(a) != set(b):
            problems.append(f"{what}: different entries {sorted(set(a) ^ set(b))}")
            return
        for key in a:
            x, y = a[key], b[key]
            if isinstance(x, dict):
                same_tensors(x, y, f"{what}.{key}")
            elif isinstance(x, torch.Tensor):
                if x.dtype != y.dtype or x.shape != y.shape or not torch.equal(x, y):
                    problems.append(f"{what}.{key} differs")
            elif isinstance(x, list):
                if len(x) != len(y):
                    problems.append(f"{what}.{key}: lengths {len(x)} != {len(y)}")
                else:
                    same_tensors(dict(enumerate(x)), dict(enumerate(y)), f"{what}.{key}")
            elif x != y:
                problems.append(f"{what}.{key}: {x!r} != {y!r}")

    same_tensors(
        load_file(str(reference / "model.safetensors")),
        load_file(str(other / "model.safetensors")),
        "model.safetensors",
    )
    ref_state, _ = load_checkpoint(reference / "checkpoint")
    state, _ = load_checkpoint(other / "checkpoint")
    for part in ("model", "optimizer", "schedule", "averager", "stopper", "counters", "best"):
        same_tensors({part: ref_state[part]}, {part: state[part]}, "final checkpoint")

    def untimed(row: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in row.items() if not any(t in k for t in TIMING_KEYS)}

    ref_summary = json.loads((reference / "summary.json").read_text())
    summary = json.loads((other / "summary.json").read_text())
    if untimed(ref_summary) != untimed(summary):
        diff = {k: (v, summary.get(k)) for k, v in untimed(ref_summary).items()}
        changed = {k: v for k, v in diff.items() if v[0] != v[1]}
        problems.append(f"summary.json differs: {changed}")
    ref_rows = (reference / "metrics.jsonl").read_text().splitlines()
    rows = (other / "metrics.jsonl").read_text().splitlines()
    if [untimed(json.loads(r)) for r in ref_rows] != [untimed(json.loads(r)) for r in rows]:
        problems.append(f"metrics.jsonl differs ({len(ref_rows)} vs {len(rows)} rows)")
    return problems


# Runs several trainings in one interpreter, so the imports (seconds) are paid once.
_DRIVER = (
    "import json, sys\n"
    "from descentlab.cli.main import main\n"
    "sys.exit(max([main(argv) for argv in json.loads(sys.argv[1])], default=0))\n"
)


class References:
    """The uninterrupted runs of several configurations, in one background process."""

    def __init__(
        self, configs: dict[str, list[str]], workdir: Path, *, python: str = sys.executable
    ) -> None:
        self.dirs = {name: workdir / f"{name}-reference" for name in configs}
        for path in self.dirs.values():
            shutil.rmtree(path, ignore_errors=True)
        argvs = [["train", *args, "--out", str(self.dirs[n])] for n, args in configs.items()]
        self.proc = subprocess.Popen(
            [python, "-c", _DRIVER, json.dumps(argvs)],
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._error: str | None = None

    def wait(self, timeout: float) -> str | None:
        """Wait until all are done; the error if any failed."""
        if self.proc.returncode is None:
            _, err = self.proc.communicate(timeout=timeout)
            if self.proc.returncode != 0:
                self._error = f"reference runs failed: {err.decode().strip()}"
        return self._error


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONHASHSEED": "0"}


def trial(
    name: str,
    args: list[str],
    workdir: Path,
    *,
    signals: list[int] | tuple[int, ...] = (signal.SIGKILL,) * 3,
    rng: random.Random,
    references: References | None = None,
    max_new: int = 12,
    jitter: float = 0.03,
    python: str = sys.executable,
    timeout: float = 300.0,
) -> Trial:
    """A run interrupted by ``signals`` in turn, resumed after each, vs its reference.

    ``references`` holds the uninterrupted run of ``name`` (started beforehand so it
    runs beside this one); without it, one is started here.
    """
    t0 = time.perf_counter()
    result = Trial(name)
    env = _env()
    if references is None:
        references = References({name: args}, workdir, python=python)
    victim = workdir / f"{name}-killed"
    shutil.rmtree(victim, ignore_errors=True)

    cmd = _command(python, *args, "--out", str(victim))
    for signum in signals:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        hit = _signal_at_random(
            proc, victim, rng, signum, max_new=max_new, jitter=jitter, timeout=timeout
        )
        err = proc.stderr.read().decode() if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
        if not hit:
            if proc.returncode != 0:
                result.differences.append(f"run failed (exit {proc.returncode}): {err.strip()}")
                return result
            break  # it finished before the interruption: compare what there is
        manifest = _manifest(victim)
        resumed_from = int(manifest["meta"]["iteration"]) if manifest else 0
        result.interruptions.append(Interruption(signum, proc.returncode, resumed_from, err))
        if signum != signal.SIGKILL:  # a graceful stop: checkpoint, say how to resume, 130/143
            expected = 130 if signum == signal.SIGINT else 143
            advice = f"descentlab train --resume {victim}"
            if proc.returncode != expected or advice not in err or err.count("\n") != 1:
                result.differences.append(
                    f"{signal.Signals(signum).name}: exit {proc.returncode} (expected "
                    f"{expected}), stderr {err.strip()!r} (expected one line with {advice!r})"
                )
        cmd = _command(python, "--resume", str(victim), "--quiet")
    else:
        done = _run(cmd, env, timeout)
        if done.returncode != 0:
            result.differences.append(f"final resume failed: {done.stderr.strip()}")
            return result
    error = references.wait(timeout)
    if error:
        result.differences.append(error)
        return result
    result.differences = compare_runs(references.dirs[name], victim)
    result.seconds = time.perf_counter() - t0
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", action="append", choices=sorted(CONFIGS), default=None)
    parser.add_argument("--kills", type=int, default=3, help="interruptions per trial")
    parser.add_argument(
        "--signal",
        choices=("KILL", "INT", "TERM", "mixed"),
        default="KILL",
        help="the signal that interrupts (mixed: a random one each time; default KILL)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="trials per config (default 1)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the kill points")
    parser.add_argument("--workdir", default=None, help="keep the run directories here")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    rng = random.Random(seed)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="descentlab-kill-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"kill/resume: seed {seed}, run directories in {workdir}")
    failures = 0
    names = args.config or list(CONFIGS)
    for round_ in range(args.rounds):
        configs = {name: [*COMMON, *CONFIGS[name]] for name in names}
        references = References(configs, workdir)  # runs beside the interrupted ones
        for name in names:
            kinds = ("KILL", "INT", "TERM") if args.signal == "mixed" else (args.signal,)
            signals = [signal.Signals[f"SIG{rng.choice(kinds)}"] for _ in range(args.kills)]
            result = trial(
                name, configs[name], workdir, signals=signals, rng=rng, references=references
            )
            status = "ok" if result.ok else "MISMATCH"
            where = ", ".join(
                f"{signal.Signals(i.signal).name}@{i.resumed_from}" for i in result.interruptions
            )
            print(
                f"round {round_ + 1} {name:24s} interrupted (signal@iteration resumed from) "
                f"{where or 'never'}: {status} ({result.seconds:.1f}s)"
            )
            for problem in result.differences:
                print(f"    {problem}")
            failures += not result.ok
    if args.workdir is None and not failures:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
