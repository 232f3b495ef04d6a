"""Figures for runs and sweeps: learning curves, optimizer comparisons, lr sensitivity.

All figures are drawn on a bare :class:`matplotlib.figure.Figure` (Agg canvas),
never through ``pyplot``: nothing is shown, no global figure registry grows over a
long sweep, and plotting is safe from worker threads.  Each ``plot_*`` function
writes its figure as PNG (for reports and screens) and SVG (for papers) and returns
the paths it wrote; the matching ``*_figure`` function returns the figure itself.

* :mod:`.style` — one style per optimizer (colour-blind-safe colours, dashes by
  family), figures and saving;
* :mod:`.curves` — means over seeds on a common grid, lr sensitivity;
* :mod:`.learning_curve` — the curve of one run.

Error rates are drawn in % everywhere, as the tables print them.
"""

from __future__ import annotations

from descentlab.plots.curves import (
    curves_figure,
    lr_sensitivity_figure,
    mean_over_runs,
    plot_curves,
    plot_lr_sensitivity,
    spread,
)
from descentlab.plots.learning_curve import learning_curve_figure, plot_learning_curve
from descentlab.plots.style import (
    OPTIMIZER_COLORS,
    OPTIMIZER_STYLES,
    LineStyle,
    color_for,
    line_styles,
    new_figure,
    save_figure,
    style_for,
)

__all__ = [
    "OPTIMIZER_COLORS",
    "OPTIMIZER_STYLES",
    "LineStyle",
    "color_for",
    "curves_figure",
    "learning_curve_figure",
    "line_styles",
    "lr_sensitivity_figure",
    "mean_over_runs",
    "new_figure",
    "plot_curves",
    "plot_learning_curve",
    "plot_lr_sensitivity",
    "save_figure",
    "spread",
    "style_for",
]
