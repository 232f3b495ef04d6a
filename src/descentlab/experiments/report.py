"""The report of a sweep: a table over seeds, significance tests, figures, HTML + Markdown.

What it says, and why:

* **Table** — per configuration, mean ± sample std over seeds of the best validation
  error, the test error at that point, and the epochs and wall-clock seconds it took
  to get there; the best value of each column is marked ★.
* **Wilson 95% intervals** on every error rate (per configuration from the error
  counts pooled over its seeds, and per run in the appendix): an error rate measured
  on n examples is itself uncertain, whatever the seeds say.
* **McNemar's test** between the two configurations with the lowest mean validation
  error, on their *test-set predictions*: seed-matched runs are paired (same seed, same
  split, same examples), and the discordant counts b and c decide; the course notes'
  "rule of 30" asks whether the change affects at least 30 examples net (|b − c|).
* **Figures** — validation error against epochs and wall-clock seconds, training NLL
  against iterations (log scale), one curve per configuration (mean over seeds, band
  min–max), and learning-rate sensitivity (best validation error vs lr, log x).

The test set is reported, never used to choose: configurations are ranked, and the
top two picked for the test, by *validation* error.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from descentlab.errors import CheckpointError
from descentlab.experiments.grid import LABEL_KEY, SweepPlan, config_key, format_value
from descentlab.experiments.stats import RULE_OF_30, mcnemar, mean_std, wilson_interval
from descentlab.experiments.sweep import (
    RUNS_DIR,
    collect_results,
    describe_selection,
    selection_group_name,
)

__all__ = [
    "ReportContext",
    "Section",
    "Table",
    "build_report",
    "compare_top_two",
    "configuration_summaries",
    "fmt_pct",
]

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
    return "–" if x is None or not math.isfinite(x) else f"{100 * x:.{digits}f}%"


def _fmt_num(x: float | None, digits: int = 1) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _pm(mean: float | None, std: float | None, pct: bool = True, digits: int = 2) -> str:
    """``12.34 ± 0.56%`` for rates; for counts and seconds three significant digits."""
    if mean is None:
        return "–"
    if pct:
        return f"{100 * mean:.{digits}f} ± {100 * (std or 0):.{digits}f}%"
    return f"{_sig(mean)} ± {_sig(std or 0.0)}"


def _sig(x: float) -> str:
    """Three significant digits, without exponents for everyday magnitudes."""
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    digits = max(0, 2 - math.floor(math.log10(abs(x))))
    return f"{x:.{digits}f}"


def _ci(errors: int | None, n: int | None) -> tuple[float, float] | None:
    if errors is None or not n:
        return None
    return wilson_interval(int(errors), int(n))


def _fmt_ci(ci: tuple[float, float] | None) -> str:
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

    def label(self, row: Mapping[str, Any]) -> str:
        """The configuration's name: ``adam``, ``adam, batch_size=20``, ``L2``..."""
        parts = []
        for key in self.varying_keys:
            value = row.get(key)
            if key in _BARE_KEYS:  # values that name themselves: "adam", "mse", "mnist"
                parts.append(format_value(value))
            else:
                parts.append(f"{key}={format_value(value)}")
        return ", ".join(parts) if parts else "all runs"

    def history(self, row: Mapping[str, Any]) -> list[dict[str, Any]]:
        name = row["name"]
        if name not in self._histories:
            path = self.sweep_dir / RUNS_DIR / name / "metrics.jsonl"
            rows = []
            if path.is_file():
                for line in path.read_text(encoding="utf-8").splitlines():
                    if line.strip():
                        rows.append(json.loads(line))
            self._histories[name] = rows
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


