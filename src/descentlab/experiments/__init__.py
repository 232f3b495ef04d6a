"""Experiments: plans and sweeps, statistics, reports, built-in studies, the landscape lab.

Inside, modules import one way: ``plan``, ``stats``, ``tuning`` → ``store`` → ``runs``
→ ``executor`` → ``sweep``; ``report/`` reads ``store``; ``studies/`` build on
``report``; ``workflow`` (run_sweep, build_report, run_study) sits on top.

Heavy modules (matplotlib, the sweep runner) are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "SweepPlan": "descentlab.experiments.plan",
    "expand_grid": "descentlab.experiments.plan",
    "read_plan_file": "descentlab.experiments.plan",
    "run_sweep": "descentlab.experiments.workflow",
    "run_study": "descentlab.experiments.workflow",
    "build_report": "descentlab.experiments.workflow",
    "execute_sweep": "descentlab.experiments.sweep",
    "SweepResult": "descentlab.experiments.sweep",
    "select_best": "descentlab.experiments.tuning",
    "collect_results": "descentlab.experiments.store",
    "write_results": "descentlab.experiments.store",
    "read_run": "descentlab.experiments.store",
    "Executor": "descentlab.experiments.executor",
    "LocalExecutor": "descentlab.experiments.executor",
    "STUDIES": "descentlab.experiments.studies",
    "explain": "descentlab.experiments.explain",
    "wilson_interval": "descentlab.experiments.stats",
    "mcnemar": "descentlab.experiments.stats",
    "mean_std": "descentlab.experiments.stats",
    "summarize_seeds": "descentlab.experiments.stats",
    "plot_curves": "descentlab.plots",
    "plot_lr_sensitivity": "descentlab.plots",
    "plot_learning_curve": "descentlab.plots",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'descentlab.experiments' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
