"""Study ``optimizers``: the eight chapter-8 optimizers on MNIST, lr tuned per optimizer."""

from __future__ import annotations

from descentlab.experiments.plan import SweepPlan, format_value
from descentlab.experiments.report import (
    ReportContext,
    Section,
    Table,
    configuration_summaries,
    fmt_pct,
)
from descentlab.experiments.studies.common import (
    KNOWN_GOOD_LR,
    Study,
    StudySettings,
    group_rows,
    lr_grid,
    study_plan,
    study_report,
)
from descentlab.experiments.tuning import selection_group_name

__all__ = ["STUDY", "build_plan", "report_sections"]

_TANH_MLP = {"dataset": "mnist", "activation": "tanh", "shuffle": True}


def build_plan(settings: StudySettings) -> SweepPlan:
    """Every optimizer on an MLP and a logistic regression, lr on a grid around its usual value."""
    fast = settings.fast
    grid = [
        # fast: few epochs favour larger steps, so the short grid reaches two points up
        {
            "model": ["mlp", "logreg"],
            "optimizer": [name],
            "lr": lr_grid(lr, *((1, 2) if fast else (3, 3))),
        }
        for name, lr in KNOWN_GOOD_LR.items()
    ]
    return study_plan(
        settings,
        "optimizers",
        "the chapter-8 optimizers on MNIST",
        grid,
        fast={**_TANH_MLP, "subset": 10000, "hidden": [100], "batch_size": 64,
              "max_epochs": 10, "early_stopping": "none"},
        full={**_TANH_MLP, "hidden": [500], "batch_size": 20, "max_epochs": 100,
              "early_stopping": "epochs", "patience": 10},
        tune=["lr"],
    )  # fmt: skip


@study_report(
    "What the optimizers study found",
    "Each optimizer got its own learning rate, chosen on the validation error of one "
    "seed from a log grid (1–3–10 steps) around its usual value; the chosen "
    "rate was then run with every seed. Rankings below are by mean validation error.",
)
def report_sections(ctx: ReportContext, sec: Section) -> None:
    """Per model: the optimizers ranked by validation error, and lrs at the grid's edge."""
    for model in group_rows(ctx.final, "model"):
        sub = ctx.subset("model", model)
        summaries = [s for s in configuration_summaries(sub) if s.ok]
        ranked = sorted(summaries, key=lambda s: s.valid_rank)
        if not ranked:
            sec.text(f"**{model}**: no run finished.")
            continue
        table_rows = []
        for i, s in enumerate(ranked, 1):
            table_rows.append(
                [
                    str(i),
                    s.label,
                    format_value(s.tuned.get("lr")),
                    fmt_pct(s.best_valid_error.mean),
                    fmt_pct(s.test_error.mean),
                    f"{s.best_epoch.mean:.1f}" if s.best_epoch.mean else "–",
                ]
            )
        sec.table(
            Table(
                ["rank", "optimizer", "lr", "valid error", "test error", "epochs to best"],
                table_rows,
                caption=f"{model}: mean over seeds, ranked by validation error",
            )
        )
        best, worst = ranked[0], ranked[-1]
        sec.text(
            f"**{model}**: best on validation **{best.label}** (lr "
            f"{format_value(best.tuned.get('lr'))}: valid "
            f"{fmt_pct(best.best_valid_error.mean)}, test "
            f"{fmt_pct(best.test_error.mean)}); last **{worst.label}** (valid "
            f"{fmt_pct(worst.best_valid_error.mean)})."
        )
    edges = [s for s in ctx.selection if s.get("at_edge")]
    if edges:
        sec.text(
            "The chosen learning rate is at the edge of its grid for: "
            + "; ".join(
                selection_group_name(s) + f" (lr {format_value(s['chosen']['lr'])})" for s in edges
            )
            + ". Their optimum may lie outside the grid; the full setting uses a wider one."
        )


STUDY = Study(
    "optimizers",
    "SGD, momentum, Nesterov, AdaGrad, RMSProp (+Nesterov), Adam, AdaDelta on MNIST",
    build_plan,
    report_sections,
    split_by="model",
)
