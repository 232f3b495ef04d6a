"""Choosing tuned options on the validation set — pure functions, no runs, no files.

With ``plan.tune = ("lr",)`` a sweep runs in two stages: stage 1 runs the whole grid
with the first seed only; for every configuration (the grid's other options) the
value with the lowest *validation* error is kept (:func:`select_best` never reads a
test number: choosing on the test set would bias the reported test error); stage 2
runs each kept configuration with all seeds (:func:`chosen_runs`).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from descentlab.errors import ConfigError
from descentlab.experiments.plan import (
    DEFAULT_SELECT_METRIC,
    LABEL_KEY,
    SweepPlan,
    config_key,
    format_value,
    train_options,
)
from descentlab.train.config import from_mapping

__all__ = ["chosen_runs", "describe_selection", "select_best", "selection_group_name"]


def select_best(
    rows: Iterable[Mapping[str, Any]],
    tune_keys: Sequence[str],
    group_keys: Sequence[str],
    *,
    metric: str = DEFAULT_SELECT_METRIC,
    tie_metric: str = "best_valid_nll",
) -> list[dict[str, Any]]:
    """For every configuration, the value of the tuned options with the lowest validation error.

    Rows are grouped by ``group_keys`` (the configuration: optimizer, batch size, ...);
    inside a group, by the values of ``tune_keys`` (the candidates, e.g. learning rates).
    A candidate's score is the mean of ``metric`` over its finished runs; ties are broken
    by ``tie_metric`` (validation NLL), then by the order the candidates first appear.
    Only ``metric`` and ``tie_metric`` are read — both validation numbers: choosing on
    the test set would make the reported test error optimistically biased.  Failed runs
    and non-finite scores are not candidates; a group whose every run failed gets
    ``chosen = None``.

    Returns one dict per group: ``group`` (the group's values), ``chosen`` (tuned
    option → value, or None), ``score``, ``at_edge`` (the chosen value is the smallest
    or largest tried for a numeric option — the optimum may lie outside the grid) and
    ``candidates`` (each with its values, ``score``, ``runs`` and ``failed`` counts).
    """
    tune_keys, group_keys = list(tune_keys), list(group_keys)
    overlap = set(tune_keys) & set(group_keys)
    if overlap:
        raise ConfigError(f"an option cannot be both tuned and grouped by: {sorted(overlap)}")
    groups, group_values = _candidates(rows, tune_keys, group_keys, metric, tie_metric)
    return [
        _decision(group_values[gkey], cands, tune_keys, metric) for gkey, cands in groups.items()
    ]


_Candidates = OrderedDict[tuple[Any, ...], dict[str, Any]]


def _candidates(
    rows: Iterable[Mapping[str, Any]],
    tune_keys: list[str],
    group_keys: list[str],
    metric: str,
    tie_metric: str,
) -> tuple[OrderedDict[tuple[Any, ...], _Candidates], dict[tuple[Any, ...], dict[str, Any]]]:
    """Rows sorted into groups and, inside each, candidates with their finite scores."""
    groups: OrderedDict[tuple[Any, ...], _Candidates] = OrderedDict()
    group_values: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        gkey = config_key(row, group_keys)
        group_values.setdefault(gkey, {k: row.get(k) for k in group_keys})
        cand = groups.setdefault(gkey, OrderedDict()).setdefault(
            config_key(row, tune_keys),
            {"values": {k: row.get(k) for k in tune_keys}, "scores": [], "ties": []},
        )
        cand["runs"] = cand.get("runs", 0) + 1
        cand.setdefault("failed", 0)
        score = _finite(row.get(metric)) if row.get("status", "ok") == "ok" else None
        if score is None:
            cand["failed"] += 1
            continue
        cand["scores"].append(score)
        tie = _finite(row.get(tie_metric))
        cand["ties"].append(math.inf if tie is None else tie)
    return groups, group_values


def _decision(
    group: dict[str, Any], cands: _Candidates, tune_keys: list[str], metric: str
) -> dict[str, Any]:
    """The best candidate of one group: mean score, then mean tie score, then order."""
    ranked = []
    for order, cand in enumerate(cands.values()):
        n = len(cand["scores"])
        cand["score"] = sum(cand["scores"]) / n if n else None
        cand["tie"] = sum(cand["ties"]) / n if n else None
        if n:
            ranked.append((cand["score"], cand["tie"], order, cand))
    ranked.sort(key=lambda t: t[:3])
    best = ranked[0][3] if ranked else None
    at_edge = False
    if best is not None:
        for key in tune_keys:
            tried = sorted(
                {c["values"][key] for c in cands.values() if _is_number(c["values"][key])}
            )
            if len(tried) > 2 and best["values"][key] in (tried[0], tried[-1]):
                at_edge = True
    return {
        "group": group,
        "chosen": dict(best["values"]) if best is not None else None,
        "score": best["score"] if best is not None else None,
        "metric": metric,
        "at_edge": at_edge,
        "candidates": [
            {k: c[k] for k in ("values", "score", "runs", "failed")} for c in cands.values()
        ],
    }


def _finite(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def selection_group_name(sel: Mapping[str, Any]) -> str:
    """``optimizer=adam, batch_size=20``; a labelled table's configurations by their label."""
    group = sel["group"]
    if group.get(LABEL_KEY) is not None:
        return str(group[LABEL_KEY])
    return ", ".join(f"{k}={format_value(v)}" for k, v in group.items() if v is not None) or "all"


def describe_selection(sel: Mapping[str, Any]) -> str:
    """``optimizer=adam: lr=0.001 (best valid error 2.31%)`` for one tuning decision."""
    group = selection_group_name(sel)
    if sel["chosen"] is None:
        return f"{group}: every candidate failed; nothing to run with more seeds"
    chosen = ", ".join(f"{k}={format_value(v)}" for k, v in sel["chosen"].items())
    edge = " (at the edge of the grid: the best value may lie outside it)" if sel["at_edge"] else ""
    metric = str(sel.get("metric", DEFAULT_SELECT_METRIC))
    score = f"{100 * sel['score']:.2f}%" if metric.endswith("error") else f"{sel['score']:.4g}"
    return f"{group}: {chosen} ({metric.replace('_', ' ')} {score}){edge}"


def _canonical(run: Mapping[str, Any]) -> dict[str, Any]:
    """A run's options as a finished run's row holds them (validated, defaults filled in)."""
    return {**from_mapping(train_options(run)).to_dict(), LABEL_KEY: run.get(LABEL_KEY)}


def chosen_runs(
    plan: SweepPlan, selection: Sequence[Mapping[str, Any]], group_keys: Sequence[str]
) -> list[dict[str, Any]]:
    """The runs of every configuration at its chosen values, with all the plan's seeds."""
    chosen = {
        config_key(sel["group"], group_keys): config_key(sel["chosen"], plan.tune)
        for sel in selection
        if sel["chosen"] is not None
    }
    runs = []
    for run in plan.runs():
        canon = _canonical(run)
        pick = chosen.get(config_key(canon, group_keys))
        if pick is not None and config_key(canon, plan.tune) == pick:
            runs.append(run)
    return runs
