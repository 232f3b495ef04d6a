"""Curves over seeds and learning-rate sensitivity: the figures of a sweep report.

Curves over several seeds are drawn as the mean with a band (min–max by default,
or ±1 sample std).  Seeds of one configuration need not share x values (wall-clock
seconds never do, early stopping ends runs at different epochs): each run is
linearly interpolated onto a common grid over the x range *every* run covers, so
that each point of a curve is a mean over all its seeds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from descentlab.errors import ConfigError, did_you_mean
from descentlab.plots.style import (
    AXIS_LABELS,
    as_float,
    line_styles,
    new_figure,
    plain_log_ticks,
    require_keys,
    save_figure,
)

__all__ = [
    "curves_figure",
    "lr_sensitivity_figure",
    "mean_over_runs",
    "plot_curves",
    "plot_lr_sensitivity",
    "spread",
]

_BANDS = ("minmax", "std", None)
# x keys that count whole things: their ticks must be integers.
_COUNT_KEYS = frozenset({"epoch", "iteration", "examples_seen"})


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
        require_keys(row, (x_key, y_key), what="history row")
        x, y = as_float(row[x_key]), as_float(row[y_key])
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


def mean_over_runs(
    runs: list[tuple[np.ndarray, np.ndarray]], band: str | None
) -> dict[str, np.ndarray]:
    """Mean and band over runs, each run linearly interpolated onto a common grid.

    The grid spans only the x range that every run covers (see :func:`_common_grid`).
    """
    if band not in _BANDS:
        raise ConfigError(f"band must be 'minmax', 'std' or None, got {band!r}")
    runs = [(x, y) for x, y in runs if x.size]
    empty = {k: np.empty(0) for k in ("x", "mean", "low", "high")}
    if not runs:
        return empty
    grid = _common_grid(runs)
    if not grid.size:
        return empty
    stack = np.stack([np.interp(grid, x, y) for x, y in runs])
    lowest, highest = stack.min(axis=0), stack.max(axis=0)
    # A float mean of equal values can land an ulp outside them: seeds that agree
    # must give exactly their value and an empty band, never an inside-out one.
    mean = np.clip(stack.mean(axis=0), lowest, highest)
    if band == "std" and len(runs) > 1:
        dev = np.where(lowest == highest, 0.0, stack.std(axis=0, ddof=1))
        low, high = mean - dev, mean + dev
    else:
        low, high = lowest, highest
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
    formats: Sequence[str] = ("png", "svg"),
    **options: Any,
) -> list[Path]:
    """:func:`curves_figure` written to ``path`` once per format; returns the paths."""
    return save_figure(curves_figure(series, x_key, y_key, group_key, **options), path, formats)


def _group_runs(
    series: Iterable[Mapping[str, Any]],
    x_key: str,
    y_key: str,
    group_key: str,
    history_key: str,
    style_key: str | None,
    percent: bool,
) -> tuple[dict[Any, list[tuple[np.ndarray, np.ndarray]]], dict[Any, Any]]:
    """Each group's ``(x, y)`` curves (one per run), and the optimizer naming its style."""
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
        if x_key == "iteration":  # a 0-based counter; a person counts the first step as 1
            x = x + 1
        groups.setdefault(name, []).append((x, 100 * y if percent else y))
        optimizer_of.setdefault(name, run.get(style_key, name) if style_key else name)
    return groups, optimizer_of


def _draw_mean_curves(
    ax: Any,
    groups: dict[Any, list[tuple[np.ndarray, np.ndarray]]],
    styles: list[Any],
    band: str | None,
) -> tuple[int, bool]:
    """Each group's mean curve (and band); how many were drawn, and whether one had seeds."""
    drawn, several = 0, False
    for (name, runs), style in zip(groups.items(), styles, strict=True):
        agg = mean_over_runs(runs, band)
        if not agg["x"].size:
            continue
        n_runs = len(runs)
        several |= n_runs > 1
        label = f"{name} ({n_runs} seeds)" if n_runs > 1 else str(name)
        # Few points: mark each.  A dense grid: markers evenly spaced along the drawn
        # line (8% of the axes apart), however short or long its x range is.
        every = None if agg["x"].size <= 30 else 0.08
        ax.plot(
            agg["x"], agg["mean"], label=label, lw=1.7, ms=4.5, markevery=every, **style.kwargs()
        )
        if band is not None and n_runs > 1:
            ax.fill_between(agg["x"], agg["low"], agg["high"], color=style.color, alpha=0.15, lw=0)
        drawn += 1
    return drawn, several


def curves_figure(
    series: Iterable[Mapping[str, Any]],
    x_key: str,
    y_key: str,
    group_key: str,
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
) -> Figure:
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

    """
    if band not in _BANDS:
        raise ConfigError(f"band must be 'minmax', 'std' or None, got {band!r}")
    groups, optimizer_of = _group_runs(
        series, x_key, y_key, group_key, history_key, style_key, percent
    )
    styles = line_styles(list(groups), [optimizer_of[g] for g in groups])

    fig, (ax,) = new_figure(7.4, 4.6)
    drawn, several = _draw_mean_curves(ax, groups, styles, band)
    if not drawn:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    if logx and drawn:
        ax.set_xscale("log")
    if logy and drawn:
        ax.set_yscale("log")
        plain_log_ticks(ax, np.concatenate([y for runs in groups.values() for _, y in runs]))
    if x_key in _COUNT_KEYS and not logx:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel or AXIS_LABELS.get(x_key, x_key.replace("_", " ")))
    default_y = AXIS_LABELS.get(y_key, y_key.replace("_", " "))
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
    return fig


def plot_lr_sensitivity(
    rows: Iterable[Mapping[str, Any]],
    path: str | Path,
    *,
    formats: Sequence[str] = ("png", "svg"),
    **options: Any,
) -> list[Path]:
    """:func:`lr_sensitivity_figure` written to ``path`` once per format; returns the paths."""
    return save_figure(lr_sensitivity_figure(rows, **options), path, formats)


def _draw_lr_line(ax: Any, name: Any, by_lr: dict[float, list[float]], style: Any) -> bool:
    """One group's mean metric per learning rate, with min–max bars; whether one diverged.

    A learning rate whose every run diverged is an ``x`` on the top edge of the axes.
    """
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
    return bool(dead.size)


def lr_sensitivity_figure(
    rows: Iterable[Mapping[str, Any]],
    *,
    lr_key: str = "lr",
    metric_key: str = "valid_error",
    group_key: str = "optimizer",
    style_key: str | None = None,
    percent: bool = False,
    title: str | None = None,
    ylabel: str | None = None,
) -> Figure:
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
        require_keys(row, (lr_key, metric_key, group_key))
        lr = float(row[lr_key])
        if not lr > 0:
            raise ConfigError(f"learning rates must be > 0 for a log axis, got {lr}")
        name = row[group_key]
        value = as_float(row[metric_key])
        cells.setdefault(name, {}).setdefault(lr, []).append(100 * value if percent else value)
        optimizer_of.setdefault(name, row.get(style_key, name) if style_key else name)
    styles = line_styles(list(cells), [optimizer_of[g] for g in cells])

    fig, (ax,) = new_figure(7.4, 4.6)
    diverged_seen = False
    for (name, by_lr), style in zip(cells.items(), styles, strict=True):
        diverged_seen |= _draw_lr_line(ax, name, by_lr, style)
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
    default_y = f"final {AXIS_LABELS.get(metric_key, metric_key.replace('_', ' '))}"
    ax.set_ylabel(ylabel or (f"{default_y} (%)" if percent else default_y))
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    return fig