# ====================================================================== the big table
def configuration_summaries(ctx: ReportContext) -> list[dict[str, Any]]:
    """One dict per configuration of the final runs, in the order they were planned.

    Holds ``label``, ``rows`` (all its runs), ``ok`` (finished runs), the tuned values,
    ``mean``/``std`` of ``best_valid_error``, ``test_error``, ``best_epoch``,
    ``seconds_to_best`` and ``train_seconds``, and the error counts pooled over seeds
    (``valid_errors``/``valid_n``, ``test_errors``/``test_n``).
    """
    groups: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
    for row in ctx.final:
        groups.setdefault(ctx.label(row), []).append(row)
    out = []
    for label, members in groups.items():
        ok = [r for r in members if r["status"] == "ok"]
        summary: dict[str, Any] = {"label": label, "rows": members, "ok": ok}
        summary["tuned"] = {k: members[0].get(k) for k in ctx.plan.tune}
        for key in (
            "best_valid_error",
            "test_error",
            "best_epoch",
            "seconds_to_best",
            "train_seconds",
            "wall_seconds",
            "model_train_error",
        ):
            vals = [float(r[key]) for r in ok if r.get(key) is not None]
            mean, std = mean_std(vals) if vals else (None, None)
            summary[key] = {"mean": mean, "std": std, "n": len(vals)}
        for split in ("valid", "test"):
            counted = [r for r in ok if r.get(f"{split}_errors") is not None]
            summary[f"{split}_errors"] = sum(int(r[f"{split}_errors"]) for r in counted)
            summary[f"{split}_n"] = sum(int(r[f"n_{split}"]) for r in counted)
        out.append(summary)
    return out


def _winners(summaries: Sequence[Mapping[str, Any]], key: str) -> set[str]:
    means = [(s[key]["mean"], s["label"]) for s in summaries if s[key]["mean"] is not None]
    if not means:
        return set()
    best = min(m for m, _ in means)
    return {label for m, label in means if m == best}


def configuration_table(ctx: ReportContext, summaries: Sequence[Mapping[str, Any]]) -> Table:
    tuned = list(ctx.plan.tune)
    columns = [
        "configuration",
        *[f"chosen {k}" for k in tuned],
        "seeds ok",
        "best valid error",
        "valid 95% CI",
        "test error at best valid",
        "test 95% CI",
        "epochs to best",
        "seconds to best",
        "total seconds",
    ]
    marked = {
        key: _winners(summaries, key)
        for key in ("best_valid_error", "test_error", "best_epoch", "seconds_to_best")
    }

    def cell(s: Mapping[str, Any], key: str, pct: bool, digits: int) -> str:
        text = _pm(s[key]["mean"], s[key]["std"], pct=pct, digits=digits)
        return f"{text} {STAR}" if s["label"] in marked.get(key, ()) else text

    rows = []
    for s in summaries:
        rows.append(
            [
                s["label"],
                *[format_value(s["tuned"][k]) for k in tuned],
                f"{len(s['ok'])}/{len(s['rows'])}",
                cell(s, "best_valid_error", True, 2),
                _fmt_ci(_ci(s["valid_errors"], s["valid_n"])),
                cell(s, "test_error", True, 2),
                _fmt_ci(_ci(s["test_errors"], s["test_n"])),
                cell(s, "best_epoch", False, 1),
                cell(s, "seconds_to_best", False, 1),
                _pm(s["train_seconds"]["mean"], s["train_seconds"]["std"], pct=False, digits=1),
            ]
        )
    return Table(
        columns,
        rows,
        caption=f"mean ± std over seeds; {STAR} = best of the column; 95% CI = Wilson "
        "interval of the error count pooled over the seeds (test-set sampling only: the "
        "spread between seeds is the ± column)",
    )


