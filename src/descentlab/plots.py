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

import io
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from descentlab.errors import ConfigError, did_you_mean
from descentlab.fsio import atomic_write_bytes

__all__ = [
    "OPTIMIZER_COLORS",
    "color_for",
    "new_figure",
    "plot_curves",
    "plot_learning_curve",
    "plot_lr_sensitivity",
    "save_figure",
]

#: One fixed colour per chapter-8 optimizer, so that "adam" is the same colour in
#: every figure of a report (the tab10 palette, colour-blind friendlier than the
#: default cycle's order for these eight).
OPTIMIZER_COLORS: dict[str, str] = {
    "sgd": "#1f77b4",
    "momentum": "#ff7f0e",
    "nesterov": "#2ca02c",
    "adagrad": "#d62728",
    "rmsprop": "#9467bd",
    "rmsprop-nesterov": "#8c564b",
    "adam": "#e377c2",
    "adadelta": "#17becf",
}
_FALLBACK = ["#7f7f7f", "#bcbd22", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173"]

_BANDS = ("minmax", "std", None)
_FORMATS = ("png", "svg", "pdf")


def color_for(name: Any, index: int = 0) -> str:
    """The colour of group ``name``: fixed for known optimizers, else from a fallback cycle."""
    key = str(name).lower()
    if key in OPTIMIZER_COLORS:
        return OPTIMIZER_COLORS[key]
    return _FALLBACK[index % len(_FALLBACK)]


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
        # Rendered in memory, then written atomically: a full disk never leaves half a figure.
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, dpi=100, metadata=metadata)
        atomic_write_bytes(out, buffer.getvalue())
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


def _spread(values: Iterable[float]) -> tuple[float, float, float]:
    """Mean of the finite values and the distances down to the min and up to the max.

    No finite value (every run diverged): ``(nan, 0, 0)``.
    """
    vals = np.array([v for v in values if math.isfinite(v)])
    if not vals.size:
        return math.nan, 0.0, 0.0
    mean = float(vals.mean())
    return mean, mean - float(vals.min()), float(vals.max()) - mean


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


def _aggregate(
    runs: list[tuple[np.ndarray, np.ndarray]], band: str | None
) -> dict[str, np.ndarray]:
    """Mean and band over runs, on the union of their x values.

    A run contributes at x only inside [its first x, its last x] (no extrapolation).
    """
    runs = [(x, y) for x, y in runs if x.size]
    if not runs:
        return {"x": np.empty(0), "mean": np.empty(0), "low": np.empty(0), "high": np.empty(0)}
    grid = np.unique(np.concatenate([x for x, _ in runs]))
    stack = np.full((len(runs), grid.size), np.nan)
    for i, (x, y) in enumerate(runs):
        inside = (grid >= x[0]) & (grid <= x[-1])
        stack[i, inside] = np.interp(grid[inside], x, y)
    count = np.sum(~np.isnan(stack), axis=0)
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(stack, axis=0)
        if band == "std":
            # ddof=1 where at least two runs reach this x; where one run does, no band.
            dev = np.zeros_like(mean)
            multi = count > 1
            if multi.any():
                dev[multi] = np.nanstd(stack[:, multi], axis=0, ddof=1)
            low, high = mean - dev, mean + dev
        else:
            low, high = np.nanmin(stack, axis=0), np.nanmax(stack, axis=0)
    return {"x": grid, "mean": mean, "low": low, "high": high, "count": count}


