"""Study ``surrogate``: validation NLL vs zero-one error vs macro-F1 through training."""

from __future__ import annotations

import math
from collections.abc import Sequence

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from descentlab.experiments.plan import SweepPlan
from descentlab.experiments.report import ReportContext, Section, fmt_pct
from descentlab.experiments.studies.common import (
    MNIST_MLP,
    SMALL_MLP,
    Study,
    StudySettings,
    epoch_ranges,
    mean_curve,
    study_plan,
    study_report,
)
from descentlab.plots import new_figure, save_figure

__all__ = ["STUDY", "build_plan", "report_sections", "surrogate_disagreements"]


def build_plan(settings: StudySettings) -> SweepPlan:
    """One long SGD run per seed, no early stopping: the whole curve is the point."""
    common = {"optimizer": "sgd", "early_stopping": "none"}
    return study_plan(
        settings,
        "surrogate",
        "surrogate loss vs true metric",
        {},
        fast={**SMALL_MLP, **common, "lr": 0.1, "max_epochs": 80},
        full={**MNIST_MLP, **common, "lr": 0.01, "l2": 1e-4, "max_epochs": 200},
        seeds=(3, 3),
    )


def surrogate_disagreements(
    epochs: Sequence[int], nll: Sequence[float], error: Sequence[float]
) -> dict[str, list[int]]:
    """Epochs where the surrogate and the true metric disagree about progress.

    ``surrogate_only``: validation NLL reached a new best but the error did not (the
    surrogate keeps improving, the true metric does not); ``metric_only``: the reverse.
    A "new best" is strictly below every earlier value.
    """
    out: dict[str, list[int]] = {"surrogate_only": [], "metric_only": []}
    best_nll = best_err = math.inf
    for e, n, err in zip(epochs, nll, error):
        nll_better, err_better = n < best_nll, err < best_err
        if nll_better and not err_better and best_err < math.inf:
            out["surrogate_only"].append(int(e))
        if err_better and not nll_better and best_nll < math.inf:
            out["metric_only"].append(int(e))
        best_nll, best_err = min(best_nll, n), min(best_err, err)
    return out


def _figure(
    curves: dict[str, dict[int, float]], epochs: list[int], shaded: list[int], n_seeds: int
) -> Figure:
    """NLLs (left axis) and error / 1 − F1 (right axis) per epoch, ``shaded`` epochs marked."""
    nll, err, f1, train = (curves[k] for k in ("valid_nll", "valid_error", "valid_f1", "train_nll"))
    fig, (ax,) = new_figure(8, 4.4)
    ax2 = ax.twinx()
    for e in shaded:
        ax.axvspan(e - 0.5, e + 0.5, color="#ffbf00", alpha=0.25, lw=0)
    ax.plot(epochs, [nll[e] for e in epochs], color="#1f77b4", lw=1.6, label="valid NLL")
    ax.plot(list(train), list(train.values()), color="#1f77b4", lw=1, ls="--", label="train NLL")
    ax2.plot(epochs, [100 * err[e] for e in epochs], color="#d62728", lw=1.6, label="valid error")
    ax2.plot(
        list(f1),
        [100 * (1 - v) for v in f1.values()],
        color="#2ca02c",
        lw=1.2,
        label="1 − macro-F1",
    )
    # log scales: the interesting part is the slow tail after the first few epochs
    if all(v > 0 for v in [*nll.values(), *train.values()]):
        ax.set_yscale("log")
    if all(v > 0 for v in err.values()) and all(v < 1 for v in f1.values()):
        ax2.set_yscale("log")
        plain = FuncFormatter(lambda v, _: f"{v:g}")
        ax2.yaxis.set_major_formatter(plain)
        ax2.yaxis.set_minor_formatter(plain)
    ax.set_xlabel("epoch")
    ax.set_ylabel("NLL (mean per example, log scale)")
    ax2.set_ylabel("error / 1 − F1 (%, log scale)")
    ax.set_title(
        f"mean of {n_seeds} seeds; shaded: valid NLL improved, valid error did not",
        fontsize=9,
    )
    lines = ax.get_lines() + ax2.get_lines()
    ax.legend(lines, [str(ln.get_label()) for ln in lines], fontsize=8, loc="upper right")
    ax.grid(True, alpha=0.3)
    return fig


@study_report("Surrogate loss vs true metric")
def report_sections(ctx: ReportContext, sec: Section) -> None:
    """The mean curves of the surrogate and the metrics, and where they disagree."""
    hists = [ctx.history(r) for r in ctx.ok_final]
    hists = [h for h in hists if h]
    if not hists:
        sec.text("No run finished.")
        return
    nll = mean_curve(hists, "valid_nll")
    err = mean_curve(hists, "valid_error")
    f1 = mean_curve(hists, "valid_f1")
    train = mean_curve(hists, "train_nll")
    epochs = [e for e in nll if e in err]
    marks = surrogate_disagreements(epochs, [nll[e] for e in epochs], [err[e] for e in epochs])

    curves = {"valid_nll": nll, "valid_error": err, "valid_f1": f1, "train_nll": train}
    fig = _figure(curves, epochs, marks["surrogate_only"], len(hists))
    paths = save_figure(fig, ctx.figures_dir / "surrogate_vs_metric")
    sec.figure(paths[0])

    best_nll_epoch = min(nll, key=lambda e: nll[e])
    best_err_epoch = min(err, key=lambda e: err[e])
    best_f1_epoch = max(f1, key=lambda e: f1[e]) if f1 else None
    text = (
        f"Averaged over {len(hists)} seeds, the validation NLL was lowest at epoch "
        f"{best_nll_epoch} ({nll[best_nll_epoch]:.4f}), the validation error at epoch "
        f"{best_err_epoch} ({fmt_pct(err[best_err_epoch])})"
        + (f" and 1 − macro-F1 at epoch {best_f1_epoch}" if best_f1_epoch else "")
        + ". "
    )
    if marks["surrogate_only"]:
        text += (
            "The surrogate kept improving while the error did not at epochs "
            f"{epoch_ranges(marks['surrogate_only'])} (shaded)."
        )
        late = [e for e in marks["surrogate_only"] if e > best_err_epoch]
        if late:
            text += (
                f" After epoch {best_err_epoch}, where the error was lowest, the NLL still "
                f"reached a new low at {len(late)} epochs (the last at epoch {late[-1]}) "
                "without the error ever improving again."
            )
        text += " "
    else:
        text += "There was no epoch at which the NLL improved without the error improving. "
    if marks["metric_only"]:
        text += (
            "Conversely, the error improved while the NLL did not at epochs "
            f"{epoch_ranges(marks['metric_only'])}"
            + (
                " — after its minimum the NLL rises as the model grows over-confident on "
                "the examples it gets wrong, while the error can still fall."
                if max(marks["metric_only"]) > best_nll_epoch
                else "."
            )
        )
    sec.text(text.strip())
    sec.text(
        "This is why the trainer early-stops on the validation *error* (the metric we care "
        "about), not on the loss it minimizes."
    )


STUDY = Study(
    "surrogate",
    "validation NLL vs zero-one error vs macro-F1 through training",
    build_plan,
    report_sections,
)