def runs_table(ctx: ReportContext) -> Table:
    """Every run with its own Wilson intervals (the appendix)."""
    rows = []
    for r in ctx.rows:
        rows.append(
            [
                r["name"],
                "+".join(r["stages"]),
                str(r.get("seed")),
                r["status"] + (f": {r['error']}" if r.get("error") else ""),
                fmt_pct(r.get("best_valid_error")),
                _fmt_ci(_ci(r.get("valid_errors"), r.get("n_valid"))),
                fmt_pct(r.get("test_error")),
                _fmt_ci(_ci(r.get("test_errors"), r.get("n_test"))),
                str(r.get("best_epoch") if r.get("best_epoch") is not None else "–"),
                _fmt_num(r.get("wall_seconds")),
            ]
        )
    return Table(
        [
            "run",
            "stage",
            "seed",
            "status",
            "best valid error",
            "valid 95% CI",
            "test error at best",
            "test 95% CI",
            "best epoch",
            "wall s",
        ],
        rows,
    )


# ======================================================================= significance
def _predictions(
    ctx: ReportContext, row: Mapping[str, Any]
) -> tuple[np.ndarray, np.ndarray] | None:
    pred_path = ctx.run_file(row, "test_predictions.npy")
    label_path = ctx.run_file(row, "test_labels.npy")
    if not pred_path.is_file():
        return None
    pred = np.load(pred_path)
    if label_path.is_file():
        labels = np.load(label_path)
    else:  # a run written outside a sweep: load its test split (same options, same split)
        from descentlab.data import load_dataset

        data = load_dataset(
            row["dataset"],
            data_dir=row.get("data_dir"),
            standardize=row.get("standardize"),
            label_column=row.get("label_column", "label"),
            seed=row["seed"],
            subset=row.get("subset"),
        )
        labels = data.test.y.cpu().numpy()
    if labels.shape != pred.shape:
        return None
    return pred, labels


def compare_top_two(
    ctx: ReportContext, summaries: Sequence[Mapping[str, Any]]
) -> dict[str, Any] | None:
    """McNemar's test between the two configurations with the lowest mean validation error.

    Runs are paired by seed (same seed → same data split, so the same test examples);
    without a common seed, the best run (by validation) of each is paired if their test
    labels are identical.  Returns ``{"a", "b", "pairs": [...], "pairing"}`` or None
    when fewer than two configurations finished.
    """
    ranked = sorted(
        (s for s in summaries if s["best_valid_error"]["mean"] is not None),
        key=lambda s: s["best_valid_error"]["mean"],
    )
    if len(ranked) < 2:
        return None
    a, b = ranked[0], ranked[1]
    by_seed_a = {r["seed"]: r for r in a["ok"]}
    by_seed_b = {r["seed"]: r for r in b["ok"]}
    common = [s for s in by_seed_a if s in by_seed_b]
    if common:
        pairing = "seed-matched runs"
        candidates = [(by_seed_a[s], by_seed_b[s]) for s in common]
    else:
        pairing = "the best run (by validation error) of each"
        best_a = min(a["ok"], key=lambda r: r["best_valid_error"])
        best_b = min(b["ok"], key=lambda r: r["best_valid_error"])
        candidates = [(best_a, best_b)]
    pairs = []
    for ra, rb in candidates:
        pa, pb = _predictions(ctx, ra), _predictions(ctx, rb)
        entry: dict[str, Any] = {"seed_a": ra.get("seed"), "seed_b": rb.get("seed")}
        if pa is None or pb is None:
            entry["skipped"] = "no test predictions saved"
        elif not np.array_equal(pa[1], pb[1]):
            entry["skipped"] = "the runs were tested on different examples"
        else:
            entry.update(mcnemar(pa[0], pb[0], labels=pa[1]))
        pairs.append(entry)
    return {"a": a, "b": b, "pairs": pairs, "pairing": pairing}


