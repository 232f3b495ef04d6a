"""The tables of a sweep report: one row per configuration, per run, per tuning candidate."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
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

__all__ = [
    "configuration_summaries",
    "configuration_table",
    "protocol_paragraphs",
    "runs_table",
    "selection_section",
]


def configuration_summaries(ctx: ReportContext) -> list[dict[str, Any]]:
    """One dict per configuration of the final runs, in the order they were planned.

    Holds ``label``, ``rows`` (all its runs), ``ok`` (finished runs), the tuned values,
    ``mean``/``std`` of ``best_valid_error``, ``test_error``, ``best_epoch``,
    ``seconds_to_best`` and ``train_seconds``, and the error counts pooled over seeds
    (``valid_errors``/``valid_n``, ``test_errors``/``test_n``).
    """
    groups: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
    for row in ctx.final:
        groups.setdefault(ctx.label(row), []).append(row)
    out = []
    for label, members in groups.items():
        ok = [r for r in members if r["status"] == "ok"]
        summary: dict[str, Any] = {"label": label, "rows": members, "ok": ok}
        summary["tuned"] = {k: members[0].get(k) for k in ctx.plan.tune}
        for key in (
            "best_valid_error",
            "test_error",
            "best_epoch",
            "seconds_to_best",
            "train_seconds",
            "wall_seconds",
            "model_train_error",
        ):
            vals = [float(r[key]) for r in ok if r.get(key) is not None]
            mean, std = mean_std(vals) if vals else (None, None)
            summary[key] = {"mean": mean, "std": std, "n": len(vals)}
        for split in ("valid", "test"):
            counted = [r for r in ok if r.get(f"{split}_errors") is not None]
            summary[f"{split}_errors"] = sum(int(r[f"{split}_errors"]) for r in counted)
            summary[f"{split}_n"] = sum(int(r[f"n_{split}"]) for r in counted)
        out.append(summary)
    return out


def _winners(summaries: Sequence[Mapping[str, Any]], key: str) -> set[str]:
    means = [(s[key]["mean"], s["label"]) for s in summaries if s[key]["mean"] is not None]
    if not means:
        return set()
    best = min(m for m, _ in means)
    return {label for m, label in means if m == best}


def configuration_table(ctx: ReportContext, summaries: Sequence[Mapping[str, Any]]) -> Table:
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
    marked = {
        key: _winners(summaries, key)
        for key in ("best_valid_error", "test_error", "best_epoch", "seconds_to_best")
    }

    def cell(s: Mapping[str, Any], key: str, pct: bool, digits: int) -> str:
        text = fmt_pm(s[key]["mean"], s[key]["std"], pct=pct, digits=digits)
        return f"{text} {STAR}" if s["label"] in marked.get(key, ()) else text

    rows = []
    for s in summaries:
        rows.append(
            [
                s["label"],
                *[format_value(s["tuned"][k]) for k in tuned],
                f"{len(s['ok'])}/{len(s['rows'])}",
                cell(s, "best_valid_error", True, 2),
                fmt_ci(error_ci(s["valid_errors"], s["valid_n"])),
                cell(s, "test_error", True, 2),
                fmt_ci(error_ci(s["test_errors"], s["test_n"])),
                cell(s, "best_epoch", False, 1),
                cell(s, "seconds_to_best", False, 1),
                fmt_pm(s["train_seconds"]["mean"], s["train_seconds"]["std"], pct=False, digits=1),
            ]
        )
    return Table(
        columns,
        rows,
        caption=f"mean ± std over seeds; {STAR} = best of the column; 95% CI = Wilson "
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
