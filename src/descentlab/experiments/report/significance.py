"""Is the difference real?  McNemar's test between the two best configurations."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from descentlab.data import load_dataset
from descentlab.experiments.report.context import ReportContext, Section, Table, fmt_pct
from descentlab.experiments.report.tables import ConfigSummary
from descentlab.experiments.stats import RULE_OF_30, mcnemar
from descentlab.experiments.store import read_run_array


def _predictions(
    ctx: ReportContext, row: Mapping[str, Any]
) -> tuple[np.ndarray, np.ndarray] | None:
    pred_path = ctx.run_file(row, "test_predictions.npy")
    label_path = ctx.run_file(row, "test_labels.npy")
    pred = read_run_array(pred_path.parent, pred_path.name)
    if pred is None:
        return None  # absent or damaged: this run is left out of the pairing
    if label_path.is_file():
        labels = read_run_array(label_path.parent, label_path.name)
        if labels is None:
            return None
    else:  # a run written outside a sweep: load its test split (same options, same split)
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
    ctx: ReportContext, summaries: Sequence[ConfigSummary]
) -> dict[str, Any] | None:
    """McNemar's test between the two configurations with the lowest mean validation error.

    Runs are paired by seed (same seed → same data split, so the same test examples);
    without a common seed, the best run (by validation) of each is paired if their test
    labels are identical.  Returns ``{"a", "b", "pairs": [...], "pairing"}`` or None
    when fewer than two configurations finished.
    """
    ranked = sorted(
        (s for s in summaries if s.best_valid_error.mean is not None),
        key=lambda s: s.valid_rank,
    )
    if len(ranked) < 2:
        return None
    a, b = ranked[0], ranked[1]
    by_seed_a = {r["seed"]: r for r in a.ok}
    by_seed_b = {r["seed"]: r for r in b.ok}
    common = [s for s in by_seed_a if s in by_seed_b]
    if common:
        pairing = "seed-matched runs"
        candidates = [(by_seed_a[s], by_seed_b[s]) for s in common]
    else:
        pairing = "the best run (by validation error) of each"
        best_a = min(a.ok, key=lambda r: r["best_valid_error"])
        best_b = min(b.ok, key=lambda r: r["best_valid_error"])
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


def significance_section(ctx: ReportContext, summaries: Sequence[ConfigSummary]) -> Section:
    section = Section("Is the difference real?")
    result = compare_top_two(ctx, summaries)
    if result is None:
        section.text("Fewer than two configurations finished, so there is nothing to test.")
        return section
    a, b = result["a"], result["b"]
    tested = [p for p in result["pairs"] if "p_value" in p]
    section.text(
        f"The two configurations with the lowest mean validation error are **{a.label}** "
        f"({fmt_pct(a.best_valid_error.mean)}) and **{b.label}** "
        f"({fmt_pct(b.best_valid_error.mean)}). McNemar's test compares them on the "
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
                f"errors A ({a.label})",
                f"errors B ({b.label})",
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
                f" On this evidence {a.label} and {b.label} cannot be told apart on the test set."
            )
        elif n_sig == len(tested):
            verdict += f" {a.label} and {b.label} differ consistently across seeds."
        else:
            verdict += " The evidence is mixed across seeds."
        if 30 / n > 0.02:
            verdict += (
                f" (With {n} test examples, 30 examples is {100 * 30 / n:.1f}% of the test set: "
                "the rule of 30 is demanding on small data.)"
            )
        section.text(verdict)
    return section
