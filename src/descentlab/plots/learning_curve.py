"""The learning curve of one run, written into every run directory."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from descentlab.plots.style import (
    AXIS_LABELS,
    as_float,
    new_figure,
    plain_log_ticks,
    save_figure,
)

__all__ = ["learning_curve_figure", "plot_learning_curve"]


def _learning_x(hist: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, str, bool]:
    """The x values of a run's curve, their axis label, and whether they are epochs.

    Epochs, when the run validates once per epoch; when it validates more often
    (several rows share an epoch), epochs would stack every point of an epoch on one
    vertical line, so the x axis counts training examples seen (or iterations).
    """
    epochs = np.array([as_float(row.get("epoch")) for row in hist], dtype=float)
    finite = epochs[np.isfinite(epochs)]
    if finite.size == np.unique(finite).size:
        return epochs, "epoch", True
    seen = np.array([as_float(row.get("examples_seen")) for row in hist], dtype=float)
    if np.isfinite(seen).all():
        return seen, AXIS_LABELS["examples_seen"], False
    # iteration is a 0-based counter; a person counts the first minibatch as 1.
    its = np.array([as_float(row.get("iteration")) + 1 for row in hist], dtype=float)
    return its, AXIS_LABELS["iteration"], False


def plot_learning_curve(
    history: Sequence[Mapping[str, Any]],
    path: str | Path,
    *,
    title: str | None = None,
    formats: Sequence[str] = ("png", "svg"),
) -> list[Path]:
    """:func:`learning_curve_figure` written to ``path`` once per format; returns the paths."""
    return save_figure(learning_curve_figure(history, title=title), path, formats)


def learning_curve_figure(
    history: Sequence[Mapping[str, Any]], *, title: str | None = None
) -> Figure:
    """The learning curve of one run: training NLL (left) and error rates in % (right).

    ``history`` is the trainer's list of validation rows with keys ``epoch``,
    ``iteration``, ``examples_seen``, ``train_nll``, ``valid_error`` and
    ``test_error_at_best`` (or ``test_error``).  The x axis is the epoch, or the
    number of training examples seen when the run validates more than once per epoch.
    The test error is the test error *at the best validation point so far* (the test
    set is scored only when validation improves), drawn as a step line.  Written for
    every run directory, so it is kept cheap (one small figure, no pyplot) and never
    fails on an empty or one-point history.
    """
    fig, (ax_nll, ax_err) = new_figure(9.6, 3.8, ncols=2)
    hist = list(history)
    x, xlabel, by_epoch = _learning_x(hist)

    def column(key: str) -> np.ndarray:
        return np.array([as_float(row.get(key)) for row in hist], dtype=float)

    test_key = (
        "test_error_at_best" if any("test_error_at_best" in r for r in hist) else "test_error"
    )
    nll, valid, test = column("train_nll"), column("valid_error"), column(test_key)

    def draw(ax: Any, y: np.ndarray, label: str, color: str, **kw: Any) -> bool:
        ok = np.isfinite(x) & np.isfinite(y)
        if not ok.any():
            return False
        marker = "o" if ok.sum() <= 30 else None
        ax.plot(x[ok], y[ok], color=color, label=label, lw=1.6, marker=marker, ms=3.5, **kw)
        return True

    if draw(ax_nll, nll, "training NLL", "#0072B2"):
        if np.all(nll[np.isfinite(nll)] > 0):
            ax_nll.set_yscale("log")
            plain_log_ticks(ax_nll, nll)
    else:
        ax_nll.text(0.5, 0.5, "no data yet", ha="center", va="center", transform=ax_nll.transAxes)
    shown = [
        draw(ax_err, valid * 100, _best_label(x, valid, xlabel), "#D55E00"),
        draw(
            ax_err,
            test * 100,
            "test error at best validation",
            "#009E73",
            drawstyle="steps-post",
            ls="--",
        ),
    ]
    if any(shown):
        _mark_best(ax_err, x, valid)
        # From 0: the height of a point is then the error itself, and a lone point or
        # a flat curve does not sit on an axis blown up around it.
        top = float(np.nanmax(np.concatenate([valid, test]))) * 100
        ax_err.set_ylim(0, top * 1.15 if top > 0 else 1)
        ax_err.legend(fontsize=8, loc="best")
    else:
        ax_err.text(0.5, 0.5, "no data yet", ha="center", va="center", transform=ax_err.transAxes)
    ax_nll.set_ylabel("training NLL (mean per example)")
    ax_err.set_ylabel("error rate (%)")
    for ax in (ax_nll, ax_err):
        _learning_x_axis(ax, x, xlabel, by_epoch)
        ax.grid(True, alpha=0.3)
    fig.suptitle(_learning_title(title, hist, x, by_epoch), fontsize=10)
    return fig


def _best_index(x: np.ndarray, valid: np.ndarray) -> int | None:
    ok = np.isfinite(valid) & np.isfinite(x)
    return int(np.flatnonzero(ok)[np.argmin(valid[ok])]) if ok.any() else None


def _best_label(x: np.ndarray, valid: np.ndarray, xlabel: str) -> str:
    """The validation curve's legend entry, with its best point (never hidden by the legend)."""
    best = _best_index(x, valid)
    if best is None:
        return "validation error"
    if xlabel == "epoch":
        where = f"epoch {x[best]:.0f}"
    else:
        where = f"after {x[best]:,.0f} {'examples' if 'examples' in xlabel else 'iterations'}"
    return f"validation error (best {valid[best] * 100:.2f}%, {where})"


def _mark_best(ax: Any, x: np.ndarray, valid: np.ndarray) -> None:
    """A dotted vertical line at the best validation point."""
    best = _best_index(x, valid)
    if best is not None:
        ax.axvline(x[best], color="#D55E00", alpha=0.35, ls=":", lw=1)


def _learning_x_axis(ax: Any, x: np.ndarray, xlabel: str, by_epoch: bool) -> None:
    """Integer ticks; a lone point sits inside a sensible range, not on a ±4% axis."""
    ax.set_xlabel(xlabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    finite = x[np.isfinite(x)]
    if finite.size and float(finite.min()) == float(finite.max()):
        only = float(finite[0])
        ax.set_xlim(0, only + 1 if by_epoch else only * 1.25 + 1)


def _learning_title(
    title: str | None, hist: Sequence[Mapping[str, Any]], x: np.ndarray, by_epoch: bool
) -> str:
    """The given title (the run's name), and how often the run was validated."""
    n = len(hist)
    if not n:
        what = "no validation yet"
    elif n == 1:
        what = "a single validation point: train for more epochs to see a curve"
    elif by_epoch:
        what = f"{n} validations, one per epoch"
    else:
        epochs = len({row.get("epoch") for row in hist})
        what = f"{n} validations over {epochs} epoch{'s' if epochs != 1 else ''}"
    return f"{title} — {what}" if title else what
