"""Study ``edge-of-stability``: full-batch gradient descent and the sharpness it settles at.

Cohen, Kaur, Li, Kolter & Talwalkar, "Gradient Descent on Neural Networks Typically
Occurs at the Edge of Stability" (ICLR 2021): trained by full-batch GD at a fixed
step ε, a network's sharpness λmax (the top eigenvalue of the training cost's Hessian)
first rises (*progressive sharpening*), then stops near ``2/ε`` — the step at which the
quadratic model of §4.3.1/§8.2.1 says GD diverges — and hovers there while the cost
keeps falling, non-monotonically.

Each run is plain SGD with one minibatch per epoch holding the whole training split
(full-batch GD), validated every step, with ``--diagnostics k``: λmax on the whole
split every k steps (:class:`descentlab.diagnostics.DiagnosticsCallback`, registered
when :mod:`descentlab.diagnostics` is imported — the command line does, and so do the
sweep's worker processes).  Fast: the digits MLP (64 tanh units, 1,078 examples), 200
steps at three learning rates, three seeds.  Full: the tutorials' MLP on a 5,000-example MNIST
subset, 1,500 steps, three seeds.  The report draws λmax against 2/ε for each ε and states, from
the runs, how close to 2/ε each one ended.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from descentlab.experiments.plan import SweepPlan
from descentlab.experiments.report import ReportContext, Section, Table
from descentlab.experiments.studies.common import Study, StudySettings, study_plan, study_report
from descentlab.plots import color_for, new_figure, save_figure

__all__ = ["STUDY", "build_plan", "report_sections", "sharpness_summary"]

#: Full batch: the whole training split of each setting in one minibatch.
FAST = {
    "dataset": "digits",
    "model": "mlp",
    "hidden": [64],
    "batch_size": 1078,
    "max_epochs": 200,
    "diagnostics": 10,
}
FULL = {
    "dataset": "mnist",
    "subset": 5000,
    "model": "mlp",
    "hidden": [500],
    "batch_size": 5000,
    "max_epochs": 1500,
    "diagnostics": 25,
}
COMMON = {"optimizer": "sgd", "early_stopping": "none", "shuffle": False}


def build_plan(settings: StudySettings) -> SweepPlan:
    """Full-batch GD at several fixed learning rates, λmax recorded every k steps."""
    return study_plan(
        settings,
        "edge-of-stability",
        "full-batch GD at the edge of stability",
        {"lr": [0.5, 1.0, 2.0] if settings.fast else [0.05, 0.1, 0.2, 0.4]},
        fast={**FAST, **COMMON},
        full={**FULL, **COMMON},
        seeds=(3, 3),  # a sharpness series per seed; the report lists every run
    )


def sharpness_summary(history: Sequence[Mapping[str, Any]], lr: float) -> dict[str, Any]:
    """λmax at the start, its peak, its mean over the last third, each relative to 2/ε."""
    measured = [r for r in history if r.get("lambda_max") is not None]
    lams = [float(r["lambda_max"]) for r in measured]
    if not lams:
        return {}
    limit = 2 / lr
    tail = lams[len(lams) - max(1, len(lams) // 3) :]
    nll = [float(r["train_nll"]) for r in history if r.get("train_nll") is not None]
    return {
        "threshold": limit,
        "first": lams[0] / limit,
        "peak": max(lams) / limit,
        "tail": sum(tail) / len(tail) / limit,
        "measurements": len(lams),
        "final_train_nll": nll[-1] if nll else math.nan,
    }


def _figure(ctx: ReportContext, runs: list[dict[str, Any]]) -> Any:
    fig, (ax_l, ax_c) = new_figure(9.5, 3.6, ncols=2)
    lrs = sorted({float(row["lr"]) for row in runs})
    labelled: set[float] = set()
    for row in runs:
        hist = ctx.history(row)
        lr = float(row["lr"])
        color = color_for(f"lr={lr}", lrs.index(lr))
        label = None if lr in labelled else f"ε = {lr:g}"  # one legend entry per ε
        labelled.add(lr)
        pts = [(r["iteration"] + 1, r["lambda_max"]) for r in hist if r.get("lambda_max")]
        if pts:
            ax_l.plot(*zip(*pts), "o-", ms=2.5, lw=1, color=color, label=label)
            ax_l.axhline(2 / lr, color=color, ls="--", lw=1)
        cost = [(r["iteration"] + 1, r["train_nll"]) for r in hist if r.get("train_nll")]
        if cost:
            ax_c.plot(*zip(*cost), color=color, lw=1, label=label)
    ax_l.set_xlabel("GD step")
    ax_l.set_ylabel("λmax (dashed: 2/ε)")
    ax_c.set_xlabel("GD step")
    ax_c.set_ylabel("training cost (full batch)")
    ax_c.set_yscale("log")
    for ax in (ax_l, ax_c):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    return fig


@study_report("Sharpness under full-batch gradient descent")
def report_sections(ctx: ReportContext, sec: Section) -> None:
    """λmax against 2/ε per learning rate, and a table of how close each run came."""
    runs = sorted(ctx.ok_final, key=lambda r: (float(r["lr"]), r.get("seed", 0)))
    rows = []
    for row in runs:
        s = sharpness_summary(ctx.history(row), float(row["lr"]))
        if not s:
            continue
        rows.append(
            [f"{float(row['lr']):g}", f"{s['threshold']:.3g}", f"{s['first']:.2f}",
             f"{s['peak']:.2f}", f"{s['tail']:.2f}", f"{s['final_train_nll']:.4f}"]
        )  # fmt: skip
    if not rows:
        sec.text("No run recorded λmax (were they trained with --diagnostics?).")
        return
    paths = save_figure(_figure(ctx, runs), ctx.figures_dir / "edge_of_stability")
    sec.figure(paths[0])
    columns = ["ε", "2/ε", "λmax/(2/ε) at start", "peak", "mean over last third",
               "final train cost"]  # fmt: skip
    sec.table(Table(columns, rows, caption="λmax relative to the quadratic limit 2/ε"))
    near = [r for r in rows if 0.8 <= float(r[4]) <= 1.2]
    sec.text(
        f"{len(near)} of {len(rows)} runs ended with λmax within 20 % of 2/ε over the last "
        "third of training (the edge of stability); a run whose ratio stays well below 1 "
        "did not sharpen enough in its steps to reach the limit."
    )


STUDY = Study(
    "edge-of-stability",
    "full-batch GD: λmax rises to 2/ε and hovers there (Cohen et al. 2021)",
    build_plan,
    report_sections,
)
