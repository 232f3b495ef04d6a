"""Figures for runs and sweeps: learning curves, optimizer comparisons, lr sensitivity.

All figures are drawn on a bare :class:`matplotlib.figure.Figure` (Agg canvas),
never through ``pyplot``: nothing is shown, no global figure registry grows over a
long sweep, and plotting is safe from worker threads.  Each figure is written as
PNG (for reports and screens) and SVG (for papers); every function returns the
paths it wrote.

Curves over several seeds are drawn as the mean with a band (min–max by default,
or ±1 sample std).  Seeds of one configuration need not share x values (wall-clock
seconds never do, early stopping ends runs at different epochs): each run is
linearly interpolated onto the union of all x values *inside its own range*, and
at every x the statistics use the runs that reached it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from descentlab.errors import ConfigError, did_you_mean

__all__ = [
    "OPTIMIZER_COLORS",
    "OPTIMIZER_STYLES",
    "LineStyle",
    "color_for",
    "line_styles",
    "new_figure",
    "plot_curves",
    "plot_learning_curve",
    "plot_lr_sensitivity",
    "save_figure",
    "spread",
    "style_for",
]


@dataclass(frozen=True)
class LineStyle:
    """How one group is drawn: colour, dash pattern and marker."""

    color: str
    ls: str
    marker: str

    def kwargs(self) -> dict[str, str]:
        """Keyword arguments for ``Axes.plot``."""
        return {"color": self.color, "ls": self.ls, "marker": self.marker}


# The Okabe–Ito palette (Okabe & Ito 2008), built to stay distinguishable under the
# common colour-vision deficiencies; its yellow (#F0E442) is too pale on white and is
# replaced by an olive.  The dash pattern tells the optimizer's family apart even in
# greyscale: plain gradient steps solid, momentum dashed, adaptive per-coordinate
# rates dotted, adaptive + momentum dash-dotted.
_SOLID, _DASHED, _DOTTED, _DASHDOT = "-", "--", ":", "-."

#: One fixed style per chapter-8 optimizer, so that "adam" looks the same in every
#: figure of a report and in the landscape lab.
OPTIMIZER_STYLES: dict[str, LineStyle] = {
    "sgd": LineStyle("#0072B2", _SOLID, "o"),
    "momentum": LineStyle("#D55E00", _DASHED, "s"),
    "nesterov": LineStyle("#009E73", _DASHED, "^"),
    "adagrad": LineStyle("#E69F00", _DOTTED, "D"),
    "rmsprop": LineStyle("#CC79A7", _DOTTED, "v"),
    "rmsprop-nesterov": LineStyle("#56B4E9", _DASHDOT, "P"),
    "adam": LineStyle("#000000", _DASHDOT, "X"),
    "adadelta": LineStyle("#8C7E00", _DOTTED, "*"),
}
OPTIMIZER_COLORS: dict[str, str] = {k: v.color for k, v in OPTIMIZER_STYLES.items()}
_FAMILY_LS = {k: v.ls for k, v in OPTIMIZER_STYLES.items()}
# Groups that are not one optimizer each: colours in this order, then again with the
# next dash pattern, so that 8+ groups never share both colour and dashes.
_CYCLE_COLORS = [
    "#0072B2",
    "#D55E00",
    "#009E73",
    "#CC79A7",
    "#E69F00",
    "#56B4E9",
    "#000000",
    "#8C7E00",
]
_CYCLE_LS = [_SOLID, _DASHED, _DOTTED, _DASHDOT]
_CYCLE_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]

_BANDS = ("minmax", "std", None)
_FORMATS = ("png", "svg", "pdf")


def _optimizer_key(name: Any) -> str:
    return str(name).strip().lower()


def style_for(name: Any, index: int = 0) -> LineStyle:
    """The style of group ``name``: fixed for a known optimizer, else the next of a cycle."""
    key = _optimizer_key(name)
    if key in OPTIMIZER_STYLES:
        return OPTIMIZER_STYLES[key]
    return _cycle_style(index)


def _cycle_style(index: int) -> LineStyle:
    n = len(_CYCLE_COLORS)
    return LineStyle(
        _CYCLE_COLORS[index % n],
        _CYCLE_LS[(index // n) % len(_CYCLE_LS)],
        _CYCLE_MARKERS[index % len(_CYCLE_MARKERS)],
    )


def color_for(name: Any, index: int = 0) -> str:
    """The colour of group ``name``: fixed for known optimizers, else from a cycle."""
    return style_for(name, index).color


def line_styles(groups: Sequence[Any], optimizers: Sequence[Any] | None = None) -> list[LineStyle]:
    """One distinguishable style per group, in order.

    When every group is a different known optimizer (``optimizers[i]``, or the group
    name itself), each gets that optimizer's fixed style.  Otherwise (two batch sizes
    of one optimizer, regularizers, ...) colours come from the colour-blind-safe cycle
    in order, and the dash pattern still follows the optimizer's family when known.
    """
    opts = [_optimizer_key(o) for o in (optimizers if optimizers is not None else groups)]
    if len(opts) != len(groups):
        raise ConfigError(f"{len(groups)} groups but {len(opts)} optimizers")
    if all(o in OPTIMIZER_STYLES for o in opts) and len(set(opts)) == len(opts):
        return [OPTIMIZER_STYLES[o] for o in opts]
    styles = []
    for i, opt in enumerate(opts):
        cyc = style_for(f"\0group{i}", i)
        if opt in _FAMILY_LS and len(groups) <= len(_CYCLE_COLORS):
            cyc = LineStyle(cyc.color, _FAMILY_LS[opt], cyc.marker)
        styles.append(cyc)
    return styles


def new_figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, list[Any]]:
    """A bare Agg figure (no pyplot registry) with one row of ``ncols`` axes."""
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def save_figure(
    fig: Figure, path: str | Path, formats: Sequence[str] = ("png", "svg")
) -> list[Path]:
    """Write ``fig`` once per format next to ``path`` (its suffix is replaced).

    ``save_figure(fig, "out/curves")`` writes ``out/curves.png`` and
    ``out/curves.svg``.  Parent directories are created.
    """
    if isinstance(formats, str):
        formats = (formats,)
    bad = [f for f in formats if f not in _FORMATS]
    if bad or not formats:
        raise ConfigError(
            f"unsupported figure format {bad[0] if bad else '(none)'!r}",
            hint="use any of: " + ", ".join(_FORMATS),
        )
    path = Path(path)
    stem = path.with_suffix("") if path.suffix.lower().lstrip(".") in _FORMATS else path
    stem.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        out = stem.with_name(f"{stem.name}.{fmt}")
        # A fixed date keeps SVG/PDF output byte-identical between runs.
        metadata = {"Date": None} if fmt in ("svg", "pdf") else None
        fig.savefig(out, format=fmt, dpi=100, metadata=metadata)
        written.append(out)
    return written


def _num(value: Any) -> float:
    """A plottable float; ``None`` (not measured) becomes NaN, which matplotlib skips."""
    if value is None:
        return math.nan
    return float(value)


def _require(row: Mapping[str, Any], keys: Iterable[str], what: str = "row") -> None:
    """A ConfigError naming the first of ``keys`` that ``row`` lacks."""
    for key in keys:
        if key not in row:
            raise ConfigError(f"{what} has no key {key!r}", hint=did_you_mean(key, list(row)))


def spread(values: Iterable[float]) -> tuple[float, float, float]:
    """Mean of the finite values and the distances down to the min and up to the max.

    Both distances are ≥ 0 by construction: identical values (seeds that could not
    differ) give exactly ``(value, 0, 0)`` — a float mean of equal numbers can land
    one ulp outside them, and a negative error bar is an error in matplotlib.  No
    finite value (every run diverged): ``(nan, 0, 0)``.
    """
    vals = np.array([v for v in values if math.isfinite(v)], dtype=float)
    if not vals.size:
        return math.nan, 0.0, 0.0
    lo, hi = float(vals.min()), float(vals.max())
    if lo == hi:
        return lo, 0.0, 0.0
    mean = min(max(float(vals.mean()), lo), hi)
    return mean, mean - lo, hi - mean


def _xy(
    history: Iterable[Mapping[str, Any]], x_key: str, y_key: str
) -> tuple[np.ndarray, np.ndarray]:
    """Finite (x, y) pairs of one run, sorted by x."""
    pts = []
    for row in history:
        _require(row, (x_key, y_key), what="history row")
        x, y = _num(row[x_key]), _num(row[y_key])
        if math.isfinite(x) and math.isfinite(y):
            pts.append((x, y))
    pts.sort()
    arr = np.asarray(pts, dtype=float).reshape(-1, 2)
    return arr[:, 0], arr[:, 1]


def _common_grid(runs: list[tuple[np.ndarray, np.ndarray]], points: int = 200) -> np.ndarray:
    """The x values every run is evaluated at: only where *all* runs have data.

    Runs that share their x values (epochs, iterations) keep them; otherwise
    (wall-clock seconds never coincide) an even grid of ``points`` is laid over the
    range all runs cover, so that every point of the mean is a mean over every run
    — no zig-zag where one seed ends and the mean jumps to the others.
    """
    lo = max(float(x[0]) for x, _ in runs)
    hi = min(float(x[-1]) for x, _ in runs)
    if lo > hi:  # the runs do not overlap: no common range
        return np.empty(0)
    first = runs[0][0]
    if all(x.shape == first.shape and np.array_equal(x, first) for x, _ in runs):
        return first
    shared = np.unique(np.concatenate([x for x, _ in runs]))
    shared = shared[(shared >= lo) & (shared <= hi)]
    if len(runs) > 1 and shared.size > 1:
        counts = [np.isin(shared, x).sum() for x, _ in runs]
        if min(counts) == shared.size:  # every run has every x: no interpolation needed
            return shared
    return np.linspace(lo, hi, points) if hi > lo else np.array([lo])


def _aggregate(
    runs: list[tuple[np.ndarray, np.ndarray]], band: str | None
) -> dict[str, np.ndarray]:
    """Mean and band over runs, each run linearly interpolated onto a common grid.

    The grid spans only the x range that every run covers (see :func:`_common_grid`).
    """
    runs = [(x, y) for x, y in runs if x.size]
    empty = {k: np.empty(0) for k in ("x", "mean", "low", "high")}
    if not runs:
        return empty
    grid = _common_grid(runs)
    if not grid.size:
        return empty
    stack = np.stack([np.interp(grid, x, y) for x, y in runs])
    mean = stack.mean(axis=0)
    if band == "std" and len(runs) > 1:
        dev = stack.std(axis=0, ddof=1)
        low, high = mean - dev, mean + dev
    else:
        low, high = stack.min(axis=0), stack.max(axis=0)
    # Identical seeds: the band collapses exactly onto the mean, never inside-out.
    low, high = np.minimum(low, mean), np.maximum(high, mean)
    return {"x": grid, "mean": mean, "low": low, "high": high}


def _legend_title(band: str | None, several: bool) -> str | None:
    if not several or band is None:
        return None
    what = "min–max" if band == "minmax" else "±1 std"
    return f"mean over seeds; band: {what}"


def plot_curves(
    series: Iterable[Mapping[str, Any]],
    x_key: str,
    y_key: str,
    group_key: str,
    path: str | Path,
    *,
    history_key: str = "history",
    style_key: str | None = None,
    band: str | None = "minmax",
    logx: bool = False,
    logy: bool = False,
    percent: bool = False,
    title: str | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
    formats: Sequence[str] = ("png", "svg"),
) -> list[Path]:
    """One curve per group (e.g. per optimizer): the mean over its runs, with a band.

    Parameters
    ----------
    series
        One mapping per run, holding ``group_key`` (e.g. ``"optimizer"``) and
        ``history_key``: the run's history, a list of dicts with at least ``x_key``
        and ``y_key`` (e.g. ``epoch``/``seconds``/``iteration`` and
        ``valid_error``/``train_nll``).  Several runs (seeds) per group are averaged
        on a common grid over the x range all of them cover.
    style_key
        A key of each run naming its optimizer (e.g. ``"optimizer"``), so that its
        family picks the dash pattern (:func:`line_styles`); default: the group name.
    band
        ``"minmax"`` (shaded from the lowest to the highest run), ``"std"`` (mean ±1
        sample standard deviation) or ``None``.
    logx, logy
        Log axes; use ``logy=True`` for training NLL against iterations.
    percent
        ``y_key`` is a fraction (an error rate): draw it in %.

    Returns the written paths (``path`` with each suffix in ``formats``).
    """
    if band not in _BANDS:
        raise ConfigError(f"band must be 'minmax', 'std' or None, got {band!r}")
    groups: dict[Any, list[tuple[np.ndarray, np.ndarray]]] = {}
    optimizer_of: dict[Any, Any] = {}
    for run in series:
        if group_key not in run or history_key not in run:
            missing = group_key if group_key not in run else history_key
            raise ConfigError(
                f"run has no key {missing!r}", hint=did_you_mean(missing, list(run.keys()))
            )
        name = run[group_key]
        x, y = _xy(run[history_key], x_key, y_key)
        groups.setdefault(name, []).append((x, 100 * y if percent else y))
        optimizer_of.setdefault(name, run.get(style_key, name) if style_key else name)
    styles = line_styles(list(groups), [optimizer_of[g] for g in groups])

    fig, (ax,) = new_figure(7.4, 4.6)
    drawn, several = 0, False
    for (name, runs), style in zip(groups.items(), styles, strict=True):
        agg = _aggregate(runs, band)
        if not agg["x"].size:
            continue
        n_runs = len(runs)
        several |= n_runs > 1
        label = f"{name} ({n_runs} seeds)" if n_runs > 1 else str(name)
        every = max(1, agg["x"].size // 12)  # a dozen markers per curve: enough to tell apart
        ax.plot(
            agg["x"], agg["mean"], label=label, lw=1.7, ms=4.5, markevery=every, **style.kwargs()
        )
        if band is not None and n_runs > 1:
            ax.fill_between(agg["x"], agg["low"], agg["high"], color=style.color, alpha=0.15, lw=0)
        drawn += 1
    if not drawn:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    if logx and drawn:
        ax.set_xscale("log")
    if logy and drawn:
        ax.set_yscale("log")
    if x_key in _COUNT_KEYS and not logx:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel or _AXIS_LABELS.get(x_key, x_key.replace("_", " ")))
    default_y = _AXIS_LABELS.get(y_key, y_key.replace("_", " "))
    ax.set_ylabel(ylabel or (f"{default_y} (%)" if percent else default_y))
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    if drawn:
        ax.legend(
            title=_legend_title(band, several),
            fontsize=8,
            title_fontsize=8,
            ncols=2 if drawn > 5 else 1,
        )
    return save_figure(fig, path, formats)


#: Axis labels for the history keys a person reads.
_AXIS_LABELS = {
    "epoch": "epoch",
    "iteration": "minibatch iterations",
    "examples_seen": "training examples seen",
    "seconds": "wall-clock seconds",
    "valid_error": "validation error",
    "test_error": "test error",
    "train_nll": "training NLL",
    "lr": "learning rate",
}
# x keys that count whole things: their ticks must be integers.
_COUNT_KEYS = frozenset({"epoch", "iteration", "examples_seen"})


def plot_lr_sensitivity(
    rows: Iterable[Mapping[str, Any]],
    path: str | Path,
    *,
    lr_key: str = "lr",
    metric_key: str = "valid_error",
    group_key: str = "optimizer",
    style_key: str | None = None,
    percent: bool = False,
    title: str | None = None,
    ylabel: str | None = None,
    formats: Sequence[str] = ("png", "svg"),
) -> list[Path]:
    """Final metric against learning rate (log x), one connected line per group.

    ``rows`` holds one result per run (several seeds per (group, lr) are averaged;
    the error bars span min–max, zero when the seeds agree).  Give the group a name
    that does *not* include the learning rate, so that a group's learning rates are
    joined into one line.  A (group, lr) whose every run has no finite metric — it
    diverged — is marked with an ``x`` on the top edge, so a too-large learning rate
    is visible rather than silently missing.  ``percent``: the metric is a fraction,
    drawn in %.
    """
    cells: dict[Any, dict[float, list[float]]] = {}
    optimizer_of: dict[Any, Any] = {}
    for row in rows:
        _require(row, (lr_key, metric_key, group_key))
        lr = float(row[lr_key])
        if not lr > 0:
            raise ConfigError(f"learning rates must be > 0 for a log axis, got {lr}")
        name = row[group_key]
        value = _num(row[metric_key])
        cells.setdefault(name, {}).setdefault(lr, []).append(100 * value if percent else value)
        optimizer_of.setdefault(name, row.get(style_key, name) if style_key else name)
    styles = line_styles(list(cells), [optimizer_of[g] for g in cells])

    fig, (ax,) = new_figure(7.4, 4.6)
    diverged_seen = False
    for (name, by_lr), style in zip(cells.items(), styles, strict=True):
        lrs = np.array(sorted(by_lr))
        means, lows, highs = (np.array(v) for v in zip(*(spread(by_lr[lr]) for lr in lrs)))
        n_seeds = max(len(v) for v in by_lr.values())
        label = f"{name} ({n_seeds} seeds)" if n_seeds > 1 else str(name)
        ok = np.isfinite(means)
        ax.errorbar(
            lrs[ok],
            means[ok],
            yerr=[lows[ok], highs[ok]],
            label=label,
            ms=5,
            lw=1.6,
            capsize=3,
            **style.kwargs(),
        )
        dead = lrs[~ok]
        if dead.size:
            diverged_seen = True
            # x in data coordinates, y pinned to the top edge of the axes.
            ax.plot(
                dead,
                [1.0] * dead.size,
                "x",
                color=style.color,
                ms=9,
                mew=2,
                transform=ax.get_xaxis_transform(),
                clip_on=False,
            )
    if cells:
        ax.set_xscale("log")
        notes = ["bars: min–max over seeds"]
        if diverged_seen:
            notes.append("x on top edge: diverged")
        ax.legend(
            fontsize=8, title="; ".join(notes), title_fontsize=8, ncols=2 if len(cells) > 5 else 1
        )
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("learning rate (log scale)")
    default_y = f"final {_AXIS_LABELS.get(metric_key, metric_key.replace('_', ' '))}"
    ax.set_ylabel(ylabel or (f"{default_y} (%)" if percent else default_y))
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    return save_figure(fig, path, formats)


def _learning_x(hist: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, str, bool]:
    """The x values of a run's curve, their axis label, and whether they are epochs.

    Epochs, when the run validates once per epoch; when it validates more often
    (several rows share an epoch), epochs would stack every point of an epoch on one
    vertical line, so the x axis counts training examples seen (or iterations).
    """
    epochs = np.array([_num(row.get("epoch")) for row in hist], dtype=float)
    finite = epochs[np.isfinite(epochs)]
    if finite.size == np.unique(finite).size:
        return epochs, "epoch", True
    seen = np.array([_num(row.get("examples_seen")) for row in hist], dtype=float)
    if np.isfinite(seen).all():
        return seen, _AXIS_LABELS["examples_seen"], False
    # iteration is a 0-based counter; a person counts the first minibatch as 1.
    its = np.array([_num(row.get("iteration")) + 1 for row in hist], dtype=float)
    return its, _AXIS_LABELS["iteration"], False


def plot_learning_curve(
    history: Sequence[Mapping[str, Any]],
    path: str | Path,
    *,
    title: str | None = None,
    formats: Sequence[str] = ("png", "svg"),
) -> list[Path]:
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
        return np.array([_num(row.get(key)) for row in hist], dtype=float)

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
            _plain_log_ticks(ax_nll, nll)
    else:
        ax_nll.text(0.5, 0.5, "no data yet", ha="center", va="center", transform=ax_nll.transAxes)
    shown = [
        draw(ax_err, valid * 100, _best_label(x, valid, by_epoch), "#D55E00"),
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
    return save_figure(fig, path, formats)


def _best_index(x: np.ndarray, valid: np.ndarray) -> int | None:
    ok = np.isfinite(valid) & np.isfinite(x)
    return int(np.flatnonzero(ok)[np.argmin(valid[ok])]) if ok.any() else None


def _best_label(x: np.ndarray, valid: np.ndarray, by_epoch: bool) -> str:
    """The validation curve's legend entry, with its best point (never hidden by the legend)."""
    best = _best_index(x, valid)
    if best is None:
        return "validation error"
    where = f"epoch {x[best]:.0f}" if by_epoch else f"at {x[best]:,.0f}"
    return f"validation error (best {valid[best] * 100:.2f}%, {where})"


def _mark_best(ax: Any, x: np.ndarray, valid: np.ndarray) -> None:
    """A dotted vertical line at the best validation point."""
    best = _best_index(x, valid)
    if best is not None:
        ax.axvline(x[best], color="#D55E00", alpha=0.35, ls=":", lw=1)


def _plain_log_ticks(ax: Any, values: np.ndarray) -> None:
    """Plain numbers (0.4, 0.6, 1) on a log axis rather than 4×10⁻¹; minor ones within a decade."""
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_major_formatter(plain)
    finite = values[np.isfinite(values)]
    if finite.size and finite.max() < 10 * finite.min():
        ax.yaxis.set_minor_formatter(plain)


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
