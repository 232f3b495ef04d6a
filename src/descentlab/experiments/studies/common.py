"""What every built-in study shares: settings, the Study record, lr grids, plan helpers.

A study's plan function differs between its *fast* and *full* setting only in a few
options: :func:`study_plan` takes both option sets and builds the
:class:`~descentlab.experiments.plan.SweepPlan`, so a study file lists what it
changes and nothing else.
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from descentlab.errors import ConfigError
from descentlab.experiments.plan import SweepPlan
from descentlab.experiments.report import ReportContext, Section

__all__ = [
    "KNOWN_GOOD_LR",
    "MNIST_MLP",
    "SMALL_MLP",
    "Study",
    "StudySettings",
    "best_so_far",
    "epoch_ranges",
    "group_rows",
    "lr_grid",
    "mean_curve",
    "mean_finite",
    "seed_count",
    "study_plan",
    "study_report",
]

#: The small MLP setting of the fast studies (digits: seconds per run) and the
#: tutorials' MNIST MLP of the full ones.
SMALL_MLP: dict[str, Any] = {
    "dataset": "digits",
    "model": "mlp",
    "hidden": [64],
    "batch_size": 32,
    "shuffle": True,
}
MNIST_MLP: dict[str, Any] = {
    "dataset": "mnist",
    "model": "mlp",
    "hidden": [500],
    "batch_size": 20,
    "shuffle": True,
}


@dataclass
class StudySettings:
    """How to run a study: fast or full, and a few overrides."""

    fast: bool = True
    seeds: int | None = None
    data_dir: str | None = None
    datasets: Sequence[str] | None = None


@dataclass(frozen=True)
class Study:
    """A preset sweep (``plan``) plus the report sections that answer its question."""

    name: str
    summary: str
    plan: Callable[[StudySettings], SweepPlan]
    sections: Callable[[ReportContext], list[Section]]
    split_by: str | None = None


Findings = Callable[[ReportContext, Section], None]


def study_report(
    heading: str, method: str | None = None
) -> Callable[[Findings], Callable[[ReportContext], list[Section]]]:
    """Make ``findings(ctx, sec)`` a study's ``report_sections(ctx)``.

    Every study reports in one section: titled ``heading``, opened by the ``method``
    paragraph (how the study was run, when it says so up front), then what the
    decorated function finds in the runs.
    """

    def decorate(findings: Findings) -> Callable[[ReportContext], list[Section]]:
        @functools.wraps(findings)
        def report_sections(ctx: ReportContext) -> list[Section]:
            sec = Section(heading)
            if method is not None:
                sec.text(method)
            findings(ctx, sec)
            return [sec]

        return report_sections

    return decorate


#: Learning rates known to work for an MLP on MNIST with minibatches of ~64 (each
#: optimizer's usual default or the value the literature starts from); the lr grids
#: are centred on them.
KNOWN_GOOD_LR: dict[str, float] = {
    "sgd": 0.1,
    "momentum": 0.01,
    "nesterov": 0.01,
    "adagrad": 0.03,
    "rmsprop": 1e-3,
    "rmsprop-nesterov": 3e-4,
    "adam": 1e-3,
    "adadelta": 1.0,
}


def lr_grid(center: float, below: int, above: int | None = None) -> list[float]:
    """``below`` points under ``center`` and ``above`` over it on the 1–3–10 log grid.

    The grid ..., 0.01, 0.03, 0.1, 0.3, 1, ... has (almost) half-decade steps and round
    values; ``center`` snaps to its nearest point.  ``lr_grid(0.03, 1) == [0.01, 0.03, 0.1]``.
    """
    above = below if above is None else above
    if not center > 0 or below < 0 or above < 0:
        raise ConfigError(f"need center > 0 and steps >= 0, got {center}, {below}, {above}")

    def point(k: int) -> float:
        return float(f"{(1, 3)[k % 2] * 10.0 ** (k // 2):.1g}")

    # log10(3) ≈ 0.477: point k sits at ≈ k/2 decades, so k ≈ 2·log10(center).
    k0 = min(
        range(math.floor(2 * math.log10(center)) - 1, math.ceil(2 * math.log10(center)) + 2),
        key=lambda k: abs(math.log10(point(k) / center)),
    )
    return [point(k) for k in range(k0 - below, k0 + above + 1)]


def seed_count(settings: StudySettings, fast: int, full: int) -> int:
    """The seeds to run: the user's count, else ``fast`` or ``full`` by the setting."""
    n = settings.seeds if settings.seeds is not None else (fast if settings.fast else full)
    if n < 1:
        raise ConfigError(f"a study needs at least one seed, got {n}")
    return n


def study_plan(
    settings: StudySettings,
    name: str,
    title: str,
    grid: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    *,
    fast: Mapping[str, Any],
    full: Mapping[str, Any],
    seeds: tuple[int, int] = (3, 5),
    **plan_options: Any,
) -> SweepPlan:
    """The plan of study ``name``: ``fast`` or ``full`` fixed options by the setting.

    ``seeds`` is the (fast, full) seed count unless the user gave one; ``plan_options``
    go to :meth:`SweepPlan.build` (``tune``, ``select_metric``).
    """
    fixed = dict(fast if settings.fast else full)
    if settings.data_dir:
        fixed["data_dir"] = settings.data_dir
    return SweepPlan.build(
        grid,
        fixed,
        seeds=seed_count(settings, *seeds),
        title=f"Study: {title}" + (" (fast)" if settings.fast else ""),
        study=name,
        **plan_options,
    )


def mean_finite(values: Sequence[float]) -> float | None:
    """The mean of the finite values; None when there are none."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return sum(vals) / len(vals) if vals else None


def best_so_far(history: Sequence[Mapping[str, Any]], x_key: str, budget: float) -> float | None:
    """The lowest validation error among the validations with ``x_key <= budget``."""
    vals = [r["valid_error"] for r in history if r.get(x_key) is not None and r[x_key] <= budget]
    return min(vals) if vals else None


def mean_curve(histories: Sequence[Sequence[Mapping[str, Any]]], key: str) -> dict[int, float]:
    """Epoch → mean of ``key`` over the runs that validated at that epoch."""
    by_epoch: OrderedDict[int, list[float]] = OrderedDict()
    for hist in histories:
        for row in hist:
            if row.get(key) is not None:
                by_epoch.setdefault(int(row["epoch"]), []).append(float(row[key]))
    return {e: sum(v) / len(v) for e, v in sorted(by_epoch.items())}


def epoch_ranges(epochs: Sequence[int]) -> str:
    """``[3, 4, 5, 9]`` → ``"3–5, 9"``."""
    epochs = sorted(set(epochs))
    parts: list[str] = []
    start: int | None = None
    prev = 0
    for e in epochs:
        if start is None:
            start = prev = e
        elif e == prev + 1:
            prev = e
        else:
            parts.append(f"{start}–{prev}" if prev != start else str(start))
            start = prev = e
    if start is not None:
        parts.append(f"{start}–{prev}" if prev != start else str(start))
    return ", ".join(parts)


def group_rows(rows: Sequence[Mapping[str, Any]], key: str) -> OrderedDict[Any, list]:
    """Rows by their value of ``key`` (lists made hashable), in order of appearance."""
    out: OrderedDict[Any, list] = OrderedDict()
    for r in rows:
        value = r.get(key)
        out.setdefault(tuple(value) if isinstance(value, list) else value, []).append(r)
    return out
