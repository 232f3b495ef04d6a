"""The landscape lab's figures: contours with every path, the loss per step, a GIF."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.animation import PillowWriter
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, NullFormatter, NullLocator

from descentlab.errors import ConfigError
from descentlab.experiments.landscape.lab import CLIP_SUFFIX, Landscape, LandscapeResult, Trajectory
from descentlab.plots import new_figure, save_figure, style_for

__all__ = ["MAX_ASPECT", "landscape_figure", "plot_landscape"]


def _grid(land: Landscape, window: tuple[float, float, float, float], n: int = 300) -> tuple:
    x0, x1, y0, y1 = window
    xs = torch.linspace(x0, x1, n, dtype=torch.float64)
    ys = torch.linspace(y0, y1, n, dtype=torch.float64)
    gx, gy = torch.meshgrid(xs, ys, indexing="xy")
    with torch.no_grad():
        z = land.fn(gx, gy)
    return gx.numpy(), gy.numpy(), z.numpy()


def _window(result: LandscapeResult) -> tuple[float, float, float, float]:
    """The landscape's window, widened to show far-flung paths (up to 3× its size).

    Then the shorter side is widened (about the same centre) until the window is at
    most :data:`MAX_ASPECT` times as wide as high or high as wide: with equal axis
    scales a path thrown far sideways (the cliff) would otherwise squash the panel
    into a strip.
    """
    x0, x1, y0, y1 = result.landscape.window
    pts = np.concatenate([t.points for t in result.paths.values()])
    w, h = x1 - x0, y1 - y0
    lo_x, hi_x = max(pts[:, 0].min(), x0 - w), min(pts[:, 0].max(), x1 + w)
    lo_y, hi_y = max(pts[:, 1].min(), y0 - h), min(pts[:, 1].max(), y1 + h)
    pad_x, pad_y = 0.05 * (max(hi_x, x1) - min(lo_x, x0)), 0.05 * (max(hi_y, y1) - min(lo_y, y0))
    x0, x1 = (x0 if lo_x >= x0 else lo_x - pad_x), (x1 if hi_x <= x1 else hi_x + pad_x)
    y0, y1 = (y0 if lo_y >= y0 else lo_y - pad_y), (y1 if hi_y <= y1 else hi_y + pad_y)
    w, h = x1 - x0, y1 - y0
    if w > MAX_ASPECT * h:
        grow = (w / MAX_ASPECT - h) / 2
        y0, y1 = y0 - grow, y1 + grow
    elif h > MAX_ASPECT * w:
        grow = (h / MAX_ASPECT - w) / 2
        x0, x1 = x0 - grow, x1 + grow
    return x0, x1, y0, y1


#: The contour panel is at most this much wider than high (or higher than wide).
MAX_ASPECT = 1.4


def _style(result: LandscapeResult) -> dict[str, dict[str, Any]]:
    """Colour, dashes, marker, width and z-order of every path.

    A plain optimizer has its style from every descentlab figure.  A clipped path
    (``sgd+clip``) must not look like its unclipped twin: it gets a colour no other
    path uses, dotted, with hollow markers.  Paths that travel far are drawn first,
    wide and underneath; shorter ones on top, narrower — so a path that runs along
    another's (Rosenbrock's valley) stays visible instead of being covered.
    """
    names = list(result.paths)
    taken = {style_for(result.paths[n].optimizer).color for n in names}
    spare = [c for c in _CLIP_COLORS if c not in taken]
    travel = {n: float(result.paths[n].steps.sum()) for n in names}
    order = sorted(names, key=lambda n: -travel[n])
    out = {}
    for i, name in enumerate(names):
        t = result.paths[name]
        base = style_for(t.optimizer, i)
        clipped = name.endswith(CLIP_SUFFIX)
        label = f"{name} (lr={t.lr:g}" + (f", clip={t.clip_norm:g})" if t.clip_norm else ")")
        if t.diverged:
            label += f" — diverged at step {t.stopped_at}"
        rank = order.index(name)
        out[name] = {
            "color": spare.pop(0) if clipped and spare else base.color,
            "ls": ":" if clipped else base.ls,
            "marker": base.marker,
            "mfc": "white" if clipped else None,
            "lw": max(1.3, 2.8 - 0.45 * rank),
            "zorder": 3 + rank,
            "label": label,
        }
    return out


# Colours for clipped paths: Okabe–Ito colours not fixed to an optimizer first.
_CLIP_COLORS = ["#E69F00", "#CC79A7", "#56B4E9", "#009E73", "#D55E00", "#8C7E00"]


def _levels(gap: np.ndarray) -> tuple[np.ndarray, bool]:
    """Contour levels of f − min f: log-spaced when the range spans decades, else linear."""
    top = float(np.nanmax(gap))
    positive = gap[gap > 0]
    low = float(np.nanmin(positive)) if positive.size else top
    low = max(low, top * 1e-6, 1e-12)
    if top <= 0:
        return np.array([0.0, 1.0]), False
    if top / low > 100:
        # The interesting structure sits near the minimum, where linear levels would
        # leave the valley floor blank.
        return np.geomspace(low, top, 15), True
    return np.linspace(0.0, top, 15), False


def _draw_contours(ax: Any, result: LandscapeResult, window: tuple, n: int = 300) -> Any:
    """Filled contours with a colour bar's mappable returned, plus thin level lines."""
    gx, gy, z = _grid(result.landscape, window, n)
    gap = z - float(np.nanmin(z))
    levels, log = _levels(gap)
    norm = LogNorm(levels[0], levels[-1]) if log else None
    if log:  # below the lowest level (the minimum itself): shown in the lowest colour
        gap = np.maximum(gap, levels[0] / 2)
    filled = ax.contourf(
        gx, gy, gap, levels=levels, norm=norm, cmap="cividis", alpha=0.55, extend="min"
    )
    ax.contour(gx, gy, gap, levels=levels, norm=norm, colors="white", linewidths=0.5, alpha=0.7)
    ax.plot(*result.landscape.minimum, marker="*", ms=15, color="gold", mec="k", zorder=20)
    ax.plot(*result.start, marker="o", ms=7, color="white", mec="k", mew=1.5, zorder=20)
    ax.set_xlim(window[0], window[1])
    ax.set_ylim(window[2], window[3])
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    return filled, log