def significance_section(ctx: ReportContext, summaries: Sequence[Mapping[str, Any]]) -> Section:
    section = Section("Is the difference real?")
    result = compare_top_two(ctx, summaries)
    if result is None:
        section.text("Fewer than two configurations finished, so there is nothing to test.")
        return section
    a, b = result["a"], result["b"]
    tested = [p for p in result["pairs"] if "p_value" in p]
    section.text(
        f"The two configurations with the lowest mean validation error are **{a['label']}** "
        f"({fmt_pct(a['best_valid_error']['mean'])}) and **{b['label']}** "
        f"({fmt_pct(b['best_valid_error']['mean'])}). McNemar's test compares them on the "
        f"test set using {result['pairing']}: only the examples where exactly one of the "
        "two is right count (b = A right and B wrong, c = the reverse); under 'equally "
        "accurate' each such example is a fair coin. The exact binomial p-value is used "
        f"for fewer than 25 discordant examples, else the continuity-corrected χ². The "
        f"rule of 30 asks whether the change affects at least {RULE_OF_30} examples net "
        "(|b − c| ≥ 30)."
    )
    rows = []
    for p in result["pairs"]:
        seed = p["seed_a"] if p["seed_a"] == p["seed_b"] else f"{p['seed_a']} / {p['seed_b']}"
        if "skipped" in p:
            rows.append([str(seed), *["–"] * 7, p["skipped"]])
            continue
        rows.append(
            [
                str(seed),
                f"{p['errors_a']}/{p['n']}",
                f"{p['errors_b']}/{p['n']}",
                str(p["b"]),
                str(p["c"]),
                str(abs(p["b"] - p["c"])),
                f"{p['p_value']:.3g} ({p['test']})",
                "yes" if p["significant"] else "no",
                "yes" if p["rule_of_30"] else "no",
            ]
        )
    section.table(
        Table(
            [
                "seed",
                f"errors A ({a['label']})",
                f"errors B ({b['label']})",
                "b (A right, B wrong)",
                "c (A wrong, B right)",
                "|b − c|",
                "p-value",
                "p < 0.05",
                "|b − c| ≥ 30",
            ],
            rows,
        )
    )
    if tested:
        n_sig = sum(p["significant"] for p in tested)
        n_30 = sum(p["rule_of_30"] for p in tested)
        n = tested[0]["n"]
        verdict = (
            f"Of {len(tested)} paired comparison(s), {n_sig} found a significant difference "
            f"(p < 0.05) and {n_30} reached the rule-of-30 threshold."
        )
        if n_sig == 0:
            verdict += (
                f" On this evidence {a['label']} and {b['label']} cannot be told apart on the "
                "test set."
            )
        elif n_sig == len(tested):
            verdict += f" {a['label']} and {b['label']} differ consistently across seeds."
        else:
            verdict += " The evidence is mixed across seeds."
        if 30 / n > 0.02:
            verdict += (
                f" (With {n} test examples, 30 examples is {100 * 30 / n:.1f}% of the test set: "
                "the rule of 30 is demanding on small data.)"
            )
        section.text(verdict)
    return section


# =========================================================================== figures
def _curve_rows(ctx: ReportContext, summaries: Sequence[Mapping[str, Any]]) -> tuple[list, str]:
    """The finished final runs to draw, at most MAX_CURVES configurations."""
    keep = [s for s in summaries if s["ok"]]
    note = ""
    if len(keep) > MAX_CURVES:
        primary = ctx.varying_keys[0] if ctx.varying_keys else None
        best: OrderedDict[Any, Mapping[str, Any]] = OrderedDict()
        for s in keep:
            key = config_key(s["ok"][0], [primary]) if primary else ()
            if s["best_valid_error"]["mean"] is None:
                continue
            if (
                key not in best
                or s["best_valid_error"]["mean"] < best[key]["best_valid_error"]["mean"]
            ):
                best[key] = s
        keep = list(best.values())[:MAX_CURVES]
        note = (
            f"With {len(summaries)} configurations, the curves show the best one (by mean "
            f"validation error) per {primary}."
        )
    series = []
    for s in keep:
        for r in s["ok"]:
            series.append({"group": s["label"], "history": ctx.history(r)})
    return series, note


