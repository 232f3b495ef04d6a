"""Experiments: grids and sweeps, statistics, plots, reports, built-in studies, the landscape lab.

Heavy modules (matplotlib, the sweep runner) are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "SweepPlan": "descentlab.experiments.grid",
    "expand_grid": "descentlab.experiments.grid",
    "read_plan_file": "descentlab.experiments.grid",
    "run_sweep": "descentlab.experiments.sweep",
    "select_best": "descentlab.experiments.sweep",
    "collect_results": "descentlab.experiments.sweep",
    "SweepResult": "descentlab.experiments.sweep",
    "build_report": "descentlab.experiments.report",
    "run_study": "descentlab.experiments.studies",
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
