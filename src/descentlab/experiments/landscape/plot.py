"""The landscape lab's figures: contours with every path, the loss per step, a GIF."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.animation import PillowWriter
from matplotlib.ticker import NullLocator

from descentlab.errors import ConfigError
from descentlab.experiments.landscape.lab import CLIP_SUFFIX, Landscape, LandscapeResult, Trajectory
from descentlab.plots import color_for, new_figure, save_figure

__all__ = ["plot_landscape"]


def _grid(land: Landscape, window: tuple[float, float, float, float], n: int = 300) -> tuple:
    x0, x1, y0, y1 = window
    xs = torch.linspace(x0, x1, n, dtype=torch.float64)
    ys = torch.linspace(y0, y1, n, dtype=torch.float64)
    gx, gy = torch.meshgrid(xs, ys, indexing="xy")
    with torch.no_grad():
        z = land.fn(gx, gy)
    return gx.numpy(), gy.numpy(), z.numpy()


def _window(result: LandscapeResult) -> tuple[float, float, float, float]:
    """The landscape's window, widened to show far-flung paths (up to 3× its size)."""
    x0, x1, y0, y1 = result.landscape.window
    pts = np.concatenate([t.points for t in result.paths.values()])
    w, h = x1 - x0, y1 - y0
    lo_x, hi_x = max(pts[:, 0].min(), x0 - w), min(pts[:, 0].max(), x1 + w)
    lo_y, hi_y = max(pts[:, 1].min(), y0 - h), min(pts[:, 1].max(), y1 + h)
    pad_x, pad_y = 0.05 * (max(hi_x, x1) - min(lo_x, x0)), 0.05 * (max(hi_y, y1) - min(lo_y, y0))
    return (
        x0 if lo_x >= x0 else lo_x - pad_x,
        x1 if hi_x <= x1 else hi_x + pad_x,
        y0 if lo_y >= y0 else lo_y - pad_y,
        y1 if hi_y <= y1 else hi_y + pad_y,
    )


def _style(result: LandscapeResult) -> dict[str, dict[str, Any]]:
    out = {}
    for i, (name, t) in enumerate(result.paths.items()):
        clipped = name.endswith(CLIP_SUFFIX)
        label = f"{name} (lr={t.lr:g}" + (f", clip={t.clip_norm:g})" if t.clip_norm else ")")
        if t.diverged:
            label += f" — diverged at step {t.stopped_at}"
        out[name] = {
            "color": color_for(t.optimizer, i),
            "ls": "--" if clipped else "-",
            "label": label,
        }
    return out


def _draw_contours(ax: Any, result: LandscapeResult, window: tuple, n: int = 300) -> None:
    gx, gy, z = _grid(result.landscape, window, n)
    # Log-spaced levels of f − min f: the interesting structure sits near the minimum,
    # where linear levels would leave the valley floor blank.
    z_min = float(np.nanmin(z))
    gap = z - z_min
    top = float(np.nanmax(gap))
    levels = np.geomspace(max(top * 1e-5, 1e-8), top, 24)
    ax.contourf(gx, gy, gap, levels=levels, norm="log", cmap="Greys", alpha=0.55, extend="min")
    ax.contour(gx, gy, gap, levels=levels, norm="log", colors="#777", linewidths=0.4)
    ax.plot(*result.landscape.minimum, marker="*", ms=12, color="gold", mec="k", zorder=5)
    ax.plot(*result.start, marker="o", ms=6, color="k", zorder=5)
    ax.set_xlim(window[0], window[1])
    ax.set_ylim(window[2], window[3])
    ax.set_xlabel("x")
    ax.set_ylabel("y")


def _figure(result: LandscapeResult, n: int = 300) -> tuple[Any, Any, Any, tuple]:
    fig, (ax, ax_loss) = new_figure(11.0, 4.6, ncols=2)
    window = _window(result)
    _draw_contours(ax, result, window, n)
    ax.set_aspect("equal", adjustable="box")
    title = f"{result.function}: {result.landscape.description}"
    if result.noise:
        title += f"; gradient noise σ={result.noise:g}"
    fig.suptitle(title, fontsize=10)
    return fig, ax, ax_loss, window


def _loss_gap(result: LandscapeResult, t: Trajectory) -> np.ndarray:
    f_min = result.landscape.value(*result.landscape.minimum)
    return np.maximum(t.losses - f_min, 1e-16)


def _label_axes(ax: Any, ax_loss: Any) -> None:
    """The loss panel's log scale and labels, and the paths' legend."""
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("f(θ) − min f (log scale)")
    ax_loss.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7, loc="best", framealpha=0.85)


def plot_landscape(
    result: LandscapeResult, out: str | Path, gif: bool | str | Path = False
) -> list[Path]:
    """Contour plot with every path (left) and f − min f per step, log scale (right).

    ``out`` is a folder (files ``<function>.png``/``.svg`` in it) or a file name whose
    ``.png``/``.svg`` suffix is replaced.  ``gif=True`` also writes an animation
    ``<function>.gif`` beside them (a path: written there), drawn with matplotlib's
    PillowWriter.  Returns the written paths.

    How to read it: the black dot is the start, the gold star the minimum; a dashed
    path is clipped; a cross marks where a diverged path left the finite range.
    """
    out = Path(out)
    is_file = out.suffix.lower() in (".png", ".svg")
    stem = out.with_suffix("") if is_file else out / result.function
    fig, ax, ax_loss, _ = _figure(result)
    styles = _style(result)
    for name, t in result.paths.items():
        st = styles[name]
        pts = t.points
        ax.plot(pts[:, 0], pts[:, 1], color=st["color"], ls=st["ls"], lw=1.4, label=st["label"])
        ax.plot(pts[:, 0], pts[:, 1], ".", color=st["color"], ms=2.5)
        if t.diverged:
            ax.plot(*pts[-1], "x", color=st["color"], ms=10, mew=2.5, zorder=6)
        gap = _loss_gap(result, t)
        ax_loss.plot(np.arange(gap.size), gap, color=st["color"], ls=st["ls"], lw=1.4)
    _label_axes(ax, ax_loss)
    written = save_figure(fig, stem)
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
        (lines[name],) = ax.plot([], [], color=st["color"], ls=st["ls"], lw=1.4, label=st["label"])
        (heads[name],) = ax.plot([], [], "o", color=st["color"], ms=5)
        (curves[name],) = ax_loss.plot([], [], color=st["color"], ls=st["ls"], lw=1.4)
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
