"""Study ``regularization``: none vs L1 vs L2 vs dropout vs early stopping, with the gap."""

from __future__ import annotations

from typing import Any

from descentlab.experiments.plan import SweepPlan, format_value
from descentlab.experiments.report import (
    ReportContext,
    Section,
    Table,
    configuration_summaries,
    error_ci,
    fmt_ci,
    fmt_pct,
)
from descentlab.experiments.studies.common import (
    Study,
    StudySettings,
    mean_finite,
    study_plan,
    study_report,
)

__all__ = ["STUDY", "build_plan", "report_sections"]


def build_plan(settings: StudySettings) -> SweepPlan:
    """Labelled variants; the strengths of L1, L2 and dropout tuned on the returned model."""
    fast = settings.fast
    grid: list[dict[str, Any]] = [
        {"label": "none"},
        {"label": "L1", "l1": [1e-5, 1e-4, 1e-3]},
        {"label": "L2", "l2": [1e-5, 1e-4, 1e-3]},
        {"label": "dropout", "dropout": [0.2, 0.5]},
        {
            "label": "early stopping",
            "early_stopping": ["epochs"],
            "patience": [5 if fast else 10],
            "restore_best": [True],
        },
    ]
    # Every variant but early stopping trains all epochs and keeps the *final* model.
    common = {
        "model": "mlp",
        "optimizer": "adam",
        "lr": 1e-3,
        "early_stopping": "none",
        "restore_best": False,
        "shuffle": True,
    }
    return study_plan(
        settings,
        "regularization",
        "regularization",
        grid,
        fast={**common, "dataset": "digits", "hidden": [256], "batch_size": 32, "max_epochs": 60},
        full={**common, "dataset": "mnist", "subset": 10000, "hidden": [500], "batch_size": 20,
              "max_epochs": 150},
        tune=["l1", "l2", "dropout"],
        select_metric="model_valid_error",
    )  # fmt: skip


@study_report(
    "Regularization: errors of the returned model and the train–valid gap",
    "'none', L1, L2 and dropout train for every epoch and are scored with their final "
    "parameters; 'early stopping' keeps the parameters of the best validation point. "
    "The strength of L1, L2 and dropout was chosen on the validation error of the "
    "final model (one seed), then run with every seed. The gap is validation error "
    "minus training error of the same model. (The 'best valid error' of the general "
    "table below is the best point along each run — for the variants without early "
    "stopping that is not the model they return.)",
)
def report_sections(ctx: ReportContext, sec: Section) -> None:
    """The returned model's errors per variant, and which variant narrowed the gap."""
    rows = []
    stats: list[tuple[str, float, float, float]] = []
    for s in configuration_summaries(ctx):
        ok = s.ok
        if not ok:
            continue
        strength = next(
            (f"{k}={format_value(v)}" for k, v in s.tuned.items() if v not in (None, 0, 0.0)),
            "–",
        )
        train = mean_finite([r["model_train_error"] for r in ok])
        valid = mean_finite([r["model_valid_error"] for r in ok])
        test = mean_finite([r["model_test_error"] for r in ok])
        gap = valid - train if valid is not None and train is not None else None
        n_test = sum(int(r["n_test"]) for r in ok)
        errs = sum(round(r["model_test_error"] * r["n_test"]) for r in ok)
        if valid is not None and test is not None and gap is not None:
            stats.append((s.label, valid, test, gap))
        rows.append(
            [
                s.label,
                strength,
                fmt_pct(train),
                fmt_pct(valid),
                fmt_pct(test),
                fmt_ci(error_ci(errs, n_test)),
                fmt_pct(gap),
            ]
        )
    sec.table(
        Table(
            ["variant", "chosen", "train error", "valid error", "test error", "test 95% CI", "gap"],
            rows,
            caption="the returned model's errors, mean over seeds; CI: Wilson, pooled over seeds",
        )
    )
    if stats:
        best = min(stats, key=lambda t: t[1])
        narrow = min(stats, key=lambda t: t[3])
        none = next((t for t in stats if t[0] == "none"), None)
        text = (
            f"Lowest validation error: **{best[0]}** ({fmt_pct(best[1])}, test "
            f"{fmt_pct(best[2])}). Smallest train–valid gap: **{narrow[0]}** "
            f"({fmt_pct(narrow[3])})."
        )
        if none is not None:
            helped = [t[0] for t in stats if t[0] != "none" and t[1] < none[1]]
            text += (
                f" Compared with no regularization (valid {fmt_pct(none[1])}, gap "
                f"{fmt_pct(none[3])}), "
                + (
                    f"{', '.join(helped)} lowered the validation error."
                    if helped
                    else "no variant lowered the validation error."
                )
            )
        sec.text(text)


STUDY = Study(
    "regularization",
    "none vs L1 vs L2 vs dropout vs early stopping, with the train–valid gap",
    build_plan,
    report_sections,
)
