"""The figures of a sweep report: learning curves and learning-rate sensitivity."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from descentlab.experiments.plan import config_key
from descentlab.experiments.report.context import MAX_CURVES, ReportContext, Section
from descentlab.experiments.report.tables import ConfigSummary
from descentlab.plots import plot_curves, plot_lr_sensitivity


def _curve_rows(ctx: ReportContext, summaries: Sequence[ConfigSummary]) -> tuple[list, str]:
    """The finished final runs to draw, at most MAX_CURVES configurations."""
    keep = [s for s in summaries if s.ok]
    note = ""
    if len(keep) > MAX_CURVES:
        primary = ctx.varying_keys[0] if ctx.varying_keys else None
        best: OrderedDict[Any, ConfigSummary] = OrderedDict()
        for s in keep:
            key = config_key(s.ok[0], [primary]) if primary else ()
            if s.best_valid_error.mean is None:
                continue
            if key not in best or s.valid_rank < best[key].valid_rank:
                best[key] = s
        keep = list(best.values())[:MAX_CURVES]
        note = (
            f"With {len(summaries)} configurations, the curves show the best one (by mean "
            f"validation error) per {primary}."
        )
    series = []
    for s in keep:
        for r in s.ok:
            series.append(
                {"group": s.label, "optimizer": r.get("optimizer"), "history": ctx.history(r)}
            )
    return series, note


def figures_section(ctx: ReportContext, summaries: Sequence[ConfigSummary]) -> Section:
    section = Section("Learning curves")
    series, note = _curve_rows(ctx, summaries)
    if note:
        section.text(note)
    if not series:
        section.text("No run finished, so there is nothing to plot.")
        return section
    section.text(
        "One curve per configuration: the mean over its seeds, shaded from the lowest to the "
        "highest seed. Each seed is interpolated onto a common grid, and a curve stops where "
        "its shortest seed stops, so every point is a mean over all seeds. Errors are in %. "
        "Validation error is measured at every validation point; wall-clock seconds include "
        "validation. Training NLL is the mean minibatch cost since the previous validation. "
        "Colours are colour-blind safe; the line style is the optimizer's family (plain SGD "
        "solid, momentum dashed, adaptive dotted, adaptive with momentum dash-dotted)."
    )
    figs = ctx.figures_dir
    specs: list[tuple[str, str, str, dict[str, Any], str]] = [
        ("valid_error_vs_epoch", "epoch", "valid_error", {"percent": True}, "validation error"),
        (
            "valid_error_vs_seconds",
            "seconds",
            "valid_error",
            {"percent": True},
            "validation error vs wall-clock time",
        ),
        (
            "train_nll_vs_iteration",
            "iteration",
            "train_nll",
            {"logy": True, "ylabel": "training NLL (log scale)"},
            "training NLL",
        ),
    ]
    for stem, x, y, kwargs, what in specs:
        paths = plot_curves(
            series,
            x,
            y,
            "group",
            figs / stem,
            style_key="optimizer",
            title=f"{ctx.name}: {what}",
            **kwargs,
        )
        section.figure(paths[0])
    lr_figure = _lr_sensitivity(ctx)
    if lr_figure is not None:
        section.figure(lr_figure)
    return section


def _lr_sensitivity(ctx: ReportContext) -> Path | None:
    """Best validation error against lr, one connected line per configuration (lr left out
    of its name), every run included — the lr search's too."""
    lr_rows = [r for r in ctx.rows if r.get("lr") is not None]
    if len({r["lr"] for r in lr_rows}) < 2:
        return None
    points = [
        {
            "lr": r["lr"],
            "best_valid_error": r.get("best_valid_error") if r["status"] == "ok" else None,
            "group": ctx.label(r, without=("lr",)),
            "optimizer": r.get("optimizer"),
        }
        for r in lr_rows
    ]
    paths = plot_lr_sensitivity(
        points,
        ctx.figures_dir / "lr_sensitivity",
        metric_key="best_valid_error",
        group_key="group",
        style_key="optimizer",
        percent=True,
        title=f"{ctx.name}: learning-rate sensitivity (every run, incl. the lr search)",
        ylabel="best validation error (%)",
    )
    return paths[0]
