"""Fused sweeps: a stage's runs grouped into fused groups, and what a worker does with one.

:func:`plan_units` turns a stage's :class:`~descentlab.experiments.runs.RunTask` list
into *units*: a :class:`FusedTask` for each group of runs that can train as one batched
model (:mod:`descentlab.train.fused`: same model, data and batch size; members differ
in seed, optimizer, lr, schedule, optimizer hyperparameters, L1/L2 and stopping), a
plain ``RunTask`` for every other run.  A run the fused trainer cannot handle (LeNet,
dropout, clipping, ...) runs separately, as with ``--no-fuse``.

Group size: at most :func:`~descentlab.train.fused.max_group_size` members (half the
free memory shared by the workers), and no more than a worker's share of the stage's
work (parameters × epochs), so that every worker gets some; the units go to the workers
largest first (the longest-processing-time rule), so they finish close together.

:func:`execute_unit` is the executor's runner: a ``RunTask`` goes to
:func:`~descentlab.experiments.runs.execute_run`, a ``FusedTask`` to
:func:`execute_fused`, which leaves each member's run directory as its separate run
would (the same files, ``sweep_run.json`` with the same extras) and returns one outcome
per member under ``"members"``.  A group the fused trainer refuses after all runs its
members one by one.  Resuming: a group's members checkpoint into their own run
directories; the runs of a killed group resume from there as a group again (runs
checkpointed at the same iteration share a group; a run whose checkpoint manifest cannot
be read resumes alone; when a member's checkpoint turns out damaged on loading, the
group's runs resume one by one and that run starts over).
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from descentlab.experiments.runs import (
    RunTask,
    execute_run,
    failure,
    record_result,
    record_status,
)
from descentlab.experiments.store import RUN_STATUS, write_json
from descentlab.train.build import load_data
from descentlab.train.callbacks import Callback, MetricsFiles, RunDirectory
from descentlab.train.checkpoint import checkpoint_info
from descentlab.train.config import TrainConfig, from_mapping
from descentlab.train.fused import (
    fit_group,
    fuse_problem,
    group_key,
    max_group_size,
    parameter_count,
)
from descentlab.train.interrupt import TrainingInterrupted
from descentlab.train.records import FitResult

__all__ = [
    "FusedTask",
    "Unit",
    "describe_units",
    "execute_fused",
    "execute_unit",
    "member_outcomes",
    "plan_units",
]


@dataclass
class FusedTask:
    """Runs trained together as one fused group (:mod:`descentlab.train.fused`)."""

    name: str
    tasks: list[RunTask]

    @property
    def run_dir(self) -> str:
        """The first member's run directory (where an executor looks for a dead worker's mark)."""
        return self.tasks[0].run_dir

    @property
    def resume(self) -> bool:
        """Whether the members continue from their checkpoints (all or none do)."""
        return any(t.resume for t in self.tasks)


Unit = RunTask | FusedTask

#: A group's members checkpoint at epoch ends at most this often (as a sweep's separate
#: runs do, :class:`~descentlab.experiments.runs.ThrottledCheckpointer`).
CHECKPOINT_SECONDS = 30.0


def _fusable(task: RunTask) -> tuple[TrainConfig, tuple[Any, ...]] | None:
    """The run's config and the point it starts from, when it can train in a group."""
    cfg = from_mapping(task.options)
    if fuse_problem(cfg):
        return None
    if not task.resume:
        return cfg, ()
    # A resumed run joins the runs checkpointed at the same point (a group interrupted
    # together); read from the checkpoint's manifest, no tensor loaded.
    info = checkpoint_info(Path(task.run_dir) / "checkpoint")
    point = (info.meta.get("iteration"), info.meta.get("epoch")) if info is not None else ()
    if not all(type(n) is int for n in point) or not point:
        return None  # unreadable or crafted: the run resumes alone, where the load says why
    return cfg, point


def _shape(cfg: TrainConfig, cache: dict[tuple[Any, ...], tuple[int, int]]) -> tuple[int, int]:
    key = (cfg.dataset, cfg.data_dir, cfg.subset, cfg.label_column)
    if key not in cache:
        data = load_data(cfg)
        cache[key] = (int(np.prod(data.train.x.shape[1:])), int(data.n_classes))
    return cache[key]