def figures_section(ctx: ReportContext, summaries: Sequence[Mapping[str, Any]]) -> Section:
    from descentlab.plots import plot_curves, plot_lr_sensitivity

    section = Section("Learning curves")
    series, note = _curve_rows(ctx, summaries)
    if note:
        section.text(note)
    if not series:
        section.text("No run finished, so there is nothing to plot.")
        return section
    section.text(
        "One curve per configuration: the mean over its seeds, shaded from the lowest to the "
        "highest seed. Validation error is measured at every validation point; wall-clock "
        "seconds include validation. Training NLL is the mean minibatch cost since the "
        "previous validation."
    )
    figs = ctx.figures_dir
    specs: list[tuple[str, str, str, dict[str, Any], str]] = [
        ("valid_error_vs_epoch", "epoch", "valid_error", {}, "validation error vs epoch"),
        (
            "valid_error_vs_seconds",
            "seconds",
            "valid_error",
            {"xlabel": "wall-clock seconds"},
            "validation error vs wall-clock time",
        ),
        (
            "train_nll_vs_iteration",
            "iteration",
            "train_nll",
            {"logy": True, "ylabel": "training NLL (log scale)"},
            "training NLL vs iterations",
        ),
    ]
    for stem, x, y, kwargs, title in specs:
        paths = plot_curves(series, x, y, "group", figs / stem, title=title, **kwargs)
        section.figure(paths[0])
    lr_rows = [r for r in ctx.rows if r.get("lr") is not None]
    if len({r["lr"] for r in lr_rows}) > 1:
        points = [
            {
                "lr": r["lr"],
                "best_valid_error": r.get("best_valid_error") if r["status"] == "ok" else None,
                "group": ctx.label(r),
            }
            for r in lr_rows
        ]
        paths = plot_lr_sensitivity(
            points,
            figs / "lr_sensitivity",
            metric_key="best_valid_error",
            group_key="group",
            title="learning-rate sensitivity (every run, incl. the lr search)",
            ylabel="best validation error",
        )
        section.figure(paths[0])
    return section


# ============================================================================ report
def protocol_paragraphs(ctx: ReportContext) -> list[str]:
    plan = ctx.plan
    fixed = ", ".join(f"{k}={format_value(v)}" for k, v in plan.fixed.items())
    grid = "; ".join(
        ", ".join(f"{k} ∈ {{{', '.join(format_value(v) for v in vals)}}}" for k, vals in t.items())
        for t in plan.grid
    )
    n_ok = sum(r["status"] == "ok" for r in ctx.rows)
    out = [
        f"{len(ctx.rows)} runs ({n_ok} finished). Grid: {grid or '(none)'}. "
        f"Seeds: {', '.join(map(str, plan.seeds))}. Fixed options: {fixed or '(defaults)'}."
    ]
    if plan.tune:
        tuned = ", ".join(plan.tune)
        out.append(
            f"**How {tuned} was chosen.** Stage 1 ran every grid point with one seed "
            f"({plan.seeds[0]}); for each configuration the {tuned} with the lowest "
            "**validation** error was kept — the test set played no part in the choice. "
            f"Stage 2 re-ran the chosen {tuned} with all {len(plan.seeds)} seeds; the table "
            "reports those runs. Their validation errors helped choose, so they are "
            "slightly optimistic; the test errors are not."
        )
    else:
        out.append(
            "Every grid point ran with every seed. Configurations are ranked by validation "
            "error; the test error is reported, not used to choose."
        )
    return out


def selection_section(ctx: ReportContext, title: str) -> Section | None:
    """Stage 1 of the tuning protocol: every candidate's validation score, the choice marked."""
    if not ctx.selection:
        return None
    sel = Section(title)
    sel.text(*[describe_selection(s) for s in ctx.selection])
    metric = ctx.plan.select_metric
    rows = []
    for s in ctx.selection:
        group = selection_group_name(s)
        for c in s["candidates"]:
            chosen = s["chosen"] is not None and c["values"] == s["chosen"]
            values = ", ".join(f"{k}={format_value(v)}" for k, v in c["values"].items())
            score = fmt_pct(c["score"]) if metric.endswith("error") else _fmt_num(c["score"], 4)
            rows.append(
                [
                    group,
                    values,
                    score,
                    f"{c['failed']} of {c['runs']}" if c["failed"] else "0",
                    STAR if chosen else "",
                ]
            )
    columns = ["configuration", "candidate", metric.replace("_", " "), "failed", "chosen"]
    return sel.table(Table(columns, rows))