def plot_curves(
    series: Iterable[Mapping[str, Any]],
    x_key: str,
    y_key: str,
    group_key: str,
    path: str | Path,
    *,
    history_key: str = "history",
    band: str | None = "minmax",
    logx: bool = False,
    logy: bool = False,
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
        ``valid_error``/``train_nll``).  Several runs (seeds) per group are averaged.
    band
        ``"minmax"`` (shaded from the lowest to the highest run), ``"std"`` (mean ±1
        sample standard deviation) or ``None``.
    logx, logy
        Log axes; use ``logy=True`` for training NLL against iterations.

    Returns the written paths (``path`` with each suffix in ``formats``).
    """
    if band not in _BANDS:
        raise ConfigError(f"band must be 'minmax', 'std' or None, got {band!r}")
    groups: dict[Any, list[tuple[np.ndarray, np.ndarray]]] = {}
    for run in series:
        if group_key not in run or history_key not in run:
            missing = group_key if group_key not in run else history_key
            raise ConfigError(
                f"run has no key {missing!r}", hint=did_you_mean(missing, list(run.keys()))
            )
        groups.setdefault(run[group_key], []).append(_xy(run[history_key], x_key, y_key))

    fig, (ax,) = new_figure(7.0, 4.4)
    drawn = 0
    for i, (name, runs) in enumerate(groups.items()):
        agg = _aggregate(runs, band)
        if not agg["x"].size:
            continue
        color = color_for(name, i)
        n_runs = len(runs)
        label = f"{name} ({n_runs} runs)" if n_runs > 1 else str(name)
        marker = "o" if agg["x"].size <= 30 else None
        ax.plot(agg["x"], agg["mean"], color=color, label=label, lw=1.6, marker=marker, ms=3)
        if band is not None and n_runs > 1:
            ax.fill_between(agg["x"], agg["low"], agg["high"], color=color, alpha=0.18, lw=0)
        drawn += 1
    if not drawn:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    if logx and drawn:
        ax.set_xscale("log")
    if logy and drawn:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel or x_key.replace("_", " "))
    ax.set_ylabel(ylabel or y_key.replace("_", " "))
    if title:
        ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    if drawn:
        band_note = {"minmax": "band: min–max over runs", "std": "band: ±1 std", None: None}[band]
        ax.legend(title=band_note if any(len(r) > 1 for r in groups.values()) else None, fontsize=8)
    return save_figure(fig, path, formats)


def plot_lr_sensitivity(
    rows: Iterable[Mapping[str, Any]],
    path: str | Path,
    *,
    lr_key: str = "lr",
    metric_key: str = "valid_error",
    group_key: str = "optimizer",
    title: str | None = None,
    ylabel: str | None = None,
    formats: Sequence[str] = ("png", "svg"),
) -> list[Path]:
    """Final metric against learning rate (log x), one line per optimizer.

    ``rows`` holds one result per run (several seeds per (optimizer, lr) are
    averaged; the error bars span min–max).  A (optimizer, lr) whose every run
    has no finite metric — it diverged — is marked with an ``x`` on the top edge,
    so a too-large learning rate is visible rather than silently missing.
    """
    cells: dict[Any, dict[float, list[float]]] = {}
    for row in rows:
        _require(row, (lr_key, metric_key, group_key))
        lr = float(row[lr_key])
        if not lr > 0:
            raise ConfigError(f"learning rates must be > 0 for a log axis, got {lr}")
        cells.setdefault(row[group_key], {}).setdefault(lr, []).append(_num(row[metric_key]))

    fig, (ax,) = new_figure(7.0, 4.4)
    diverged_seen = False
    for i, (name, by_lr) in enumerate(cells.items()):
        color = color_for(name, i)
        lrs = np.array(sorted(by_lr))
        means, lows, highs = zip(*(_spread(by_lr[lr]) for lr in lrs), strict=True)
        dead = [lr for lr, m in zip(lrs, means, strict=True) if math.isnan(m)]
        ax.errorbar(
            lrs,
            means,
            yerr=[lows, highs],
            color=color,
            label=str(name),
            marker="o",
            ms=4,
            lw=1.5,
            capsize=3,
        )
        if dead:
            diverged_seen = True
            # x in data coordinates, y pinned to the top edge of the axes.
            ax.plot(
                dead,
                [1.0] * len(dead),
                "x",
                color=color,
                ms=9,
                mew=2,
                transform=ax.get_xaxis_transform(),
                clip_on=False,
            )
    if cells:
        ax.set_xscale("log")
        ax.legend(fontsize=8, title="x on top edge: diverged" if diverged_seen else None)
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("learning rate")
    ax.set_ylabel(ylabel or f"final {metric_key.replace('_', ' ')}")
    if title:
        ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    return save_figure(fig, path, formats)


def plot_learning_curve(
    history: Sequence[Mapping[str, Any]],
    path: str | Path,
    *,
    title: str | None = None,
    formats: Sequence[str] = ("png", "svg"),
) -> list[Path]:
    """The learning curve of one run: training NLL (left) and error rates (right) per epoch.

    ``history`` is the trainer's list of per-epoch dicts with keys ``epoch``,
    ``train_nll``, ``valid_error`` and ``test_error`` (``None`` when the test set was
    not evaluated that epoch).  Written for every run directory, so it is kept
    cheap (one small figure, no pyplot) and never fails on an empty or one-point
    history: missing values are skipped and single points get markers.
    """
    fig, (ax_nll, ax_err) = new_figure(9.0, 3.4, ncols=2)
    hist = list(history)

    def column(key: str) -> np.ndarray:
        return np.array([_num(row.get(key)) for row in hist], dtype=float)

    epochs = column("epoch")
    nll, valid, test = column("train_nll"), column("valid_error"), column("test_error")
    few = len(hist) <= 30  # markers keep one-point and short curves visible

    def draw(ax: Any, y: np.ndarray, label: str, color: str) -> bool:
        ok = np.isfinite(epochs) & np.isfinite(y)
        if not ok.any():
            return False
        ax.plot(
            epochs[ok],
            y[ok],
            color=color,
            label=label,
            lw=1.6,
            marker="o" if few or ok.sum() == 1 else None,
            ms=3,
        )
        return True

    if draw(ax_nll, nll, "train NLL", "#1f77b4"):
        if np.all(nll[np.isfinite(nll)] > 0):
            ax_nll.set_yscale("log")
    else:
        ax_nll.text(0.5, 0.5, "no data yet", ha="center", va="center", transform=ax_nll.transAxes)
    shown = [
        draw(ax_err, valid * 100, "valid error", "#d62728"),
        draw(ax_err, test * 100, "test error", "#2ca02c"),
    ]
    if any(shown):
        ok = np.isfinite(valid) & np.isfinite(epochs)
        if ok.any():
            best = int(np.flatnonzero(ok)[np.argmin(valid[ok])])
            ax_err.axvline(epochs[best], color="#d62728", alpha=0.3, ls="--", lw=1)
            ax_err.annotate(
                f"best {valid[best] * 100:.2f}%",
                (epochs[best], valid[best] * 100),
                textcoords="offset points",
                xytext=(4, 6),
                fontsize=8,
                color="#d62728",
            )
        ax_err.legend(fontsize=8)
    else:
        ax_err.text(0.5, 0.5, "no data yet", ha="center", va="center", transform=ax_err.transAxes)
    ax_nll.set_xlabel("epoch")
    ax_nll.set_ylabel("training NLL (mean per example)")
    ax_err.set_xlabel("epoch")
    ax_err.set_ylabel("error rate (%)")
    for ax in (ax_nll, ax_err):
        ax.grid(True, alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path, formats)
