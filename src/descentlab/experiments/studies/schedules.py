"""Study ``schedules``: constant vs linear vs exponential vs 1/t learning rates for SGD."""

from __future__ import annotations

from typing import Any

from descentlab.experiments.plan import SweepPlan, format_value
from descentlab.experiments.report import ReportContext, Section, configuration_summaries, fmt_pct
from descentlab.experiments.studies.common import (
    MNIST_MLP,
    SMALL_MLP,
    Study,
    StudySettings,
    lr_grid,
    study_plan,
    study_report,
)
from descentlab.plots import plot_curves

__all__ = ["STUDY", "build_plan", "report_sections"]


def build_plan(settings: StudySettings) -> SweepPlan:
    """One labelled grid per schedule, ε₀ tuned for each."""
    fast = settings.fast
    epochs = 30 if fast else 100
    schedules = {
        "constant": "constant",
        "linear decay": f"linear:tau_epochs={epochs},final_ratio=0.01",
        "exponential": "exp:gamma=0.9" if fast else "exp:gamma=0.97",
        "1/t": "inv:t0=200" if fast else "inv:t0=10000",
    }
    grid: list[dict[str, Any]] = [
        {"label": label, "schedule": [spec], "lr": lr_grid(0.3, 1, 2)}
        for label, spec in schedules.items()
    ]
    common = {"optimizer": "sgd", "max_epochs": epochs, "early_stopping": "none"}
    return study_plan(
        settings,
        "schedules",
        "learning-rate schedules for SGD",
        grid,
        fast={**SMALL_MLP, **common},
        full={**MNIST_MLP, **common},
        tune=["lr"],
    )


@study_report(
    "Learning-rate schedules",
    "Constant ε; the book's linear decay to 1% of ε₀ over the run; exponential decay "
    "per epoch; and 1/t decay ε₀/(1 + k/t₀) per step (Σε = ∞, Σε² < ∞). ε₀ was tuned "
    "per schedule on the validation error.",
)
def report_sections(ctx: ReportContext, sec: Section) -> None:
    """The learning rate along the runs, and the schedules ranked by validation error."""
    series = [
        {"group": ctx.label(r), "history": ctx.history(r)} for r in ctx.ok_final if ctx.history(r)
    ]
    if series:
        paths = plot_curves(
            series,
            "epoch",
            "lr",
            "group",
            ctx.figures_dir / "lr_vs_epoch",
            logy=True,
            title="learning rate at each validation",
            ylabel="learning rate (log scale)",
        )
        sec.figure(paths[0])
    summaries = sorted(
        (s for s in configuration_summaries(ctx) if s.ok),
        key=lambda s: s.valid_rank,
    )
    if summaries:
        sec.text(
            "Ranked by validation error: "
            + "; ".join(
                f"{s.label} (ε₀ {format_value(s.tuned.get('lr'))}: valid "
                f"{fmt_pct(s.best_valid_error.mean)}, "
                f"test {fmt_pct(s.test_error.mean)})"
                for s in summaries
            )
            + "."
        )


STUDY = Study(
    "schedules",
    "constant vs linear vs exponential vs 1/t learning rates for SGD",
    build_plan,
    report_sections,
)
