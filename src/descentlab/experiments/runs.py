"""One run of a sweep: what a worker does with a :class:`RunTask`, wherever it executes.

:func:`execute_run` trains one run into its directory and records its status; it
never raises for the run's own failure (a diverged or broken run is a result, not
the end of the sweep).  Resuming: a run with a checkpoint but no summary continues
from its checkpoint (see :func:`descentlab.experiments.store.run_state`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from descentlab.errors import CheckpointError, DescentlabError
from descentlab.experiments.store import RUN_STATUS, write_json
from descentlab.train import fit
from descentlab.train.callbacks import Checkpointer, MetricsFiles
from descentlab.train.config import TrainConfig, from_mapping
from descentlab.train.evaluate import evaluate
from descentlab.train.records import RunSummary
from descentlab.train.run_dir import RunDirectory
from descentlab.train.trainer import TrainingInterrupted

__all__ = [
    "RunTask",
    "execute_run",
    "failure",
    "record_result",
    "record_status",
    "run_extras",
    "sweep_callbacks",
]


@dataclass
class RunTask:
    """One run to execute: where, with which options, and whether to resume."""

    name: str
    run_dir: str
    options: dict[str, Any]  # TrainConfig options, complete for fit()
    resume: bool = False


class ThrottledCheckpointer(Checkpointer):
    """Checkpoints at epoch ends, at most every ``min_seconds`` (fsyncs are not free)."""

    def __init__(self, min_seconds: float) -> None:
        super().__init__(every_iterations=None, every_epoch=True)
        self.min_seconds = min_seconds
        self._last = time.monotonic()

    def on_epoch_end(self, trainer: Any, epoch: int) -> None:
        if time.monotonic() - self._last >= self.min_seconds:
            trainer.save_checkpoint()
            self._last = time.monotonic()


def sweep_callbacks(run_dir: Path) -> list[Any]:
    """Run files and checkpoints, without console output or per-run plots.

    A sweep holds many short runs: a learning-curve figure per run would cost more
    than some runs, and a checkpoint every epoch (fsynced) dominates a full-batch
    run of hundreds of one-step epochs.  Checkpoints are written at epoch ends at
    most every 30 seconds (a crash loses at most that much of a run).
    """
    return [
        MetricsFiles(run_dir),
        RunDirectory(run_dir, plot=False),
        ThrottledCheckpointer(min_seconds=30.0),
    ]


def run_extras(result: Any, cfg: TrainConfig) -> dict[str, Any]:
    """Numbers a comparison needs that the trainer's summary does not hold.

    * ``seconds_to_best`` / ``examples_to_best``: wall time and examples seen when the
      best validation point was reached;
    * ``valid_errors`` / ``test_errors``: the error *counts* (for Wilson intervals);
    * ``model_{train,valid,test}_error``: the returned model (best by validation, or
      the final one with ``restore_best = false``) scored on each split — the train
      error gives the train–valid gap;
    * ``valid_target_*``: when a ``target_error`` is set, the first validation at
      which the *validation* error reached it (epoch, iteration, examples, seconds).
    """
    s = RunSummary.from_row(result.summary)
    extras: dict[str, Any] = {}
    best_row = next((r for r in result.history if r.get("iteration") == s.best_iteration), None)
    extras["seconds_to_best"] = best_row["seconds"] if best_row else None
    extras["examples_to_best"] = best_row.get("examples_seen") if best_row else None
    for split, rate, n in (
        ("valid", s.best_valid_error, s.n_valid),
        ("test", s.test_error, s.n_test),
    ):
        extras[f"{split}_errors"] = round(rate * n) if rate is not None and n else None
    data = result.data
    known: dict[str, float | None] = {}
    if cfg.restore_best and cfg.eval_style == "full" and result.best_state is not None:
        # The returned model is the best validation point's parameters, scored there
        # already: its valid and test errors are the summary's (no second pass).
        known = {"valid": s.best_valid_error, "test": s.test_error}
    if data is not None:
        for split in ("train", "valid", "test"):
            if known.get(split) is not None:
                extras[f"model_{split}_error"] = known[split]
                continue
            ev = evaluate(
                result.model,
                getattr(data, split),
                n_classes=data.n_classes,
                batch_size=cfg.eval_batch_size,
            )
            extras[f"model_{split}_error"] = ev.error
    for key in ("epoch", "iteration", "examples", "seconds"):
        extras[f"valid_target_{key}"] = None
    if cfg.target_error is not None:
        for row in result.history:
            if row["valid_error"] <= cfg.target_error:
                extras.update(
                    valid_target_epoch=row["epoch"],
                    valid_target_iteration=row["iteration"] + 1,
                    valid_target_examples=row.get("examples_seen"),
                    valid_target_seconds=row["seconds"],
                )
                break
    return extras


def execute_run(task: RunTask) -> dict[str, Any]:
    """Train one run into its directory and record its status; never raises for a run's failure.

    Returns ``{"name", "status", "error", "wall_seconds"}``; the numbers are in the run
    directory (read them with :func:`descentlab.experiments.store.read_run`).
    """
    t0 = time.perf_counter()
    run_dir = Path(task.run_dir)
    status: dict[str, Any] = {"status": "ok", "error": None, "resumed": task.resume}
    try:
        # Marks the run as in progress, so the parent can tell which runs a dead worker held.
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / RUN_STATUS, {"status": "running", "pid": os.getpid()})
        # The run loads its data by name (not handed a Dataset object), so its config.toml
        # alone can rebuild it: `descentlab train --resume RUN_DIR` works on a sweep's runs.
        cfg = from_mapping(task.options)
        resume = task.resume
        try:
            result = fit(
                config=cfg,
                callbacks=sweep_callbacks(run_dir),
                default_callbacks_=False,
                resume=resume,
            )
        except CheckpointError:
            if not resume:
                raise
            # A damaged checkpoint: start the run over rather than lose it.
            shutil.rmtree(run_dir, ignore_errors=True)
            status["resumed"] = False
            result = fit(config=cfg, callbacks=sweep_callbacks(run_dir), default_callbacks_=False)
        record_result(status, run_dir, result, cfg)
    except TrainingInterrupted as exc:
        status.update(status="interrupted", error=str(exc))
    except KeyboardInterrupt:
        # A second signal: the trainer stopped without a new checkpoint (the previous
        # one, written atomically, is intact and a re-run resumes from it).
        status.update(status="interrupted", error="interrupted twice; stopped at once")
    except Exception as exc:  # a failed run is a result, not the end of the sweep
        message = str(exc) if isinstance(exc, DescentlabError) else f"{type(exc).__name__}: {exc}"
        status.update(
            status="failed", error=" ".join(message.split()), error_type=type(exc).__name__
        )
    return record_status(task, status, time.perf_counter() - t0)


def record_result(status: dict[str, Any], run_dir: Path, result: Any, cfg: TrainConfig) -> None:
    """Add a finished run's figures to ``status``; keep its test labels for McNemar pairing."""
    status.update(run_extras(result, cfg))
    if result.data is not None:
        y = result.data.test.y.cpu().numpy()
        np.save(run_dir / "test_labels.npy", y.astype(np.int16 if y.max() < 2**15 else y.dtype))


def record_status(task: RunTask, status: dict[str, Any], seconds: float) -> dict[str, Any]:
    """Write ``status`` as the run's ``sweep_run.json``; the outcome the executor collects.

    A status file that cannot be written turns the run into a failure (the sweep must not
    later read it as finished).
    """
    run_dir = Path(task.run_dir)
    status["wall_seconds"] = seconds
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / RUN_STATUS, status)
    except (OSError, DescentlabError) as exc:
        status.update(status="failed", error=f"cannot write {run_dir / RUN_STATUS}: {exc}")
    return {
        "name": task.name,
        "status": status["status"],
        "error": status.get("error"),
        "wall_seconds": seconds,
    }


def failure(task: RunTask, message: str) -> dict[str, Any]:
    """Record ``task`` as failed with ``message`` (best effort) and return its outcome."""
    run_dir = Path(task.run_dir)
    with contextlib.suppress(OSError, DescentlabError):
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / RUN_STATUS, {"status": "failed", "error": message})
    return {"name": task.name, "status": "failed", "error": message, "wall_seconds": 0.0}
