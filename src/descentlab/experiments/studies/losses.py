"""Study ``losses``: cross-entropy vs mean squared error on the same model."""

from __future__ import annotations

from descentlab.experiments.explain import losses_table
from descentlab.experiments.plan import SweepPlan, format_value
from descentlab.experiments.report import (
    ReportContext,
    Section,
    Table,
    configuration_summaries,
    fmt_pct,
)
from descentlab.experiments.studies.common import (
    MNIST_MLP,
    SMALL_MLP,
    Study,
    StudySettings,
    lr_grid,
    study_plan,
    study_report,
)

__all__ = ["STUDY", "build_plan", "report_sections"]


def build_plan(settings: StudySettings) -> SweepPlan:
    """NLL and MSE with plain SGD, lr tuned for each."""
    return study_plan(
        settings,
        "losses",
        "cross-entropy vs mean squared error",
        {"loss": ["nll", "mse"], "lr": lr_grid(0.3, 2, 1)},
        fast={**SMALL_MLP, "optimizer": "sgd", "max_epochs": 30, "early_stopping": "none"},
        full={**MNIST_MLP, "optimizer": "sgd", "max_epochs": 100, "early_stopping": "epochs",
              "patience": 10},
        tune=["lr"],
    )  # fmt: skip


@study_report(
    "Cross-entropy or squared error?",
    "The worked example of the practical notes, computed by descentlab.losses: two "
    "models with the same classification error (1/3) that the average cross-entropy "
    "and the average squared error tell apart.",
)
def report_sections(ctx: ReportContext, sec: Section) -> None:
    """The notes' worked example, then the two losses' errors side by side."""
    columns, rows = losses_table()
    sec.table(Table(columns, rows))
    summaries = {s.label: s for s in configuration_summaries(ctx) if s.ok}
    ce, mse = summaries.get("nll"), summaries.get("mse")
    if ce and mse and ce.test_error.mean is not None and mse.test_error.mean is not None:
        diff = ce.test_error.mean - mse.test_error.mean
        verdict = (
            "the same mean test error"
            if abs(diff) < 1e-12
            else f"lower mean test error with {'cross-entropy' if diff < 0 else 'MSE'}"
        )
        sec.text(
            f"Trained on the same model, cross-entropy (lr {format_value(ce.tuned.get('lr'))}) "
            f"reached a test error of {fmt_pct(ce.test_error.mean)} "
            f"(valid {fmt_pct(ce.best_valid_error.mean)}, best after "
            f"{ce.best_epoch.mean:.1f} epochs) and MSE on the softmax "
            f"(lr {format_value(mse.tuned.get('lr'))}) {fmt_pct(mse.test_error.mean)} "
            f"(valid {fmt_pct(mse.best_valid_error.mean)}, best after "
            f"{mse.best_epoch.mean:.1f} epochs): {verdict}. See the "
            "McNemar test below for whether the difference is more than noise."
        )


STUDY = Study("losses", "cross-entropy vs MSE on the same model", build_plan, report_sections)