def _figure(result: LandscapeResult, n: int = 300) -> tuple[Any, Any, Any, tuple]:
    fig, (ax, ax_loss) = new_figure(12.5, 5.6, ncols=2)
    window = _window(result)
    filled, log = _draw_contours(ax, result, window, n)
    ax.set_aspect("equal", adjustable="box")
    # Below the contours, so its label is not confused with the loss panel's axis.
    bar = fig.colorbar(filled, ax=ax, orientation="horizontal", shrink=0.85, pad=0.02, aspect=40)
    bar.set_label("contours: f − min f" + (" (log-spaced levels)" if log else ""), fontsize=9)
    if log:
        bar.ax.xaxis.set_major_locator(LogLocator())
        bar.ax.xaxis.set_minor_formatter(NullFormatter())
    title = f"{result.function}: {result.landscape.description}"
    if result.noise:
        title += f"; gradient noise σ={result.noise:g}"
    fig.suptitle(title, fontsize=10)
    return fig, ax, ax_loss, window


def _loss_gap(result: LandscapeResult, t: Trajectory) -> np.ndarray:
    f_min = result.landscape.value(*result.landscape.minimum)
    return np.maximum(t.losses - f_min, 1e-16)


def _label_axes(ax: Any, ax_loss: Any) -> None:
    """The loss panel's log scale and labels, and the paths' legend (on the loss panel,
    where it hides no path)."""
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("f(θ) − min f (log scale)")
    ax_loss.grid(True, which="major", alpha=0.3)
    ax_loss.legend(
        fontsize=8,
        loc="best",
        framealpha=0.9,
        title="○ start  ★ minimum  × diverged",
        title_fontsize=8,
    )


