"""Running a sweep: many training runs in parallel, resumable, with honest tuning.

    SWEEP_DIR/
      sweep.json        the plan, the runs (name, stage, options) and the tuning decisions
      results.csv       one row per run: every option, best valid error, test error at
                        best, epochs, wall seconds, iterations to a target error, status
      runs/<name>/      one run directory per run (see descentlab.train.run_dir), plus
                        sweep_run.json (status and the extra numbers below) and
                        test_labels.npy (to pair predictions in McNemar's test)
      report.html/.md   see descentlab.experiments.report

Runs execute in worker processes (``concurrent.futures.ProcessPoolExecutor`` over
the ``forkserver`` context where the platform has it, else ``spawn``: never ``fork``,
which copies a parent's torch thread pools into the children).  Each worker runs
with ``threads = max(1, cores // jobs)`` torch threads so ``jobs`` workers do not
oversubscribe the CPU.

Resuming.  A run whose directory holds a finished run of the same options is
skipped; one with a checkpoint but no summary (killed, interrupted) continues from
its checkpoint; one that failed (e.g. diverged) is started again from scratch.  A run
that fails never stops the sweep: it is recorded with its error message.

Tuning on validation, never on test.  With ``plan.tune = ("lr",)`` the sweep runs
in two stages: stage 1 runs the whole grid with the first seed only; for every
configuration (the grid's other options) the learning rate with the lowest
*validation* error is kept (:func:`select_best` never reads a test number); stage 2
runs each kept configuration with all seeds.  The stage-1 run of the chosen value is
the same run as its stage-2 first seed and is not repeated.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import multiprocessing
import os
import shutil
import signal
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from descentlab.errors import CheckpointError, ConfigError, DescentlabError
from descentlab.experiments.grid import (
    LABEL_KEY,
    SweepPlan,
    config_key,
    format_value,
    run_identity,
    run_name,
    train_options,
)

__all__ = [
    "METRIC_FIELDS",
    "SweepResult",
    "available_cores",
    "collect_results",
    "default_jobs",
    "run_sweep",
    "select_best",
    "write_results",
]

MANIFEST = "sweep.json"
RESULTS_CSV = "results.csv"
RUN_STATUS = "sweep_run.json"
RUNS_DIR = "runs"

#: The result columns of ``results.csv`` after the options (errors are fractions).
METRIC_FIELDS = (
    "best_valid_error",
    "test_error",
    "best_valid_nll",
    "test_nll",
    "test_f1",
    "best_epoch",
    "best_iteration",
    "epochs_run",
    "iterations",
    "stopped_because",
    "train_seconds",
    "seconds_to_best",
    "examples_to_best",
    "wall_seconds",
    "n_train",
    "n_valid",
    "n_test",
    "valid_errors",
    "test_errors",
    "model_train_error",
    "model_valid_error",
    "model_test_error",
    "valid_target_epoch",
    "valid_target_iteration",
    "valid_target_examples",
    "valid_target_seconds",
)

# TrainConfig options that say nothing about a run's result and are left out of the CSV.
_CSV_SKIP_OPTIONS = ("out", "name", "quiet", "extra")


def available_cores() -> int:
    """CPU cores this process may use (the affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def default_jobs() -> int:
    return available_cores()


def threads_per_job(jobs: int) -> int:
    """Torch threads per worker so that ``jobs`` workers share the cores without oversubscribing."""
    return max(1, available_cores() // max(1, jobs))


# =============================================================== tuning on validation
def select_best(
    rows: Iterable[Mapping[str, Any]],
    tune_keys: Sequence[str],
    group_keys: Sequence[str],
    *,
    metric: str = "best_valid_error",
    tie_metric: str = "best_valid_nll",
) -> list[dict[str, Any]]:
    """For every configuration, the value of the tuned options with the lowest validation error.

    Rows are grouped by ``group_keys`` (the configuration: optimizer, batch size, ...);
    inside a group, by the values of ``tune_keys`` (the candidates, e.g. learning rates).
    A candidate's score is the mean of ``metric`` over its finished runs; ties are broken
    by ``tie_metric`` (validation NLL), then by the order the candidates first appear.
    Only ``metric`` and ``tie_metric`` are read — both validation numbers: choosing on
    the test set would make the reported test error optimistically biased.  Failed runs
    and non-finite scores are not candidates; a group whose every run failed gets
    ``chosen = None``.

    Returns one dict per group: ``group`` (the group's values), ``chosen`` (tuned
    option → value, or None), ``score``, ``at_edge`` (the chosen value is the smallest
    or largest tried for a numeric option — the optimum may lie outside the grid) and
    ``candidates`` (each with its values, ``score``, ``runs`` and ``failed`` counts).
    """
    tune_keys, group_keys = list(tune_keys), list(group_keys)
    overlap = set(tune_keys) & set(group_keys)
    if overlap:
        raise ConfigError(f"an option cannot be both tuned and grouped by: {sorted(overlap)}")
    groups: OrderedDict[tuple[Any, ...], OrderedDict[tuple[Any, ...], dict[str, Any]]] = (
        OrderedDict()
    )
    group_values: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        gkey = config_key(row, group_keys)
        tkey = config_key(row, tune_keys)
        group_values.setdefault(gkey, {k: row.get(k) for k in group_keys})
        cand = groups.setdefault(gkey, OrderedDict()).setdefault(
            tkey,
            {
                "values": {k: row.get(k) for k in tune_keys},
                "scores": [],
                "ties": [],
                "runs": 0,
                "failed": 0,
            },
        )
        cand["runs"] += 1
        score = _finite(row.get(metric)) if row.get("status", "ok") == "ok" else None
        if score is None:
            cand["failed"] += 1
            continue
        cand["scores"].append(score)
        tie = _finite(row.get(tie_metric))
        cand["ties"].append(math.inf if tie is None else tie)

    out: list[dict[str, Any]] = []
    for gkey, cands in groups.items():
        ranked = []
        for order, cand in enumerate(cands.values()):
            n = len(cand["scores"])
            cand["score"] = sum(cand["scores"]) / n if n else None
            cand["tie"] = sum(cand["ties"]) / n if n else None
            if n:
                ranked.append((cand["score"], cand["tie"], order, cand))
        ranked.sort(key=lambda t: t[:3])
        best = ranked[0][3] if ranked else None
        at_edge = False
        if best is not None:
            for key in tune_keys:
                tried = sorted(
                    {c["values"][key] for c in cands.values() if _is_number(c["values"][key])}
                )
                value = best["values"][key]
                if len(tried) > 2 and value in (tried[0], tried[-1]):
                    at_edge = True
        out.append(
            {
                "group": group_values[gkey],
                "chosen": dict(best["values"]) if best is not None else None,
                "score": best["score"] if best is not None else None,
                "metric": metric,
                "at_edge": at_edge,
                "candidates": [
                    {
                        "values": c["values"],
                        "score": c["score"],
                        "runs": c["runs"],
                        "failed": c["failed"],
                    }
                    for c in cands.values()
                ],
            }
        )
    return out


def _finite(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# ====================================================================== one run
@dataclass
class RunTask:
    """One run to execute: where, with which options, and whether to resume."""

    name: str
    run_dir: str
    options: dict[str, Any]  # TrainConfig options, complete for fit()
    resume: bool = False


def _status(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / RUN_STATUS
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _config_matches(run_dir: Path, options: Mapping[str, Any]) -> bool:
    from descentlab.train.config import read_config_file

    path = run_dir / "config.toml"
    if not path.is_file():
        return False
    try:
        stored = run_identity(read_config_file(path))
    except DescentlabError:
        return False
    return stored == run_identity(options)


def run_state(run_dir: Path, options: Mapping[str, Any]) -> str:
    """``done`` (skip), ``resume`` (checkpoint, no summary), or ``fresh`` (start over).

    ``fresh`` also covers a run that failed before (it is tried again from scratch: the
    cause may have been fixed) and a directory whose options do not match.
    """
    if not run_dir.exists():
        return "fresh"
    matches = _config_matches(run_dir, options)
    status = _status(run_dir)
    if (
        matches
        and (run_dir / "summary.json").is_file()
        and status is not None
        and status.get("status") == "ok"
    ):
        return "done"
    if (
        matches
        and not (run_dir / "summary.json").is_file()
        and (run_dir / "checkpoint").is_dir()
        and (status is None or status.get("status") in ("interrupted", "running"))
    ):
        return "resume"
    return "fresh"


def _callbacks(run_dir: Path) -> list[Any]:
    """Run files and checkpoints, without console output or per-run plots.

    A sweep holds many short runs: a learning-curve figure per run would cost more
    than some runs, and a checkpoint every epoch (fsynced) dominates a full-batch
    run of hundreds of one-step epochs.  Checkpoints are written at epoch ends at
    most every 30 seconds (a crash loses at most that much of a run).
    """
    from descentlab.train.callbacks import Checkpointer, MetricsFiles
    from descentlab.train.run_dir import RunDirectory

    class _ThrottledCheckpointer(Checkpointer):
        def __init__(self, min_seconds: float) -> None:
            super().__init__(every_iterations=None, every_epoch=True)
            self.min_seconds = min_seconds
            self._last = time.monotonic()

        def on_epoch_end(self, trainer: Any, epoch: int) -> None:
            if time.monotonic() - self._last >= self.min_seconds:
                trainer.save_checkpoint()
                self._last = time.monotonic()

    return [
        MetricsFiles(run_dir),
        RunDirectory(run_dir, plot=False),
        _ThrottledCheckpointer(min_seconds=30.0),
    ]


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    from descentlab.train.checkpoint import atomic_write_bytes

    atomic_write_bytes(path, json.dumps(data, indent=2, default=str).encode("utf-8"))


def _run_extras(result: Any, cfg: Any) -> dict[str, Any]:
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
    from descentlab.train.evaluate import evaluate

    s = result.summary
    extras: dict[str, Any] = {}
    best_iter = s.get("best_iteration")
    best_row = next((r for r in result.history if r.get("iteration") == best_iter), None)
    extras["seconds_to_best"] = best_row["seconds"] if best_row else None
    extras["examples_to_best"] = best_row.get("examples_seen") if best_row else None
    for split, key in (("valid", "best_valid_error"), ("test", "test_error")):
        rate, n = s.get(key), s.get(f"n_{split}")
        extras[f"{split}_errors"] = round(rate * n) if rate is not None and n else None
    data = result.data
    if data is not None:
        for split in ("train", "valid", "test"):
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
    directory (read them with :func:`read_run`).
    """
    import numpy as np

    from descentlab.train import fit
    from descentlab.train.config import from_mapping
    from descentlab.train.trainer import TrainingInterrupted

    t0 = time.perf_counter()
    run_dir = Path(task.run_dir)
    status: dict[str, Any] = {"status": "ok", "error": None, "resumed": task.resume}
    try:
        # Marks the run as in progress, so the parent can tell which runs a dead worker held.
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_json(run_dir / RUN_STATUS, {"status": "running", "pid": os.getpid()})
        # The run loads its data by name (not handed a Dataset object), so its config.toml
        # alone can rebuild it: `descentlab train --resume RUN_DIR` works on a sweep's runs.
        cfg = from_mapping(task.options)
        resume = task.resume
        try:
            result = fit(
                config=cfg,
                callbacks=_callbacks(run_dir),
                default_callbacks_=False,
                resume=resume,
            )
        except CheckpointError:
            if not resume:
                raise
            # A damaged checkpoint: start the run over rather than lose it.
            shutil.rmtree(run_dir, ignore_errors=True)
            status["resumed"] = False
            result = fit(config=cfg, callbacks=_callbacks(run_dir), default_callbacks_=False)
        status.update(_run_extras(result, cfg))
        if result.data is not None:
            y = result.data.test.y.cpu().numpy()
            np.save(run_dir / "test_labels.npy", y.astype(np.int16 if y.max() < 2**15 else y.dtype))
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
    status["wall_seconds"] = time.perf_counter() - t0
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_json(run_dir / RUN_STATUS, status)
    except (OSError, DescentlabError) as exc:
        status.update(status="failed", error=f"cannot write {run_dir / RUN_STATUS}: {exc}")
    return {
        "name": task.name,
        "status": status["status"],
        "error": status.get("error"),
        "wall_seconds": status["wall_seconds"],
    }


#: Set in each worker by :func:`_worker_init`: the parent's "stop starting runs" flag.
_STOP: Any = None


def _worker_init(threads: int, stop: Any) -> None:
    """Each worker: a fixed number of torch threads; Ctrl-C is left to the trainer.

    Between runs SIGINT is ignored (the parent decides what to do); during a run the
    trainer installs its own handler, which checkpoints and stops the run cleanly.
    """
    import torch

    global _STOP
    _STOP = stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)
    # Fails if already set or if parallel work already ran; either way it is harmless.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)


def _guarded(runner: Callable[[RunTask], dict[str, Any]], task: RunTask) -> dict[str, Any]:
    """Run ``task`` in a worker unless the sweep was interrupted in the meantime.

    The pool hands a task to a worker before the previous one ends, so cancelling the
    futures is not enough to stop a sweep: a task already queued checks the flag.
    """
    if _STOP is not None and _STOP.is_set():
        return {
            "name": task.name,
            "status": "cancelled",
            "error": "the sweep was interrupted before this run started",
            "wall_seconds": 0.0,
        }
    return runner(task)


def read_run(run_dir: Path) -> dict[str, Any]:
    """The numbers of one run directory: summary, sweep extras and status (missing: None)."""
    row: dict[str, Any] = {}
    summary_path = run_dir / "summary.json"
    if summary_path.is_file():
        with contextlib.suppress(OSError, json.JSONDecodeError):
            row.update(json.loads(summary_path.read_text(encoding="utf-8")))
    status = _status(run_dir)
    if status is not None:
        row.update(status)
    elif run_dir.exists():
        row["status"] = "incomplete"
    else:
        row["status"] = "pending"
    return row


# ================================================================= the sweep
@dataclass
class SweepResult:
    """What :func:`run_sweep` returns."""

    path: Path
    plan: SweepPlan
    rows: list[dict[str, Any]]
    selection: list[dict[str, Any]] = field(default_factory=list)
    report: tuple[Path, Path] | None = None

    @property
    def final_rows(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if "final" in r["stages"]]

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] != "ok"]


class _Progress:
    """One line per finished run, plus a tqdm bar with ETA when stderr is a terminal."""

    def __init__(self, total: int, stream: Any, enabled: bool, desc: str) -> None:
        self.total = total
        self.done = 0
        self.stream = stream
        self.enabled = enabled
        self.bar = None
        if enabled and total and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="run", dynamic_ncols=True)

    def line(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def finished(self, text: str) -> None:
        self.done += 1
        self.line(f"[{self.done}/{self.total}] {text}")
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _describe(name: str, outcome: Mapping[str, Any], run_dir: Path) -> str:
    if outcome["status"] != "ok":
        return f"{name}: {outcome['status'].upper()} ({outcome.get('error')})"
    row = read_run(run_dir)
    v, t = row.get("best_valid_error"), row.get("test_error")
    vtxt = f"{100 * v:.2f}%" if v is not None else "-"
    ttxt = f"{100 * t:.2f}%" if t is not None else "-"
    return (
        f"{name}: valid {vtxt}, test@best {ttxt}, best epoch {row.get('best_epoch')}"
        f"/{row.get('epochs_run')}, {outcome['wall_seconds']:.1f}s"
    )


def _mp_context() -> multiprocessing.context.BaseContext:
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        # Workers fork from a server that has torch and the trainer imported already,
        # so each starts in milliseconds rather than re-importing torch.
        # (torch._dynamo is what torch.optim imports on first use: seconds on a busy CPU.
        # A module that fails to import is skipped by the forkserver.)
        ctx.set_forkserver_preload(
            [
                "descentlab.experiments.sweep",
                "descentlab.train",
                "torch._dynamo",
                "sklearn.datasets",
            ]
        )
        return ctx
    return multiprocessing.get_context("spawn")


class _Workers:
    """A process pool kept across the stages of a sweep (started once, workers reused)."""

    def __init__(self, jobs: int, threads: int) -> None:
        self.jobs = jobs
        self.threads = threads
        self._pool: ProcessPoolExecutor | None = None
        self._stop: Any = None

    def pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            ctx = _mp_context()
            self._stop = ctx.Event()
            self._pool = ProcessPoolExecutor(
                max_workers=self.jobs,
                mp_context=ctx,
                initializer=_worker_init,
                initargs=(self.threads, self._stop),
            )
        return self._pool

    def interrupt(self, running: Iterable[Future[Any]] = (), grace: float = 3.0) -> None:
        """Stop everything: no new runs start, and the running ones checkpoint and stop.

        Ctrl-C on a terminal reaches the workers too, and their trainers checkpoint and
        stop within a step.  A SIGINT sent to this process alone does not: runs still
        going after ``grace`` seconds get one from here.  (Not at once: a trainer takes
        a *second* signal as "stop now, skip the checkpoint".)
        """
        if self._pool is None:
            return
        self._stop.set()
        _, still = wait(list(running), timeout=grace)
        if still:
            for proc in list(getattr(self._pool, "_processes", {}).values()):
                with contextlib.suppress(OSError):
                    os.kill(proc.pid, signal.SIGINT)
        self.discard()

    def discard(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    close = discard


def _execute_tasks(
    tasks: Sequence[RunTask],
    workers: _Workers,
    progress: _Progress,
    runner: Callable[[RunTask], dict[str, Any]] = execute_run,
) -> dict[str, dict[str, Any]]:
    """Run ``tasks`` on the workers (in this process when ``jobs == 1``).

    A worker that dies (killed, out of memory) breaks the whole pool: the runs that
    were in progress are recorded as failed (a re-run of the sweep retries them) and
    the runs not yet started go to a fresh pool.
    """
    outcomes: dict[str, dict[str, Any]] = {}

    def done(task: RunTask, outcome: dict[str, Any]) -> None:
        outcomes[task.name] = outcome
        progress.finished(_describe(task.name, outcome, Path(task.run_dir)))

    if workers.jobs <= 1:
        import torch

        previous = torch.get_num_threads()
        torch.set_num_threads(workers.threads)
        try:
            for task in tasks:
                outcome = runner(task)
                done(task, outcome)
                if outcome["status"] == "interrupted":
                    # Ctrl-C reached the trainer (it checkpointed): stop the sweep too.
                    raise KeyboardInterrupt
        finally:
            torch.set_num_threads(previous)
        return outcomes

    pending = list(tasks)
    while pending:
        pool = workers.pool()
        futures: dict[Future[dict[str, Any]], RunTask] = {
            pool.submit(_guarded, runner, t): t for t in pending
        }
        pending = []
        broken = False
        try:
            remaining = set(futures)
            while remaining and not broken:
                finished, remaining = wait(remaining, return_when=FIRST_COMPLETED)
                for fut in finished:
                    task = futures[fut]
                    try:
                        done(task, fut.result())
                    except BrokenProcessPool:
                        broken = True
                    except Exception as exc:  # e.g. the task could not be sent to the worker
                        done(task, _failure(task, f"{type(exc).__name__}: {exc}"))
        except KeyboardInterrupt:
            workers.interrupt(running=[f for f in futures if not f.done()])
            raise
        if broken:
            workers.discard()
            for fut, task in futures.items():
                if task.name in outcomes:
                    continue
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    done(task, fut.result())
                elif (_status(Path(task.run_dir)) or {}).get("status") == "running":
                    message = (
                        "the worker process died while this run was in progress (this run "
                        "or one running beside it was killed, e.g. out of memory); "
                        "re-run the sweep to retry it"
                    )
                    done(task, _failure(task, message))
                else:
                    pending.append(task)
    return outcomes


def _failure(task: RunTask, message: str) -> dict[str, Any]:
    run_dir = Path(task.run_dir)
    with contextlib.suppress(OSError, DescentlabError):
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_json(run_dir / RUN_STATUS, {"status": "failed", "error": message})
    return {"name": task.name, "status": "failed", "error": message, "wall_seconds": 0.0}


class _Manifest:
    """``sweep.json``: the plan, every run of this sweep (with its stages) and the decisions."""

    def __init__(self, path: Path, plan: SweepPlan) -> None:
        self.path = path
        self.plan = plan
        self.runs: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.selection: list[dict[str, Any]] = []
        self.started = time.strftime("%Y-%m-%d %H:%M:%S")
        self.command: list[str] | None = None

    def add(self, run: Mapping[str, Any], stage: str) -> str:
        name = run_name(train_options(run), self.plan.name_keys, run.get(LABEL_KEY))
        entry = self.runs.setdefault(
            name,
            {
                "name": name,
                "label": run.get(LABEL_KEY),
                "stages": [],
                "options": {k: _plain(v) for k, v in train_options(run).items()},
            },
        )
        if stage not in entry["stages"]:
            entry["stages"].append(stage)
        return name

    def save(self) -> None:
        data = {
            "format": 1,
            "plan": self.plan.to_dict(),
            "started": self.started,
            "command": self.command,
            "runs": list(self.runs.values()),
            "selection": self.selection,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _write_json(self.path, data)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def run_sweep(
    plan: SweepPlan,
    out: str | Path,
    *,
    jobs: int | None = None,
    progress: bool = True,
    report: bool = True,
    stream: Any = None,
    command: Sequence[str] | None = None,
    runner: Callable[[RunTask], dict[str, Any]] = execute_run,
) -> SweepResult:
    """Run (or resume) every run of ``plan`` into ``out``; write results.csv and the report.

    ``jobs`` worker processes (default: one per core), each with ``max(1, cores // jobs)``
    torch threads unless the plan fixes ``threads``.  With ``plan.tune`` the two-stage
    protocol of the module docstring is used.  ``progress``: one line per finished run
    on ``stream`` (default stdout) and a progress bar on a terminal.
    """
    stream = stream or sys.stdout
    out = Path(out)
    jobs = default_jobs() if jobs is None else int(jobs)
    if jobs < 1:
        raise ConfigError(f"jobs must be >= 1, got {jobs}", hint="e.g. --jobs 2")
    threads = int(plan.fixed.get("threads") or threads_per_job(jobs))
    manifest = _Manifest(out / MANIFEST, plan)
    manifest.command = list(command) if command is not None else None
    _preflight(plan)

    def say(text: str) -> None:
        if progress:
            print(text, file=stream, flush=True)

    def stage(runs: list[dict[str, Any]], stage_name: str, desc: str) -> None:
        names = [manifest.add(r, stage_name) for r in runs]
        manifest.save()
        tasks = []
        skipped = 0
        for name in dict.fromkeys(names):
            entry = manifest.runs[name]
            run_dir = out / RUNS_DIR / name
            options = {
                **entry["options"],
                "out": str(run_dir),
                "quiet": True,
                "threads": threads,
            }
            state = run_state(run_dir, options)
            if state == "done":
                skipped += 1
                continue
            if state == "fresh" and run_dir.exists():
                shutil.rmtree(run_dir)
            if state == "resume":
                # Forget the old "running" mark: only the worker that resumes it sets it again.
                (run_dir / RUN_STATUS).unlink(missing_ok=True)
            tasks.append(RunTask(name, str(run_dir), options, resume=state == "resume"))
        say(
            f"{desc}: {len(dict.fromkeys(names))} runs"
            + (f", {skipped} already finished (skipped)" if skipped else "")
            + (
                f"; running {len(tasks)} on {min(jobs, max(len(tasks), 1))} workers"
                f" x {threads} threads"
                if tasks
                else ""
            )
        )
        bar = _Progress(len(tasks), stream, progress, desc)
        try:
            _execute_tasks(tasks, workers, bar, runner=runner)
        finally:
            bar.close()

    workers = _Workers(jobs, threads)
    try:
        if plan.tune:
            first = [plan.seeds[0]]
            search = plan.runs(seeds=first)
            stage(
                search,
                "search",
                f"stage 1 (tune {', '.join(plan.tune)} on validation, seed {first[0]})",
            )
            rows = _rows(out, manifest, stage="search")
            group_keys = [k for k in plan.config_keys if k not in plan.tune]
            manifest.selection = select_best(rows, plan.tune, group_keys, metric=plan.select_metric)
            manifest.save()
            finals = _chosen_runs(plan, manifest.selection, group_keys)
            for sel in manifest.selection:
                say("  " + describe_selection(sel))
            stage(finals, "final", f"stage 2 (chosen values x {len(plan.seeds)} seeds)")
        else:
            stage(plan.runs(), "final", "sweep")
    finally:
        workers.close()
        # Whatever happened (even Ctrl-C), the results so far are on disk.
        manifest.save()
        rows = _rows(out, manifest)
        write_results(out, rows)
    result = SweepResult(path=out, plan=plan, rows=rows, selection=manifest.selection)
    failed = result.failed
    if failed:
        say(f"{len(failed)} of {len(rows)} runs did not finish: see results.csv (column error)")
    say(f"results: {out / RESULTS_CSV}")
    if report:
        from descentlab.experiments.report import build_report

        result.report = build_report(out)
        say(f"report: {result.report[0]}")
    return result


def selection_group_name(sel: Mapping[str, Any]) -> str:
    """``optimizer=adam, batch_size=20``; a labelled table's configurations by their label."""
    group = sel["group"]
    if group.get(LABEL_KEY) is not None:
        return str(group[LABEL_KEY])
    return ", ".join(f"{k}={format_value(v)}" for k, v in group.items() if v is not None) or "all"


def describe_selection(sel: Mapping[str, Any]) -> str:
    """``optimizer=adam: lr=0.001 (best valid error 2.31%)`` for one tuning decision."""
    group = selection_group_name(sel)
    if sel["chosen"] is None:
        return f"{group}: every candidate failed; nothing to run with more seeds"
    chosen = ", ".join(f"{k}={format_value(v)}" for k, v in sel["chosen"].items())
    edge = " (at the edge of the grid: the best value may lie outside it)" if sel["at_edge"] else ""
    metric = str(sel.get("metric", "best_valid_error"))
    score = f"{100 * sel['score']:.2f}%" if metric.endswith("error") else f"{sel['score']:.4g}"
    return f"{group}: {chosen} ({metric.replace('_', ' ')} {score}){edge}"


def _canonical(run: Mapping[str, Any]) -> dict[str, Any]:
    """A run's options as a finished run's row holds them (validated, defaults filled in)."""
    from descentlab.train.config import from_mapping

    return {**from_mapping(train_options(run)).to_dict(), LABEL_KEY: run.get(LABEL_KEY)}


def _chosen_runs(
    plan: SweepPlan, selection: Sequence[Mapping[str, Any]], group_keys: Sequence[str]
) -> list[dict[str, Any]]:
    """The runs of every configuration at its chosen values, with all the plan's seeds."""
    chosen = {
        config_key(sel["group"], group_keys): config_key(sel["chosen"], plan.tune)
        for sel in selection
        if sel["chosen"] is not None
    }
    runs = []
    for run in plan.runs():
        canon = _canonical(run)
        pick = chosen.get(config_key(canon, group_keys))
        if pick is not None and config_key(canon, plan.tune) == pick:
            runs.append(run)
    return runs


def _preflight(plan: SweepPlan) -> None:
    """Fail now, not forty times later: every run's options, every dataset, every batch size."""
    from descentlab.train.config import from_mapping
    from descentlab.train.trainer import load_data

    configs = [from_mapping(train_options(run)) for run in plan.runs()]
    sizes: dict[tuple[Any, ...], int] = {}
    for cfg in configs:
        key = (cfg.dataset, cfg.data_dir, cfg.offline, cfg.label_column, cfg.subset)
        if key not in sizes:
            data = load_data(cfg)
            sizes[key] = int(data.train.y.shape[0])
        if cfg.batch_size > sizes[key]:
            raise ConfigError(
                f"batch size {cfg.batch_size} is larger than the training set of "
                f"{cfg.dataset} ({sizes[key]} examples)",
                hint=f"use batch sizes up to {sizes[key]}",
            )


def _rows(out: Path, manifest: _Manifest, stage: str | None = None) -> list[dict[str, Any]]:
    rows = []
    for entry in manifest.runs.values():
        if stage is not None and stage not in entry["stages"]:
            continue
        rows.append(_row(out, entry))
    return rows


def _row(out: Path, entry: Mapping[str, Any]) -> dict[str, Any]:
    from descentlab.train.config import from_mapping

    options = from_mapping(dict(entry["options"])).to_dict()
    # (the run's directory name replaces TrainConfig's own ``name`` option, unused in sweeps)
    row: dict[str, Any] = {
        **options,
        "name": entry["name"],
        "stages": list(entry["stages"]),
        "label": entry.get("label"),
    }
    measured = read_run(out / RUNS_DIR / entry["name"])
    for key in ("status", "error", *METRIC_FIELDS):
        row[key] = measured.get(key)
    row.setdefault("error", None)
    row["run_dir"] = str(Path(RUNS_DIR) / entry["name"])
    return row


def collect_results(
    sweep_dir: str | Path,
) -> tuple[SweepPlan, list[dict[str, Any]], list[dict[str, Any]]]:
    """Read a sweep directory back: ``(plan, rows, selection)`` (rows from the run dirs)."""
    sweep_dir = Path(sweep_dir)
    path = sweep_dir / MANIFEST
    if not path.is_file():
        raise CheckpointError(
            f"{sweep_dir} is not a sweep directory (no {MANIFEST})",
            hint="pass a directory written by 'descentlab compare' or 'descentlab study'",
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from None
    plan = SweepPlan.from_dict(data["plan"])
    rows = [_row(sweep_dir, entry) for entry in data.get("runs", [])]
    return plan, rows, list(data.get("selection") or [])


def write_results(sweep_dir: str | Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """``results.csv``: one row per run — name, stage, status, error, every option, the numbers."""
    from descentlab.train.config import FIELD_NAMES

    path = Path(sweep_dir) / RESULTS_CSV
    options = [k for k in FIELD_NAMES if k not in _CSV_SKIP_OPTIONS]
    fields = ["name", "stage", "label", "status", "error", *options, *METRIC_FIELDS, "run_dir"]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            flat = {k: _csv_value(v) for k, v in row.items()}
            flat["stage"] = "+".join(row.get("stages", []))
            writer.writerow(flat)
    os.replace(tmp, path)
    return path


def _csv_value(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    if value is None:
        return ""
    return value