def plan_units(tasks: Sequence[RunTask], *, workers: int = 1) -> list[Unit]:
    """``tasks`` as fused groups and runs alone, the most work first.

    The work of a run is estimated as parameters × epochs (the same data in a stage).
    A group is split when it holds more than a worker's share of the stage's work (so
    no worker waits idle for the last one) or more members than the memory allows.
    Longest first, the workers finish close together.
    """
    shapes: dict[tuple[Any, ...], tuple[int, int]] = {}

    def work(cfg: TrainConfig) -> float:
        return float(parameter_count(cfg, *_shape(cfg, shapes)) * cfg.max_epochs)

    groups: dict[tuple[Any, ...], list[tuple[RunTask, TrainConfig]]] = {}
    units: list[tuple[float, Unit]] = []
    total = 0.0
    for task in tasks:
        fusable = _fusable(task)
        if fusable is None:
            alone_cfg = from_mapping(task.options)
            cost = work(alone_cfg) if alone_cfg.model in ("logreg", "mlp") else math.inf
            units.append((cost, task))
            total += cost if math.isfinite(cost) else 0.0
        else:
            cfg, point = fusable
            groups.setdefault((group_key(cfg), point), []).append((task, cfg))
            total += work(cfg)
    share = total / max(1, workers)
    for members in groups.values():
        cfg = members[0][1]
        per = work(cfg)
        limit = min(
            max(1, math.floor(share / per)) if per > 0 else len(members),
            max_group_size(cfg, *_shape(cfg, shapes), workers=workers),
        )
        n_chunks = math.ceil(len(members) / limit)
        size = math.ceil(len(members) / n_chunks)
        for start in range(0, len(members), size):
            chunk = [task for task, _ in members[start : start + size]]
            unit: Unit = chunk[0]
            if len(chunk) > 1:
                unit = FusedTask(f"fused[{chunk[0].name}, +{len(chunk) - 1}]", chunk)
            units.append((per * len(chunk), unit))
    units.sort(key=lambda pair: -pair[0])
    return [unit for _, unit in units]


def describe_units(units: Sequence[Unit]) -> str:
    """``"96 runs in 4 fused groups + 2 separate"``."""
    groups = [u for u in units if isinstance(u, FusedTask)]
    runs = sum(len(u.tasks) if isinstance(u, FusedTask) else 1 for u in units)
    separate = len(units) - len(groups)
    plural = "" if len(groups) == 1 else "s"
    return f"{runs} runs in {len(groups)} fused group{plural} + {separate} separate"


def execute_unit(unit: Unit) -> dict[str, Any]:
    """The executor's runner with fusing on: one run, or a fused group."""
    if isinstance(unit, FusedTask):
        return execute_fused(unit)
    return execute_run(unit)


def _callbacks(run_dir: Path | None) -> list[Callback]:
    # A sweep's run files, as sweep_callbacks (no checkpoints: a group writes none).
    return [MetricsFiles(run_dir), RunDirectory(run_dir, plot=False)] if run_dir else []


def _record(task: RunTask, outcome: Any, cfg: TrainConfig, seconds: float) -> dict[str, Any]:
    """Write member ``task``'s ``sweep_run.json`` as :func:`execute_run` does; its outcome."""
    run_dir = Path(task.run_dir)
    status: dict[str, Any] = {"status": "ok", "error": None, "resumed": task.resume}
    if isinstance(outcome, FitResult):
        record_result(status, run_dir, outcome, cfg)
    elif isinstance(outcome, TrainingInterrupted):
        status.update(status="interrupted", error=str(outcome))
    else:
        status.update(
            status="failed", error=" ".join(str(outcome).split()), error_type=type(outcome).__name__
        )
    return record_status(task, status, seconds)


def execute_fused(unit: FusedTask) -> dict[str, Any]:
    """Train ``unit``'s runs as one fused group; one outcome per member under ``members``.

    Never raises for a run's failure.  If the group cannot be built at all, its members
    run one by one (:func:`execute_run`), so no run is lost to fusing.
    """
    t0 = time.perf_counter()
    configs = [from_mapping(t.options) for t in unit.tasks]
    for task in unit.tasks:
        Path(task.run_dir).mkdir(parents=True, exist_ok=True)
        write_json(Path(task.run_dir) / RUN_STATUS, {"status": "running", "pid": os.getpid()})
    try:
        outcomes = fit_group(
            configs,
            out=[t.run_dir for t in unit.tasks],
            callbacks=_callbacks,
            checkpoint_seconds=CHECKPOINT_SECONDS,
            resume=[t.resume for t in unit.tasks],
        )
    except KeyboardInterrupt:  # a second signal: stopped at once (the checkpoints stay)
        members = [
            _record(t, TrainingInterrupted(signal.SIGINT, Path(t.run_dir)), cfg, 0.0)
            for t, cfg in zip(unit.tasks, configs)
        ]
    except Exception:  # refused or broken as a group: the runs alone (never lost)
        members = [execute_run(t) for t in unit.tasks]
    else:
        seconds = (time.perf_counter() - t0) / len(unit.tasks)
        members = [_record(t, o, cfg, seconds) for t, o, cfg in zip(unit.tasks, outcomes, configs)]
    interrupted = any(m["status"] == "interrupted" for m in members)
    return {
        "name": unit.name,
        "status": "interrupted" if interrupted else "ok",
        "error": None,
        "wall_seconds": time.perf_counter() - t0,
        "members": members,
    }


def member_outcomes(unit: FusedTask, outcome: dict[str, Any]) -> list[dict[str, Any]]:
    """Each member's outcome (for a group that never ran: cancelled, its worker died)."""
    if "members" in outcome:
        return list(outcome["members"])
    if outcome["status"] == "failed":
        return [failure(t, outcome.get("error") or "the fused group failed") for t in unit.tasks]
    return [{**outcome, "name": t.name} for t in unit.tasks]
