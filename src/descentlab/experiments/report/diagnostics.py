"""The report's diagnostics section: per configuration, the last ``--diagnostics`` values.

Runs trained with ``--diagnostics N`` carry λmax, its learning-rate bound, ‖g‖ and the
noise scale in some of their ``metrics.jsonl`` rows (see docs/diagnostics.md).  This
section shows, for each configuration, the values of each run's *last* measurement,
averaged over its seeds; a sweep without them gets no section.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from descentlab.experiments.report.context import ReportContext, Section, Table, fmt_num

__all__ = ["diagnostics_section"]

_KEYS = ("lambda_max", "lr", "lr_stability_bound", "full_grad_norm", "noise_scale")


def _last_measured(history: list[dict[str, Any]]) -> Mapping[str, Any] | None:
    rows = [r for r in history if r.get("lambda_max") is not None]
    return rows[-1] if rows else None


def _mean(values: list[Any]) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.3g}"


def diagnostics_section(ctx: ReportContext) -> Section | None:
    """A table of the last recorded diagnostics per configuration, or None without any."""
    by_label: dict[str, list[Mapping[str, Any]]] = {}
    for row in ctx.ok_final:
        last = _last_measured(ctx.history(row))
        if last is not None:
            by_label.setdefault(ctx.label(row), []).append(last)
    if not by_label:
        return None
    rows = []
    for label, lasts in by_label.items():
        m = {k: _mean([r.get(k) for r in lasts]) for k in _KEYS}
        ratio = (
            m["lr"] / m["lr_stability_bound"]
            if m["lr"] is not None and m["lr_stability_bound"]
            else None
        )
        iteration = _mean([r.get("iteration") for r in lasts])
        rows.append(
            [label, fmt_num((iteration or 0) + 1, 0), _fmt(m["lambda_max"]), _fmt(m["lr"]),
             _fmt(m["lr_stability_bound"]), _fmt(ratio), _fmt(m["full_grad_norm"]),
             _fmt(m["noise_scale"]), str(len(lasts))]
        )  # fmt: skip
    columns = ["configuration", "at iteration", "λmax", "lr", "lr bound", "lr / bound",
               "‖g‖", "noise scale B_simple", "runs"]  # fmt: skip
    return (
        Section("Diagnostics")
        .text(
            "The last values recorded by --diagnostics (training cost's Hessian on a "
            "sample of the training split, eval mode), mean over seeds. A bound is "
            "given only for SGD and momentum; lr / bound near or above 1 is the edge of "
            "stability. See docs/diagnostics.md."
        )
        .table(Table(columns, rows))
    )
