"""The top of the experiments layer: a sweep or a study from plan to report.

:func:`run_sweep` = :func:`~descentlab.experiments.sweep.execute_sweep` (plan →
executor → store) followed by :func:`build_report`; :func:`build_report` is the
report builder with the built-in studies' sections; :func:`run_study` runs one
built-in study.  These are what the CLI and ``descentlab.experiments`` export.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Unpack

from descentlab.experiments import report as report_
from descentlab.experiments.plan import SweepPlan
from descentlab.experiments.report import ReportContext, Section
from descentlab.experiments.studies import STUDIES, StudySettings, get_study
from descentlab.experiments.sweep import SweepOptions, SweepResult, execute_sweep

__all__ = ["build_report", "run_study", "run_sweep"]


def build_report(
    sweep_dir: str | Path,
    *,
    title: str | None = None,
    extra: Callable[[ReportContext], list[Section]] | None = None,
) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` (and ``figures/``) into ``sweep_dir``.

    A sweep made by a built-in study gets the study's own sections and split (see
    :func:`descentlab.experiments.report.build_report`).  Returns ``(html, md)``.
    """
    return report_.build_report(sweep_dir, title=title, extra=extra, studies=STUDIES)


def run_sweep(
    plan: SweepPlan,
    out: str | Path,
    *,
    report: bool = True,
    **options: Unpack[SweepOptions],
) -> SweepResult:
    """Run (or resume) every run of ``plan`` into ``out``; write results.csv and the report.

    ``options`` are :func:`~descentlab.experiments.sweep.execute_sweep`'s (``jobs``,
    ``progress``, ``stream``, ``runner``, ``executor``, ``scheduler`` for a Dask cluster,
    ``fuse`` to train the runs that allow it as fused groups); ``report=False`` skips the
    report.
    """
    result = execute_sweep(plan, out, **options)
    if report:
        result.report = build_report(result.path)
        if options.get("progress", True):
            stream = options.get("stream") or sys.stdout
            print(f"report: {result.report[0]}", file=stream, flush=True)
    return result


def run_study(
    name: str,
    *,
    fast: bool = True,
    out: str | Path | None = None,
    jobs: int | None = None,
    seeds: int | None = None,
    data_dir: str | None = None,
    datasets: Sequence[str] | None = None,
    progress: bool = True,
    report: bool = True,
    stream: Any = None,
    scheduler: str | None = None,
    fuse: bool = True,
) -> SweepResult:
    """Run (or resume) a built-in study into ``out`` (default ``studies/<name>[-fast]``).

    Returns the :class:`~descentlab.experiments.sweep.SweepResult`; its report holds the
    study's own sections.
    """
    study = get_study(name)
    settings = StudySettings(fast=fast, seeds=seeds, data_dir=data_dir, datasets=datasets)
    plan = study.plan(settings)
    if out is None:
        out = Path("studies") / (f"{name}-fast" if fast else name)
    return run_sweep(
        plan,
        out,
        jobs=jobs,
        progress=progress,
        report=report,
        stream=stream,
        scheduler=scheduler,
        fuse=fuse,
    )
