"""Running a sweep: a plan's runs handed to an executor, their results kept in a store.

:func:`execute_sweep` is plan → executor → store and nothing else: it never builds a
report (:func:`descentlab.experiments.workflow.run_sweep` does both).

Resuming.  A run whose directory holds a finished run of the same options is
skipped; one with a checkpoint but no summary (killed, interrupted) continues from
its checkpoint; one that failed (e.g. diverged) is started again from scratch.  A run
that fails never stops the sweep: it is recorded with its error message.

Tuning on validation, never on test: with ``plan.tune`` the sweep runs the two
stages of :mod:`descentlab.experiments.tuning`.  The stage-1 run of the chosen value
is the same run as its stage-2 first seed and is not repeated.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from tqdm.auto import tqdm

from descentlab.errors import ConfigError, DescentlabError
from descentlab.experiments.dask_executor import DaskExecutor
from descentlab.experiments.executor import (
    Executor,
    LocalExecutor,
    Runner,
    default_jobs,
    threads_per_job,
)
from descentlab.experiments.fused_runs import (
    FusedTask,
    Unit,
    describe_units,
    execute_unit,
    member_outcomes,
    plan_units,
)
from descentlab.experiments.plan import SweepPlan, train_options
from descentlab.experiments.runs import RunTask, execute_run
from descentlab.experiments.store import (
    MANIFEST,
    RESULTS_CSV,
    RUN_STATUS,
    RUNS_DIR,
    Manifest,
    read_summary,
    run_state,
    sweep_rows,
    write_results,
)
from descentlab.experiments.tuning import chosen_runs, describe_selection, select_best
from descentlab.fsio import WriterLock, check_folder, make_folder
from descentlab.train.build import check_names, data_use_warnings, load_data, seeds_can_differ
from descentlab.train.config import from_mapping

__all__ = [
    "SweepInterrupted",
    "SweepOptions",
    "SweepResult",
    "execute_sweep",
    "preflight",
]


class SweepOptions(TypedDict, total=False):
    """How :func:`execute_sweep` runs a plan: the keywords ``run_sweep`` passes through."""

    jobs: int | None
    progress: bool
    stream: Any
    command: Sequence[str] | None
    runner: Runner
    executor: Executor | None
    scheduler: str | None
    fuse: bool


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
    """One progress line for a finished run."""
    if outcome["status"] != "ok":
        return f"{name}: {outcome['status'].upper()} ({outcome.get('error')})"
    s = read_summary(run_dir)
    if s is None:
        return f"{name}: finished, no summary.json, {outcome['wall_seconds']:.1f}s"
    v, t = s.best_valid_error, s.test_error
    vtxt = f"{100 * v:.2f}%" if v is not None else "-"
    ttxt = f"{100 * t:.2f}%" if t is not None else "-"
    return (
        f"{name}: valid {vtxt}, test@best {ttxt}, best epoch {s.best_epoch}"
        f"/{s.epochs_run}, {outcome['wall_seconds']:.1f}s"
    )


class SweepInterrupted(DescentlabError):
    """Ctrl-C stopped a sweep; finished runs are kept and the same command resumes it."""

    exit_code = 130

    def __init__(self, out: Path, command: Sequence[str] | None) -> None:
        again = " ".join(command) if command else f"the same command with --out {out}"
        super().__init__(
            f"interrupted; finished runs are kept in {out}",
            hint=f"resume with: {again}",
        )


def preflight(plan: SweepPlan) -> list[str]:
    """Fail now, not forty times later: every run's options, every dataset, every batch size.

    Returns the warnings worth printing before the runs start (a batch size that wastes
    the data, seeds that cannot differ).
    """
    configs = [from_mapping(train_options(run)) for run in plan.runs()]
    sizes: dict[tuple[Any, ...], int] = {}
    warnings: list[str] = []
    for cfg in configs:
        check_names(cfg)
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
        warnings += [
            f"{cfg.dataset}: {w}"
            for w in data_use_warnings(cfg, sizes[key])
            if f"{cfg.dataset}: {w}" not in warnings
        ]
    if (
        len(plan.seeds) > 1
        and configs
        and not any(seeds_can_differ(c) for c in configs)
        and not _split_depends_on_seed(configs[0], plan.seeds[:2])
    ):
        warnings.append(
            f"the {len(plan.seeds)} seeds will give identical runs: zero initialization "
            "(logreg's default), no --shuffle, no dropout and a fixed split leave nothing "
            "random (add --shuffle or --init normal to make seeds differ)"
        )
    return warnings


def _split_depends_on_seed(cfg: Any, seeds: Sequence[int]) -> bool:
    """Whether two seeds draw different training sets.

    The scikit-learn sets' stratified splits do; MNIST's fixed tutorial split does not.
    """
    a, b = (load_data(cfg, seed=int(s)).train for s in seeds)
    return a.y.shape != b.y.shape or not (bool((a.y == b.y).all()) and bool((a.x == b.x).all()))


#: Seconds to wait for a run directory still held by a worker of a killed sweep.
RUN_LOCK_WAIT = 15.0


class _Sweep:
    """The state of one :func:`execute_sweep` call: where, on what, and how it talks."""

    def __init__(
        self,
        out: Path,
        plan: SweepPlan,
        executor: Executor,
        progress: bool,
        stream: Any,
        fuse: bool = False,
    ) -> None:
        self.out, self.plan, self.executor = out, plan, executor
        self.progress, self.stream = progress, stream
        self.fuse = fuse
        self.manifest = Manifest(out / MANIFEST, plan)

    def say(self, text: str) -> None:
        if self.progress:
            print(text, file=self.stream, flush=True)

    def tasks(self, names: Sequence[str]) -> tuple[list[RunTask], int]:
        """The tasks still to run among ``names``, and how many are finished already."""
        tasks, skipped = [], 0
        for name in dict.fromkeys(names):
            entry = self.manifest.runs[name]
            run_dir = self.out / RUNS_DIR / name
            options = {
                **entry["options"],
                "out": str(run_dir),
                "quiet": True,
                "threads": self.executor.threads,
            }
            state = run_state(run_dir, options)
            if state == "done":
                skipped += 1
                continue
            if run_dir.exists():
                # A worker of an earlier, killed sweep may still be finishing this run:
                # wait (briefly: orphaned workers exit with their parent) until it is gone.
                WriterLock(run_dir, "run").acquire(wait=RUN_LOCK_WAIT).release()
            if state == "fresh" and run_dir.exists():
                shutil.rmtree(run_dir)
            if state == "resume":
                # Forget the old "running" mark: only the worker that resumes it sets it again.
                (run_dir / RUN_STATUS).unlink(missing_ok=True)
            tasks.append(RunTask(name, str(run_dir), options, resume=state == "resume"))
        return tasks, skipped

    def stage(self, runs: list[dict[str, Any]], stage_name: str, desc: str) -> None:
        names = [self.manifest.add(r, stage_name) for r in runs]
        self.manifest.save()
        tasks, skipped = self.tasks(names)
        jobs, threads = self.executor.jobs, self.executor.threads
        units: list[Unit] = list(tasks)
        if self.fuse and tasks:
            units = plan_units(tasks, workers=jobs)
        self.say(
            f"{desc}: {len(dict.fromkeys(names))} runs"
            + (f", {skipped} already finished (skipped)" if skipped else "")
            + (
                f"; running {len(tasks)} on {min(jobs, max(len(units), 1))} workers"
                f" x {threads} threads"
                if tasks
                else ""
            )
            + (f" ({describe_units(units)})" if self.fuse and tasks else "")
        )
        bar = _Progress(len(tasks), self.stream, self.progress, desc)

        def done(unit: Any, outcome: dict[str, Any]) -> None:
            if isinstance(unit, FusedTask):
                for task, member in zip(unit.tasks, member_outcomes(unit, outcome)):
                    bar.finished(_describe(task.name, member, Path(task.run_dir)))
            else:
                bar.finished(_describe(unit.name, outcome, Path(unit.run_dir)))

        try:
            # (a FusedTask has a RunTask's name and run_dir: the executors take it as one)
            self.executor.map(units, done)  # type: ignore[arg-type]
        finally:
            bar.close()

    def tuned(self) -> None:
        """Stage 1 on the first seed, the choice on validation, stage 2 on every seed."""
        plan = self.plan
        first = [plan.seeds[0]]
        self.stage(
            plan.runs(seeds=first),
            "search",
            f"stage 1 (tune {', '.join(plan.tune)} on validation, seed {first[0]})",
        )
        rows = sweep_rows(self.out, self.manifest, stage="search")
        group_keys = [k for k in plan.config_keys if k not in plan.tune]
        self.manifest.selection = select_best(
            rows, plan.tune, group_keys, metric=plan.select_metric
        )
        self.manifest.save()
        finals = chosen_runs(plan, self.manifest.selection, group_keys)
        for sel in self.manifest.selection:
            self.say("  " + describe_selection(sel))
        self.stage(finals, "final", f"stage 2 (chosen values x {len(plan.seeds)} seeds)")


def execute_sweep(
    plan: SweepPlan,
    out: str | Path,
    *,
    jobs: int | None = None,
    progress: bool = True,
    stream: Any = None,
    command: Sequence[str] | None = None,
    runner: Runner = execute_run,
    executor: Executor | None = None,
    scheduler: str | None = None,
    fuse: bool = True,
) -> SweepResult:
    """Run (or resume) every run of ``plan`` into ``out`` and write results.csv; no report.

    ``jobs`` worker processes (default: one per core), each with ``max(1, cores // jobs)``
    torch threads unless the plan fixes ``threads``; or any ``executor``.  With
    ``plan.tune`` the two-stage protocol of :mod:`descentlab.experiments.tuning` is used.
    ``progress``: one line per finished run on ``stream`` (default stdout) and a progress
    bar on a terminal.  ``scheduler`` (``tcp://HOST:8786``): run on that Dask cluster
    instead (:mod:`descentlab.experiments.dask_executor`; ``out`` must be shared storage).
    ``fuse`` (local workers, the default runner): runs that can train as one batched
    model do (:mod:`descentlab.experiments.fused_runs`); ``fuse=False``: one run at a time
    per worker.  Either way each run's directory and results are the same.
    """
    out = check_folder(out, "the sweep folder")
    # Everything is checked before anything is created or started (bad plans raise here).
    for message in preflight(plan):
        print(f"descentlab: warning: {message}", file=sys.stderr, flush=True)
    if executor is None and scheduler is not None:
        out = out.resolve()  # the workers' working folders are not this one
        threads = int(plan.fixed.get("threads") or 1)
        dask_executor = DaskExecutor(scheduler, threads=threads, runner=runner)
        try:
            dask_executor.check_shared(out)
        except BaseException:
            dask_executor.close()
            raise
        executor = dask_executor
    if executor is None:
        jobs = default_jobs() if jobs is None else int(jobs)
        if jobs < 1:
            raise ConfigError(f"jobs must be >= 1, got {jobs}", hint="e.g. --jobs 2")
        threads = int(plan.fixed.get("threads") or threads_per_job(jobs))
        fuse = fuse and runner is execute_run
        executor = LocalExecutor(jobs, threads, runner=execute_unit if fuse else runner)  # type: ignore[arg-type]
    else:
        fuse = False
    try:
        make_folder(out, "the sweep folder")
        # One writer per sweep: a second compare/study on this folder is refused at once.
        lock = WriterLock(out, "sweep").acquire()
    except BaseException:
        executor.close()  # nothing ran: leave no workers behind
        raise
    try:
        return _execute(out, plan, executor, progress, stream, command, fuse)
    finally:
        lock.release()


def _execute(
    out: Path,
    plan: SweepPlan,
    executor: Executor,
    progress: bool,
    stream: Any,
    command: Sequence[str] | None,
    fuse: bool = False,
) -> SweepResult:
    sweep = _Sweep(out, plan, executor, progress, stream or sys.stdout, fuse)
    sweep.manifest.command = list(command) if command is not None else None
    try:
        if plan.tune:
            sweep.tuned()
        else:
            sweep.stage(plan.runs(), "final", "sweep")
    except KeyboardInterrupt:
        raise SweepInterrupted(out, sweep.manifest.command) from None
    finally:
        executor.close()
        # Whatever happened (even Ctrl-C), the results so far are on disk.
        sweep.manifest.save()
        rows = sweep_rows(out, sweep.manifest)
        write_results(out, rows)
    result = SweepResult(path=out, plan=plan, rows=rows, selection=sweep.manifest.selection)
    failed = result.failed
    if failed:
        sweep.say(
            f"{len(failed)} of {len(rows)} runs did not finish: see results.csv (column error)"
        )
    sweep.say(f"results: {out / RESULTS_CSV}")
    return result