def comparison_sections(ctx: ReportContext, suffix: str = "") -> list[Section]:
    """Table, tuning decisions, significance and figures for one set of configurations."""
    summaries = configuration_summaries(ctx)
    sections = [Section(f"Configurations{suffix}").table(configuration_table(ctx, summaries))]
    tuning = selection_section(ctx, f"Tuning on the validation set (stage 1){suffix}")
    if tuning is not None:
        sections.append(tuning)
    significance = significance_section(ctx, summaries)
    significance.title += suffix
    figures = figures_section(ctx, summaries)
    figures.title += suffix
    return [*sections, significance, figures]


def build_sections(ctx: ReportContext, split_by: str | None = None) -> list[Section]:
    """The standard sections of a sweep report.

    ``split_by`` (e.g. ``"dataset"``) repeats the comparison for each of its values:
    comparing an MLP's best optimizer with a logistic regression's is not a comparison.
    """
    sections = [Section("How this sweep was run").text(*protocol_paragraphs(ctx))]
    values = []
    if split_by:
        for row in ctx.final:
            key = config_key(row, [split_by])
            if key not in values:
                values.append(key)
    if len(values) > 1:
        for (value,) in values:
            sub = ctx.subset(split_by, value)  # type: ignore[arg-type]
            sections += comparison_sections(sub, f" — {split_by} {format_value(value)}")
    else:
        sections += comparison_sections(ctx)
    failed = [r for r in ctx.rows if r["status"] != "ok"]
    if failed:
        sections.append(
            Section("Runs that did not finish").text(
                *[f"`{r['name']}`: {r['status']} — {r.get('error') or ''}" for r in failed]
            )
        )
    sections.append(Section("Every run").table(runs_table(ctx)))
    return sections


def build_report(
    sweep_dir: str | Path,
    *,
    title: str | None = None,
    extra: Callable[[ReportContext], list[Section]] | None = None,
) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` (and ``figures/``) into ``sweep_dir``.

    A sweep made by a built-in study gets the study's own sections (right after the
    protocol) and its per-dataset/per-model split; ``extra`` may add more sections.
    Returns ``(html_path, md_path)``.
    """
    sweep_dir = Path(sweep_dir)
    plan, rows, selection = collect_results(sweep_dir)
    if not rows:
        raise CheckpointError(f"{sweep_dir} holds no runs yet", hint="run the sweep first")
    ctx = ReportContext(sweep_dir, plan, rows, selection, sweep_dir / "figures")
    study = None
    if plan.study:
        from descentlab.experiments.studies import get_study

        study = get_study(plan.study)
    sections = build_sections(ctx, split_by=study.split_by if study else None)
    if study is not None:
        sections[1:1] = study.sections(ctx)
    if extra is not None:
        sections += extra(ctx)
    dataset = plan.fixed.get("dataset", "mnist")
    model = plan.fixed.get("model", "logreg")
    title = title or plan.title or f"Sweep: {model} on {dataset}"
    return render(title, sections, sweep_dir)


def render(title: str, sections: Sequence[Section], out_dir: Path) -> tuple[Path, Path]:
    """Write the report through :func:`descentlab.experiments.render.render_report`."""
    from descentlab.experiments.render import render_report

    return render_report(title, [_as_render_section(s) for s in sections], out_dir)


def _as_render_section(section: Section) -> dict[str, Any]:
    blocks = []
    for kind, value in section.blocks:
        if kind == "table":
            value = {"columns": value.columns, "rows": value.rows, "caption": value.caption}
        elif kind == "figure":
            value = str(value)
        blocks.append({"kind": kind, "value": value})
    return {"title": section.title, "blocks": blocks}
