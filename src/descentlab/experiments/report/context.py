"""The building blocks of a sweep report: sections, tables, number formats, the context.

A report is a list of :class:`Section`; each holds text, :class:`Table` and figure
blocks.  :class:`ReportContext` is what every section builder reads: the plan, the
runs' rows (see :mod:`descentlab.experiments.store`), the tuning decisions and the
runs' histories.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from descentlab.experiments.plan import LABEL_KEY, SweepPlan, config_key, format_value
from descentlab.experiments.stats import wilson_interval
from descentlab.experiments.store import RUNS_DIR, read_history

STAR = "★"
MAX_CURVES = 8
_BARE_KEYS = frozenset({LABEL_KEY, "optimizer", "loss", "model", "dataset"})


# ====================================================================== building blocks
@dataclass
class Table:
    """A table of already formatted cells."""

    columns: list[str]
    rows: list[list[str]]
    caption: str | None = None


@dataclass
class Section:
    """One section of a report: text, tables and figures, in order.

    ``blocks`` holds ``("text", str)``, ``("table", Table)`` and ``("figure", Path)``
    items (figures are PNG paths; an SVG of the same name sits beside each).  Text may
    use ``**bold**`` and ```code```.
    """

    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def text(self, *paragraphs: str) -> Section:
        self.blocks += [("text", p) for p in paragraphs]
        return self

    def table(self, table: Table) -> Section:
        self.blocks.append(("table", table))
        return self

    def figure(self, path: str | Path) -> Section:
        self.blocks.append(("figure", Path(path)))
        return self

    def of_kind(self, kind: str) -> list[Any]:
        return [value for k, value in self.blocks if k == kind]


def fmt_pct(x: float | None, digits: int = 2) -> str:
    """``12.34%`` for a rate; "–" for not measured or not finite."""
    return "–" if x is None or not math.isfinite(x) else f"{100 * x:.{digits}f}%"


def fmt_num(x: float | None, digits: int = 1) -> str:
    """A number with ``digits`` decimals; "–" for not measured or not finite."""
    return "–" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def fmt_pm(mean: float | None, std: float | None, pct: bool = True, digits: int = 2) -> str:
    """``12.34 ± 0.56%`` for rates; counts and seconds to the digits their spread allows."""
    if mean is None:
        return "–"
    if pct:
        return f"{100 * mean:.{digits}f} ± {100 * (std or 0):.{digits}f}%"
    return fmt_uncertain(mean, std or 0.0)


def fmt_uncertain(mean: float, std: float) -> str:
    """``0.0399 ± 0.0008``: the spread to one significant digit (two when it starts
    with a 1), the mean to the same decimal place — digits beyond the spread are noise.

    A zero spread (one seed, or seeds that agree) shows the mean to three significant
    digits, a whole number without decimals: ``4 ± 0``.
    """
    if not math.isfinite(mean):
        return f"{mean:g}"
    if not std or not math.isfinite(std) or std < 0:
        text = fmt_sig(mean)
        if "." in text:  # "1.50" → "1.5", "4.00" → "4": no spread, no false precision
            text = text.rstrip("0").rstrip(".")
        return f"{text} ± 0"
    exponent = math.floor(math.log10(std))
    significant = 2 if std / 10**exponent < 2 else 1
    decimals = max(0, significant - 1 - exponent)
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}"


def fmt_sig(x: float) -> str:
    """Three significant digits, without exponents for everyday magnitudes."""
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    digits = max(0, 2 - math.floor(math.log10(abs(x))))
    return f"{x:.{digits}f}"


def error_ci(errors: int | None, n: int | None) -> tuple[float, float] | None:
    """The Wilson 95% interval of ``errors`` out of ``n``; None when not counted."""
    if errors is None or not n:
        return None
    return wilson_interval(int(errors), int(n))


def fmt_ci(ci: tuple[float, float] | None) -> str:
    return "–" if ci is None else f"[{100 * ci[0]:.2f}, {100 * ci[1]:.2f}]%"


# ============================================================================ context
@dataclass
class ReportContext:
    """Everything a report section needs: the plan, the runs, labels and histories."""

    sweep_dir: Path
    plan: SweepPlan
    rows: list[dict[str, Any]]
    selection: list[dict[str, Any]]
    figures_dir: Path
    _histories: dict[str, list[dict[str, Any]]] = field(default_factory=dict, repr=False)

    @property
    def final(self) -> list[dict[str, Any]]:
        """The runs the comparison is about (stage 2 when tuning), finished or not."""
        return [r for r in self.rows if "final" in r["stages"]]

    @property
    def ok_final(self) -> list[dict[str, Any]]:
        return [r for r in self.final if r["status"] == "ok"]

    @property
    def varying_keys(self) -> list[str]:
        """Configuration keys (not seeds, not tuned options) that differ between final runs.

        With labelled grid tables, an option counts only if it varies *within* a label
        (the label already names what its table sets: "early stopping" rather than
        "early_stopping=epochs, patience=5").
        """
        keys = []
        for key in self.plan.config_keys:
            if key in self.plan.tune:
                continue
            if key == LABEL_KEY:
                varies = len({r.get(LABEL_KEY) for r in self.final}) > 1
            else:
                per_label: dict[Any, set[Any]] = {}
                for r in self.final:
                    per_label.setdefault(r.get(LABEL_KEY), set()).add(config_key(r, [key]))
                varies = any(len(v) > 1 for v in per_label.values())
            if varies:
                keys.append(key)
        return keys

    def label(self, row: Mapping[str, Any], without: Sequence[str] = ()) -> str:
        """The configuration's name: ``adam``, ``adam, batch_size=20``, ``L2``...

        ``without`` leaves keys out (``("lr",)``: one name for all learning rates of a
        configuration, so that a figure can join them into one line).
        """
        parts = []
        for key in self.varying_keys:
            if key in without:
                continue
            value = row.get(key)
            if key in _BARE_KEYS:  # values that name themselves: "adam", "mse", "mnist"
                parts.append(format_value(value))
            else:
                parts.append(f"{key}={format_value(value)}")
        return ", ".join(parts) if parts else "all runs"

    @property
    def name(self) -> str:
        """What the sweep is about, for figure titles: its title, or ``mlp on digits``."""
        if self.plan.title:
            return str(self.plan.title)
        models = sorted({format_value(r.get("model")) for r in self.final if r.get("model")})
        datasets = sorted({format_value(r.get("dataset")) for r in self.final if r.get("dataset")})
        model = ", ".join(models) or format_value(self.plan.fixed.get("model", "logreg"))
        data = ", ".join(datasets) or format_value(self.plan.fixed.get("dataset", "mnist"))
        return f"{model} on {data}"

    def history(self, row: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The run's validation rows (``metrics.jsonl``), read once."""
        name = row["name"]
        if name not in self._histories:
            self._histories[name] = read_history(self.sweep_dir / RUNS_DIR / name) or []
        return self._histories[name]

    def run_file(self, row: Mapping[str, Any], filename: str) -> Path:
        return self.sweep_dir / RUNS_DIR / row["name"] / filename

    def subset(self, key: str, value: Any) -> ReportContext:
        """The runs (and tuning decisions) with ``key == value``; figures in a subfolder."""
        want = config_key({key: value}, [key])
        rows = [r for r in self.rows if config_key(r, [key]) == want]
        selection = [s for s in self.selection if config_key(s["group"], [key]) == want]
        folder = f"{key}-{format_value(value)}".replace("/", "-")
        sub = ReportContext(self.sweep_dir, self.plan, rows, selection, self.figures_dir / folder)
        sub._histories = self._histories
        return sub