def landscape_figure(result: LandscapeResult) -> Figure:
    """The still figure of :func:`plot_landscape` (contours + paths, loss per step)."""
    fig, ax, ax_loss, _ = _figure(result)
    styles = _style(result)
    for name, t in result.paths.items():
        st = styles[name]
        pts = t.points
        line = {k: st[k] for k in ("color", "ls", "lw", "zorder")}
        every = max(1, len(pts) // 15)  # a marker every ~15th of the path shows its pace
        ax.plot(pts[:, 0], pts[:, 1], alpha=0.9, **line)
        ax.plot(
            pts[::every, 0],
            pts[::every, 1],
            ls="none",
            marker=st["marker"],
            ms=5,
            color=st["color"],
            mfc=st["mfc"] or st["color"],
            mec=st["color"],
            zorder=st["zorder"],
        )
        # The end point, large and outlined: where each optimizer got to is never hidden.
        if t.diverged:  # a thin cross: "X" is Adam's marker
            ax.plot(*pts[-1], marker="x", ms=12, color=st["color"], mew=3, zorder=19)
        else:
            ax.plot(*pts[-1], marker=st["marker"], ms=10, color=st["color"], mec="k", zorder=19)
        gap = _loss_gap(result, t)
        ax_loss.plot(
            np.arange(gap.size),
            gap,
            label=st["label"],
            marker=st["marker"],
            markevery=max(1, gap.size // 12),
            mfc=st["mfc"] or st["color"],
            ms=5,
            **{**line, "lw": 1.6},
        )
    _label_axes(ax, ax_loss)
    return fig


def plot_landscape(
    result: LandscapeResult, out: str | Path, gif: bool | str | Path = False
) -> list[Path]:
    """Contour plot with every path (left) and f − min f per step, log scale (right).

    ``out`` is a folder (files ``<function>.png``/``.svg`` in it) or a file name whose
    ``.png``/``.svg`` suffix is replaced.  ``gif=True`` also writes an animation
    ``<function>.gif`` beside them (a path: written there), drawn with matplotlib's
    PillowWriter.  Returns the written paths.

    How to read it: the white dot is the start, the gold star the minimum, the colour
    bar gives f − min f; each path ends in a large outlined marker (an ``X`` where it
    diverged); a dotted path with hollow markers is clipped.
    """
    out = Path(out)
    is_file = out.suffix.lower() in (".png", ".svg")
    stem = out.with_suffix("") if is_file else out / result.function
    written = save_figure(landscape_figure(result), stem)
    if gif:
        gif_path = stem.with_suffix(".gif") if gif is True else Path(gif)
        written.append(_write_gif(result, gif_path))
    return written


def _write_gif(result: LandscapeResult, path: Path, frames: int = 40, fps: int = 10) -> Path:
    """An animation of the paths growing step by step (at most ``frames`` frames).

    Every frame redraws the whole figure, so the contours use a coarser grid than the
    still image: the GIF is for watching the order of events, the PNG for detail.
    """
    # PillowWriter.isAvailable() is always True; without Pillow it would fail late and
    # obscurely, at the first frame, so look for the module itself up front.
    if importlib.util.find_spec("PIL") is None:
        raise ConfigError(
            "writing a GIF needs the Pillow package, which is not installed",
            hint="pip install pillow, or drop --gif / gif=True",
        )

    fig, ax, ax_loss, _ = _figure(result, n=100)
    styles = _style(result)
    longest = max(len(t.points) for t in result.paths.values())
    lines, heads, curves = {}, {}, {}
    for name, st in styles.items():
        line = {k: st[k] for k in ("color", "ls", "lw", "zorder")}
        (lines[name],) = ax.plot([], [], **line)
        (heads[name],) = ax.plot([], [], marker=st["marker"], ms=7, color=st["color"], mec="k")
        (curves[name],) = ax_loss.plot([], [], label=st["label"], **{**line, "lw": 1.6})
    gaps = {name: _loss_gap(result, t) for name, t in result.paths.items()}
    all_gaps = np.concatenate(list(gaps.values()))
    ax_loss.set_xlim(0, longest - 1)
    ax_loss.set_ylim(all_gaps.min() / 2, all_gaps.max() * 2)
    _label_axes(ax, ax_loss)
    ax_loss.yaxis.set_minor_locator(NullLocator())  # minor log ticks dominate frame time
    ends = np.unique(np.linspace(1, longest, min(frames, longest)).round().astype(int))
    # Lay the figure out once: constrained layout would otherwise re-solve every frame.
    fig.canvas.draw()
    fig.set_layout_engine("none")

    def draw(end: int) -> None:
        for name, t in result.paths.items():
            pts = t.points[:end]
            lines[name].set_data(pts[:, 0], pts[:, 1])
            heads[name].set_data(pts[-1:, 0], pts[-1:, 1])
            curves[name].set_data(np.arange(len(pts)), gaps[name][:end])

    # PillowWriter driven by hand rather than through FuncAnimation, which would draw
    # every frame twice.
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = PillowWriter(fps=fps)
    with writer.saving(fig, str(path), dpi=72):
        for end in ends:
            draw(int(end))
            writer.grab_frame()
    return path
