"""Helpers shared by the reliability tests: quick runs, run comparison, CLI capture."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from pathlib import Path
from typing import Any

import torch

from descentlab.train import fit
from descentlab.train.callbacks import Callback, Checkpointer, MetricsFiles, RunDirectory
from descentlab.train.checkpoint import load_checkpoint

# Small and fast: digits (bundled with scikit-learn), 21 minibatches of 50 per epoch.
QUICK = dict(
    dataset="digits",
    model="mlp",
    hidden=(16,),
    batch_size=50,
    max_epochs=3,
    seed=3,
    threads=1,
    quiet=True,
)


class Crash(Exception):
    """Stands for kill -9 in-process: the state on disk is whatever was written last."""


class SigintAfter(Callback):
    """Deliver a real SIGINT to this process at the ``n``-th validation or checkpoint.

    Not from ``on_step``: a callback overriding ``on_step`` may switch the trainer off
    its fused fast path, whose float rounding differs, so the interrupted process
    would not compute what the reference computed.  After a validation the signal is
    handled at the end of the same step; after a checkpoint, at the end of the next.
    """

    def __init__(self, event: str, n: int) -> None:
        assert event in ("validation", "checkpoint")
        self.event, self.n, self.seen = event, n, 0

    def _count(self, event: str) -> None:
        if event == self.event:
            self.seen += 1
            if self.seen == self.n:
                os.kill(os.getpid(), signal.SIGINT)

    def on_validation(self, trainer: Any, row: dict[str, Any]) -> None:
        self._count("validation")

    def on_checkpoint(self, trainer: Any, path: Path) -> None:
        self._count("checkpoint")


class CrashAfterCheckpoint(Callback):
    """Raise :class:`Crash` right after the ``n``-th checkpoint was written."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.seen = 0

    def on_checkpoint(self, trainer: Any, path: Path) -> None:
        self.seen += 1
        if self.seen == self.n:
            raise Crash


def run_callbacks(out: Path, every: int | None) -> list[Callback]:
    """The run-directory callbacks of the CLI, without the (slow) learning-curve plot."""
    return [MetricsFiles(out), RunDirectory(out, plot=False), Checkpointer(every_iterations=every)]


def quick_fit(
    out: Path,
    *,
    extra: tuple[Callback, ...] = (),
    before: tuple[Callback, ...] = (),
    resume: bool = False,
    **options: Any,
) -> Any:
    """``fit`` on a run directory with the CLI's files but no plot and no console.

    ``before`` callbacks see each event before the run-directory ones, ``extra`` after.
    """
    opts = {**QUICK, **options}
    every = opts.pop("checkpoint_every", None)
    return fit(
        out=str(out),
        default_callbacks_=False,
        callbacks=[*before, *run_callbacks(out, every), *extra],
        resume=resume,
        **opts,
    )


def untimed(row: dict[str, Any]) -> dict[str, Any]:
    """A summary or metrics row without its timings (the only numbers allowed to differ)."""
    return {k: v for k, v in row.items() if "seconds" not in k}


def assert_same_tensors(a: Any, b: Any, where: str = "state") -> None:
    """Bit-identical nested states (tensors compared with torch.equal, dtype included)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), where
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert set(a) == set(b), f"{where}: keys {sorted(map(str, set(a) ^ set(b)))}"
        for k in a:
            assert_same_tensors(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), f"{where}: lengths {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f"{where}.{i}")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_run(reference: Path, other: Path) -> None:
    """Two finished run directories agree bit for bit, timings aside."""
    from safetensors.torch import load_file

    assert_same_tensors(
        load_file(str(reference / "model.safetensors")),
        load_file(str(other / "model.safetensors")),
        "best model",
    )
    ref_state, _ = load_checkpoint(reference / "checkpoint")
    state, _ = load_checkpoint(other / "checkpoint")
    for part in (
        "model",
        "optimizer",
        "schedule",
        "averager",
        "stopper",
        "counters",
        "stopped_because",
        "best",
        "best_state",
        "faults",
    ):
        assert_same_tensors(ref_state[part], state[part], f"final {part}")
    ref_summary = json.loads((reference / "summary.json").read_text())
    summary = json.loads((other / "summary.json").read_text())
    assert untimed(ref_summary) == untimed(summary)
    ref_rows = [json.loads(r) for r in (reference / "metrics.jsonl").read_text().splitlines()]
    rows = [json.loads(r) for r in (other / "metrics.jsonl").read_text().splitlines()]
    assert [untimed(r) for r in ref_rows] == [untimed(r) for r in rows]


def tree_digest(path: Path) -> dict[str, str]:
    """SHA-256 of every file under ``path`` (to show that nothing on disk changed)."""
    if not path.exists():
        return {}
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }
