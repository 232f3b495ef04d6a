"""The tables of a sweep report: one row per configuration, per run, per tuning candidate."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

from descentlab.experiments.plan import format_value
from descentlab.experiments.report.context import (
    STAR,
    ReportContext,
    Section,
    Table,
    error_ci,
    fmt_ci,
    fmt_num,
    fmt_pct,
    fmt_pm,
)
from descentlab.experiments.stats import mean_std
from descentlab.experiments.tuning import describe_selection, selection_group_name


@dataclass
class Spread:
    """Mean and sample std (ddof=1) of one number over a configuration's finished seeds."""

    mean: float | None
    std: float | None
    n: int

    @classmethod
    def of(cls, values: Sequence[float | None]) -> Spread:
        vals = [float(v) for v in values if v is not None]
        mean, std = mean_std(vals) if vals else (None, None)
        return cls(mean, std, len(vals))


@dataclass
class ConfigSummary:
    """One configuration of the final runs, its seeds pooled.

    ``rows`` are all its runs, ``ok`` the finished ones, ``tuned`` the tuned options'
    values; each :class:`Spread` is over ``ok``; the error counts are pooled over
    seeds (for Wilson intervals).  ``summary["label"]`` works too, for code written
    against the dicts of earlier versions.
    """

    label: str
    rows: list[dict[str, Any]]
    ok: list[dict[str, Any]]
    tuned: dict[str, Any]
    best_valid_error: Spread
    test_error: Spread
    best_epoch: Spread
    seconds_to_best: Spread
    train_seconds: Spread
    wall_seconds: Spread
    model_train_error: Spread
    valid_errors: int
    valid_n: int
    test_errors: int
    test_n: int

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    @property
    def valid_rank(self) -> float:
        """The mean best validation error to rank by; without one, a configuration ranks last."""
        mean = self.best_valid_error.mean
        return math.inf if mean is None else mean

    @classmethod
    def of(cls, label: str, rows: list[dict[str, Any]], tune: Sequence[str]) -> ConfigSummary:
        ok = [r for r in rows if r["status"] == "ok"]

        def spread(key: str) -> Spread:
            return Spread.of([r.get(key) for r in ok])

        def pooled(split: str) -> tuple[int, int]:
            counted = [r for r in ok if r.get(f"{split}_errors") is not None]
            return (
                sum(int(r[f"{split}_errors"]) for r in counted),
                sum(int(r[f"n_{split}"]) for r in counted),
            )

        (valid_errors, valid_n), (test_errors, test_n) = pooled("valid"), pooled("test")
        return cls(
            label=label,
            rows=rows,
            ok=ok,
            tuned={k: rows[0].get(k) for k in tune},
            **{f.name: spread(f.name) for f in fields(cls) if f.type == "Spread"},
            valid_errors=valid_errors,
            valid_n=valid_n,
            test_errors=test_errors,
            test_n=test_n,
        )


def configuration_summaries(ctx: ReportContext) -> list[ConfigSummary]:
    """One :class:`ConfigSummary` per configuration of the final runs, in planned order."""
    groups: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
    for row in ctx.final:
        groups.setdefault(ctx.label(row), []).append(row)
    return [ConfigSummary.of(label, rows, ctx.plan.tune) for label, rows in groups.items()]


def _winners(
    summaries: Sequence[ConfigSummary], spread: Callable[[ConfigSummary], Spread]
) -> set[str]:
    """The labels with the lowest mean (ties all win)."""
    means: list[tuple[float, str]] = []
    for s in summaries:
        mean = spread(s).mean
        if mean is not None:
            means.append((mean, s.label))
    best = min((m for m, _ in means), default=None)
    return {label for m, label in means if m == best}


def configuration_table(ctx: ReportContext, summaries: Sequence[ConfigSummary]) -> Table:
    """The big table: per configuration, mean ± std over seeds and pooled Wilson intervals."""
    tuned = list(ctx.plan.tune)
    columns = [
        "configuration",
        *[f"chosen {k}" for k in tuned],
        "seeds ok",
        "best valid error",
        "valid 95% CI",
        "test error at best valid",
        "test 95% CI",
        "epochs to best",
        "seconds to best",
        "total seconds",
    ]

    def cell(
        s: ConfigSummary, spread: Callable[[ConfigSummary], Spread], pct: bool, ranked: bool
    ) -> str:
        # Only error columns are ranked: lower error is better, but fewer epochs or
        # seconds to the best point is not better when that best point is worse.
        value = spread(s)
        text = fmt_pm(value.mean, value.std, pct=pct, digits=2 if pct else 1)
        return f"{text} {STAR}" if ranked and s.label in _winners(summaries, spread) else text

    rows = []
    for s in summaries:
        rows.append(
            [
                s.label,
                *[format_value(s.tuned[k]) for k in tuned],
                f"{len(s.ok)}/{len(s.rows)}",
                cell(s, lambda c: c.best_valid_error, True, True),
                fmt_ci(error_ci(s.valid_errors, s.valid_n)),
                cell(s, lambda c: c.test_error, True, True),
                fmt_ci(error_ci(s.test_errors, s.test_n)),
                cell(s, lambda c: c.best_epoch, False, False),
                cell(s, lambda c: c.seconds_to_best, False, False),
                fmt_pm(s.train_seconds.mean, s.train_seconds.std, pct=False, digits=1),
            ]
        )
    return Table(
        columns,
        rows,
        caption=f"mean ± std over seeds; {STAR} = lowest (best) error of the column — epochs "
        "and seconds to the best point are not ranked: getting there sooner is no merit when "
        "the best point is worse; 95% CI = Wilson "
        "interval of the error count pooled over the seeds (test-set sampling only: the "
        "spread between seeds is the ± column)",
    )


def runs_table(ctx: ReportContext) -> Table:
    """Every run with its own Wilson intervals (the appendix)."""
    rows = []
    for r in ctx.rows:
        rows.append(
            [
                r["name"],
                "+".join(r["stages"]),
                str(r.get("seed")),
                r["status"] + (f": {r['error']}" if r.get("error") else ""),
                fmt_pct(r.get("best_valid_error")),
                fmt_ci(error_ci(r.get("valid_errors"), r.get("n_valid"))),
                fmt_pct(r.get("test_error")),
                fmt_ci(error_ci(r.get("test_errors"), r.get("n_test"))),
                str(r.get("best_epoch") if r.get("best_epoch") is not None else "–"),
                fmt_num(r.get("wall_seconds")),
            ]
        )
    return Table(
        [
            "run",
            "stage",
            "seed",
            "status",
            "best valid error",
            "valid 95% CI",
            "test error at best",
            "test 95% CI",
            "best epoch",
            "wall s",
        ],
        rows,
    )


def protocol_paragraphs(ctx: ReportContext) -> list[str]:
    plan = ctx.plan
    fixed = ", ".join(f"{k}={format_value(v)}" for k, v in plan.fixed.items())
    grid = "; ".join(
        ", ".join(f"{k} ∈ {{{', '.join(format_value(v) for v in vals)}}}" for k, vals in t.items())
        for t in plan.grid
    )
    n_ok = sum(r["status"] == "ok" for r in ctx.rows)
    out = [
        f"{len(ctx.rows)} runs ({n_ok} finished). Grid: {grid or '(none)'}. "
        f"Seeds: {', '.join(map(str, plan.seeds))}. Fixed options: {fixed or '(defaults)'}."
    ]
    if plan.tune:
        tuned = ", ".join(plan.tune)
        out.append(
            f"**How {tuned} was chosen.** Stage 1 ran every grid point with one seed "
            f"({plan.seeds[0]}); for each configuration the {tuned} with the lowest "
            "**validation** error was kept — the test set played no part in the choice. "
            f"Stage 2 re-ran the chosen {tuned} with all {len(plan.seeds)} seeds; the table "
            "reports those runs. Their validation errors helped choose, so they are "
            "slightly optimistic; the test errors are not."
        )
    else:
        out.append(
            "Every grid point ran with every seed. Configurations are ranked by validation "
            "error; the test error is reported, not used to choose."
        )
    return out


def selection_section(ctx: ReportContext, title: str) -> Section | None:
    """Stage 1 of the tuning protocol: every candidate's validation score, the choice marked."""
    if not ctx.selection:
        return None
    sel = Section(title)
    sel.text(*[describe_selection(s) for s in ctx.selection])
    metric = ctx.plan.select_metric
    rows = []
    for s in ctx.selection:
        group = selection_group_name(s)
        for c in s["candidates"]:
            chosen = s["chosen"] is not None and c["values"] == s["chosen"]
            values = ", ".join(f"{k}={format_value(v)}" for k, v in c["values"].items())
            score = fmt_pct(c["score"]) if metric.endswith("error") else fmt_num(c["score"], 4)
            rows.append(
                [
                    group,
                    values,
                    score,
                    f"{c['failed']} of {c['runs']}" if c["failed"] else "0",
                    STAR if chosen else "",
                ]
            )
    columns = ["configuration", "candidate", metric.replace("_", " "), "failed", "chosen"]
    return sel.table(Table(columns, rows))
