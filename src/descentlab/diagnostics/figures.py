"""``diagnostics.png``: curvature against its bound, and ‖g‖ against the error, over training.

The left panel is λmax of the training cost's Hessian with the learning rate's
quadratic limit ``2/ε`` (for momentum the run's own bound, turned into the same
curvature scale: the λmax at which the run's ε would sit exactly on its bound).  The
right panel reproduces Goodfellow et al.'s figure 8.1: the norm of the full gradient
may *grow* through training while the validation error falls — training does not
arrive at a critical point.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_diagnostics"]


def _column(rows: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    return np.array(
        [math.nan if row.get(key) is None else float(row[key]) for row in rows], dtype=float
    )


def plot_diagnostics(rows: Sequence[Mapping[str, Any]], path: str | Path) -> list[Path]:
    """Draw the rows of ``metrics.jsonl`` that carry diagnostics into ``path`` (PNG)."""
    measured = [r for r in rows if r.get("lambda_max") is not None]
    # matplotlib is loaded when a figure is drawn, not by every command that imports this.
    from descentlab.plots import new_figure, save_figure

    fig, (ax_l, ax_g) = new_figure(9.0, 3.4, ncols=2)
    it = _column(measured, "iteration") + 1
    lam = _column(measured, "lambda_max")
    lr, bound = _column(measured, "lr"), _column(measured, "lr_stability_bound")
    # The λmax at which the run's lr would be exactly at its bound: 2/ε for plain GD.
    limit = np.where(np.isfinite(bound) & (bound > 0), lam * bound / lr, 2 / lr)
    ax_l.plot(it, lam, "o-", ms=3, color="#1f77b4", label="λmax")
    ax_l.plot(it, limit, "--", color="#d62728", label="λ at the lr's bound (2/ε for SGD)")
    ax_l.set_xlabel("iteration")
    ax_l.set_ylabel("largest Hessian eigenvalue")
    ax_l.legend(fontsize=8)
    g = _column(measured, "full_grad_norm")
    ax_g.plot(it, g, "o-", ms=3, color="#2ca02c", label="‖g‖ (full sample)")
    ax_g.set_xlabel("iteration")
    ax_g.set_ylabel("gradient norm")
    ax_e = ax_g.twinx()
    all_it = _column(rows, "iteration") + 1
    ax_e.plot(all_it, 100 * _column(rows, "valid_error"), color="#d62728", label="valid error")
    ax_e.set_ylabel("validation error (%)")
    lines = ax_g.get_lines() + ax_e.get_lines()
    ax_g.legend(lines, [ln.get_label() for ln in lines], fontsize=8)
    for ax in (ax_l, ax_g):
        ax.grid(True, alpha=0.3)
    n = measured[0].get("diag_examples") if measured else None
    fig.suptitle(f"diagnostics on {n} training examples (eval mode)", fontsize=10)
    return save_figure(fig, path, ("png",))
