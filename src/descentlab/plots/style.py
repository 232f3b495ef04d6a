"""How figures look: one style per optimizer, colour-blind-safe cycles, bare Agg figures.

The colours are the Okabe–Ito palette (Okabe & Ito 2008), built to stay
distinguishable under the common colour-vision deficiencies; its yellow (#F0E442) is
too pale on white and is replaced by an olive.  The dash pattern tells the
optimizer's family apart even in greyscale: plain gradient steps solid, momentum
dashed, adaptive per-coordinate rates dotted, adaptive + momentum dash-dotted.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from descentlab.errors import ConfigError, did_you_mean
from descentlab.fsio import atomic_write_bytes

__all__ = [
    "AXIS_LABELS",
    "OPTIMIZER_COLORS",
    "OPTIMIZER_STYLES",
    "LineStyle",
    "as_float",
    "color_for",
    "line_styles",
    "new_figure",
    "plain_log_ticks",
    "require_keys",
    "save_figure",
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
        cyc = _cycle_style(i)
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
        # Rendered in memory, then written atomically: a full disk never leaves half a figure.
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, dpi=100, metadata=metadata)
        atomic_write_bytes(out, buffer.getvalue())
        written.append(out)
    return written


#: Axis labels for the history keys a person reads.
AXIS_LABELS = {
    "epoch": "epoch",
    "iteration": "minibatch iterations",
    "examples_seen": "training examples seen",
    "seconds": "wall-clock seconds",
    "valid_error": "validation error",
    "test_error": "test error",
    "train_nll": "training NLL",
    "lr": "learning rate",
}


def as_float(value: Any) -> float:
    """A plottable float; ``None`` (not measured) becomes NaN, which matplotlib skips."""
    if value is None:
        return math.nan
    return float(value)


def require_keys(row: Mapping[str, Any], keys: Iterable[str], what: str = "row") -> None:
    """A ConfigError naming the first of ``keys`` that ``row`` lacks."""
    for key in keys:
        if key not in row:
            raise ConfigError(f"{what} has no key {key!r}", hint=did_you_mean(key, list(row)))


def plain_log_ticks(ax: Any, values: np.ndarray) -> None:
    """Plain numbers (0.4, 0.6, 1) on a log y axis rather than 4×10⁻¹.

    Within one decade every minor tick is labelled, within two only 2× and 5× a power
    of ten (0.2, 0.5, 2, 5): a decade tick alone would leave a short axis unreadable.
    """
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    finite = values[np.isfinite(values) & (values > 0)]
    if not finite.size:
        return
    ratio = finite.max() / finite.min()
    if ratio < 10:
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    elif ratio < 100:

        def some(v: float, _: Any) -> str:
            lead = round(v / 10 ** math.floor(math.log10(v) + 1e-9))
            return f"{v:g}" if lead in (2, 5) else ""

        ax.yaxis.set_minor_formatter(FuncFormatter(some))
