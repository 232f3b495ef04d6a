"""Built-in studies: preset sweeps that answer one question each, with a tailored report.

==================  ==========================================================================
``optimizers``      the eight chapter-8 optimizers on MNIST (MLP and logistic regression),
                    learning rate tuned per optimizer on the validation set, 3+ seeds
``batch-size``      on-line (B = 1) vs minibatch vs full-batch training (Wilson & Martinez
                    2003) on six real datasets, lr tuned per B; compared at equal epochs,
                    examples seen and wall-clock seconds
``losses``          cross-entropy vs mean squared error on the same model (and the seeds'
                    worked example: same classification error, different losses)
``schedules``       constant vs linear decay vs exponential vs 1/t learning rates for SGD
``regularization``  none vs L1 vs L2 vs dropout vs early stopping: errors and train–valid gap
``surrogate``       validation NLL vs zero-one error vs macro-F1 through training: where the
                    surrogate keeps improving and the true metric does not
==================  ==========================================================================

Each study has a *fast* setting (minutes on two cores: subsets, small models, few
epochs, a short lr grid around each method's known-good value) and a *full* setting
(whole datasets, longer training, wider grids, more seeds — hours).  Every
conclusion a report states is computed from the runs, never written in advance.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from descentlab.errors import ConfigError, did_you_mean
from descentlab.experiments.grid import SweepPlan, format_value
from descentlab.experiments.report import ReportContext, Section, Table, fmt_pct
from descentlab.experiments.sweep import selection_group_name

__all__ = [
    "KNOWN_GOOD_LR",
    "STUDIES",
    "Study",
    "StudySettings",
    "epoch_ranges",
    "get_study",
    "lr_grid",
    "run_study",
    "surrogate_disagreements",
]


@dataclass
class StudySettings:
    """How to run a study: fast or full, and a few overrides."""

    fast: bool = True
    seeds: int | None = None
    data_dir: str | None = None
    datasets: Sequence[str] | None = None


@dataclass(frozen=True)
class Study:
    """A preset sweep (``plan``) plus the report sections that answer its question."""

    name: str
    summary: str
    plan: Callable[[StudySettings], SweepPlan]
    sections: Callable[[ReportContext], list[Section]]
    split_by: str | None = None


# =========================================================================== helpers
#: Learning rates known to work for an MLP on MNIST with minibatches of ~64 (each
#: optimizer's usual default or the value the literature starts from); the lr grids
#: are centred on them.
KNOWN_GOOD_LR: dict[str, float] = {
    "sgd": 0.1,
    "momentum": 0.01,
    "nesterov": 0.01,
    "adagrad": 0.03,
    "rmsprop": 1e-3,
    "rmsprop-nesterov": 3e-4,
    "adam": 1e-3,
    "adadelta": 1.0,
}


def lr_grid(center: float, below: int, above: int | None = None) -> list[float]:
    """``below`` points under ``center`` and ``above`` over it on the 1–3–10 log grid.

    The grid ..., 0.01, 0.03, 0.1, 0.3, 1, ... has (almost) half-decade steps and round
    values; ``center`` snaps to its nearest point.  ``lr_grid(0.03, 1) == [0.01, 0.03, 0.1]``.
    """
    above = below if above is None else above
    if not center > 0 or below < 0 or above < 0:
        raise ConfigError(f"need center > 0 and steps >= 0, got {center}, {below}, {above}")

    def point(k: int) -> float:
        return float(f"{(1, 3)[k % 2] * 10.0 ** (k // 2):.1g}")

    # log10(3) ≈ 0.477: point k sits at ≈ k/2 decades, so k ≈ 2·log10(center).
    k0 = min(
        range(math.floor(2 * math.log10(center)) - 1, math.ceil(2 * math.log10(center)) + 2),
        key=lambda k: abs(math.log10(point(k) / center)),
    )
    return [point(k) for k in range(k0 - below, k0 + above + 1)]


def _seeds(settings: StudySettings, fast: int, full: int) -> int:
    n = settings.seeds if settings.seeds is not None else (fast if settings.fast else full)
    if n < 1:
        raise ConfigError(f"a study needs at least one seed, got {n}")
    return n


def _fixed(settings: StudySettings, **options: Any) -> dict[str, Any]:
    if settings.data_dir:
        options["data_dir"] = settings.data_dir
    return options


def _mean(values: Sequence[float]) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return sum(vals) / len(vals) if vals else None


def best_so_far(history: Sequence[Mapping[str, Any]], x_key: str, budget: float) -> float | None:
    """The lowest validation error among the validations with ``x_key <= budget``."""
    vals = [r["valid_error"] for r in history if r.get(x_key) is not None and r[x_key] <= budget]
    return min(vals) if vals else None


def _mean_curve(histories: Sequence[Sequence[Mapping[str, Any]]], key: str) -> dict[int, float]:
    """Epoch → mean of ``key`` over the runs that validated at that epoch."""
    by_epoch: OrderedDict[int, list[float]] = OrderedDict()
    for hist in histories:
        for row in hist:
            if row.get(key) is not None:
                by_epoch.setdefault(int(row["epoch"]), []).append(float(row[key]))
    return {e: sum(v) / len(v) for e, v in sorted(by_epoch.items())}


def epoch_ranges(epochs: Sequence[int]) -> str:
    """``[3, 4, 5, 9]`` → ``"3–5, 9"``."""
    epochs = sorted(set(epochs))
    parts: list[str] = []
    start: int | None = None
    prev = 0
    for e in epochs:
        if start is None:
            start = prev = e
        elif e == prev + 1:
            prev = e
        else:
            parts.append(f"{start}–{prev}" if prev != start else str(start))
            start = prev = e
    if start is not None:
        parts.append(f"{start}–{prev}" if prev != start else str(start))
    return ", ".join(parts)


def _groups(rows: Sequence[Mapping[str, Any]], key: str) -> OrderedDict[Any, list]:
    out: OrderedDict[Any, list] = OrderedDict()
    for r in rows:
        value = r.get(key)
        out.setdefault(tuple(value) if isinstance(value, list) else value, []).append(r)
    return out


# ======================================================================== optimizers
def _optimizers_plan(settings: StudySettings) -> SweepPlan:
    fast = settings.fast
    grid = [
        # fast: few epochs favour larger steps, so the short grid reaches two points up
        {
            "model": ["mlp", "logreg"],
            "optimizer": [name],
            "lr": lr_grid(lr, *((1, 2) if fast else (3, 3))),
        }
        for name, lr in KNOWN_GOOD_LR.items()
    ]
    if fast:
        fixed = _fixed(
            settings,
            dataset="mnist",
            subset=10000,
            hidden=[100],
            activation="tanh",
            batch_size=64,
            shuffle=True,
            max_epochs=10,
            early_stopping="none",
        )
    else:
        fixed = _fixed(
            settings,
            dataset="mnist",
            hidden=[500],
            activation="tanh",
            batch_size=20,
            shuffle=True,
            max_epochs=100,
            early_stopping="epochs",
            patience=10,
        )
    return SweepPlan.build(
        grid,
        fixed,
        seeds=_seeds(settings, 3, 5),
        tune=["lr"],
        title="Study: the chapter-8 optimizers on MNIST" + (" (fast)" if fast else ""),
        study="optimizers",
    )


def _optimizers_sections(ctx: ReportContext) -> list[Section]:
    from descentlab.experiments.report import configuration_summaries

    sec = Section("What the optimizers study found")
    sec.text(
        "Each optimizer got its own learning rate, chosen on the validation error of one "
        "seed from a log grid (1–3–10 steps) around its usual value; the chosen "
        "rate was then run with every seed. Rankings below are by mean validation error."
    )
    for model in _groups(ctx.final, "model"):
        sub = ctx.subset("model", model)
        summaries = [s for s in configuration_summaries(sub) if s["ok"]]
        ranked = sorted(summaries, key=lambda s: s["best_valid_error"]["mean"])
        if not ranked:
            sec.text(f"**{model}**: no run finished.")
            continue
        table_rows = []
        for i, s in enumerate(ranked, 1):
            table_rows.append(
                [
                    str(i),
                    s["label"],
                    format_value(s["tuned"].get("lr")),
                    fmt_pct(s["best_valid_error"]["mean"]),
                    fmt_pct(s["test_error"]["mean"]),
                    f"{s['best_epoch']['mean']:.1f}" if s["best_epoch"]["mean"] else "–",
                ]
            )
        sec.table(
            Table(
                ["rank", "optimizer", "lr", "valid error", "test error", "epochs to best"],
                table_rows,
                caption=f"{model}: mean over seeds, ranked by validation error",
            )
        )
        best, worst = ranked[0], ranked[-1]
        sec.text(
            f"**{model}**: best on validation **{best['label']}** (lr "
            f"{format_value(best['tuned'].get('lr'))}: valid "
            f"{fmt_pct(best['best_valid_error']['mean'])}, test "
            f"{fmt_pct(best['test_error']['mean'])}); last **{worst['label']}** (valid "
            f"{fmt_pct(worst['best_valid_error']['mean'])})."
        )
    edges = [s for s in ctx.selection if s.get("at_edge")]
    if edges:
        sec.text(
            "The chosen learning rate is at the edge of its grid for: "
            + "; ".join(
                selection_group_name(s) + f" (lr {format_value(s['chosen']['lr'])})" for s in edges
            )
            + ". Their optimum may lie outside the grid; the full setting uses a wider one."
        )
    return [sec]


# ======================================================================== batch size
BATCH_SIZES: tuple[int | str, ...] = (1, 4, 16, 64, 256, "full")

#: Centre of the lr grid per batch size (larger minibatches average out more noise
#: and tolerate larger steps; full batch makes one step per epoch).
_BATCH_LR = {1: 0.01, 4: 0.03, 16: 0.1, 64: 0.3, 256: 1.0, "full": 1.0}

_BATCH_DATASETS_FAST: dict[str, int | None] = {
    "digits": None,
    "iris": None,
    "wine": None,
    "breast-cancer": None,
    "mnist": 1000,
    "fashion-mnist": 1000,
}
_BATCH_DATASETS_FULL: dict[str, int | None] = {**_BATCH_DATASETS_FAST, "mnist": 10000}
_BATCH_DATASETS_FULL["fashion-mnist"] = 10000


def _n_train(dataset: str, subset: int | None, data_dir: str | None) -> int:
    from descentlab.data import load_dataset

    data = load_dataset(dataset, data_dir=data_dir, subset=subset)
    return int(data.train.y.shape[0])


def _batch_plan(settings: StudySettings) -> SweepPlan:
    fast = settings.fast
    table = _BATCH_DATASETS_FAST if fast else _BATCH_DATASETS_FULL
    names = list(settings.datasets) if settings.datasets else list(table)
    unknown = [n for n in names if n not in table]
    if unknown:
        raise ConfigError(
            f"the batch-size study has no dataset {unknown[0]!r}",
            hint=did_you_mean(unknown[0], list(table)),
        )
    grid = []
    for name in names:
        subset = table[name]
        n_train = _n_train(name, subset, settings.data_dir)
        for b in BATCH_SIZES:
            size = n_train if b == "full" else int(b)
            if size > n_train or (b != "full" and size == n_train):
                continue  # larger than the data (or the same as full batch)
            grid.append(
                {
                    "dataset": [name],
                    "subset": [subset],
                    "batch_size": [size],
                    "lr": lr_grid(_BATCH_LR[b], *((1, 2) if fast else (2, 2))),
                }
            )
    fixed = _fixed(
        settings,
        model="mlp",
        hidden=[32] if fast else [100],
        activation="tanh",
        optimizer="sgd",
        shuffle=True,
        max_epochs=20 if fast else 100,
        early_stopping="none",
    )
    return SweepPlan.build(
        grid,
        fixed,
        seeds=_seeds(settings, 3, 5),
        tune=["lr"],
        title="Study: on-line vs minibatch vs full-batch training" + (" (fast)" if fast else ""),
        study="batch-size",
    )


def _batch_label(size: int, n_train: int) -> str:
    return f"full ({n_train})" if size == n_train else str(size)


def batch_size_analysis(ctx: ReportContext) -> list[dict[str, Any]]:
    """Per dataset and batch size: accuracy at equal budgets and epochs/seconds to a target.

    Budgets (each the largest that every batch size reached, so all are measured):
    the first epoch, the last common epoch, the examples seen (gradient evaluations of
    single examples) and the wall-clock seconds.  Accuracy at a budget = 1 − the lowest
    validation error reached within it (what early stopping would keep), averaged over
    seeds.  The *target* is the worst of the batch sizes' best mean validation errors,
    so every batch size reaches it; "epochs to target" is the first epoch at which the
    seed-mean of the best-so-far validation error is at or below it.
    """
    out = []
    for dataset, rows in _groups(ctx.ok_final, "dataset").items():
        by_b = _groups(rows, "batch_size")
        n_train = int(rows[0]["n_train"])
        info: dict[int, dict[str, Any]] = {}
        for b, runs in sorted(by_b.items()):
            hists = [ctx.history(r) for r in runs]
            best_curve: dict[int, list[float]] = {}
            for hist in hists:
                running = math.inf
                for row in hist:
                    running = min(running, row["valid_error"])
                    best_curve.setdefault(int(row["epoch"]), []).append(running)
            mean_best = {e: sum(v) / len(v) for e, v in sorted(best_curve.items())}
            secs = _mean_curve(hists, "seconds")
            info[b] = {
                "runs": runs,
                "hists": hists,
                "lr": runs[0].get("lr"),
                "mean_best": mean_best,
                "seconds": secs,
                "max_epoch": min(max(int(r["epoch"]) for r in h) for h in hists if h),
                "max_examples": min(max(r["examples_seen"] for r in h) for h in hists if h),
                "max_seconds": min(max(r["seconds"] for r in h) for h in hists if h),
            }
        if len(info) < 2:
            continue
        e_last = min(i["max_epoch"] for i in info.values())
        x_budget = min(i["max_examples"] for i in info.values())
        t_budget = min(i["max_seconds"] for i in info.values())
        target = max(min(i["mean_best"].values()) for i in info.values())
        table = []
        for b, i in info.items():

            def acc(x_key: str, budget: float, hists: Sequence = i["hists"]) -> float | None:
                errs = [best_so_far(h, x_key, budget) for h in hists]
                known = [e for e in errs if e is not None]
                if len(known) < len(errs):
                    return None  # some seed had not validated yet within this budget
                return 1.0 - sum(known) / len(known)

            reach = next((e for e, v in i["mean_best"].items() if v <= target + 1e-12), None)
            table.append(
                {
                    "batch_size": b,
                    "label": _batch_label(b, n_train),
                    "lr": i["lr"],
                    "acc_epoch1": acc("epoch", 1),
                    "acc_epoch_last": acc("epoch", e_last),
                    "acc_examples": acc("examples_seen", x_budget),
                    "acc_seconds": acc("seconds", t_budget),
                    "epochs_to_target": reach,
                    "seconds_to_target": i["seconds"].get(reach) if reach else None,
                    "seconds_per_epoch": i["seconds"].get(e_last, math.nan) / e_last,
                }
            )
        out.append(
            {
                "dataset": dataset,
                "n_train": n_train,
                "epoch_budget": e_last,
                "examples_budget": x_budget,
                "seconds_budget": t_budget,
                "target_error": target,
                "rows": table,
            }
        )
    return out


def _batch_verdict(entry: Mapping[str, Any]) -> tuple[str, str | None]:
    """('agree' | 'disagree' | 'tie', sentence) for one dataset: smallest B vs full batch."""
    rows = entry["rows"]
    small, full = rows[0], rows[-1]
    if full["batch_size"] != entry["n_train"]:
        return "n/a", None
    es, ef = small["epochs_to_target"], full["epochs_to_target"]
    ts, tf = small["seconds_to_target"], full["seconds_to_target"]
    target = fmt_pct(1 - entry["target_error"])
    if es < ef:
        verdict = "agree"
        how = "fewer"
    elif es == ef:
        verdict = "tie"
        how = "as many"
    else:
        verdict = "disagree"
        how = "more"
    fastest = min(rows, key=lambda r: r["seconds_to_target"] or math.inf)
    sentence = (
        f"**{entry['dataset']}**: to reach {target} validation accuracy, B = "
        f"{small['label']} needed {es} epoch(s) and full-batch training {ef} — {how} epochs "
        f"for the smaller batch ({verdict} with the paper). In wall-clock time B = "
        f"{small['label']} took {ts:.2f}s and full batch {tf:.2f}s (an epoch took "
        f"{small['seconds_per_epoch']:.3f}s and {full['seconds_per_epoch']:.3f}s); the "
        f"fastest was B = {fastest['label']} ({fastest['seconds_to_target']:.2f}s)."
    )
    return verdict, sentence


def _smallest_is_fastest(entry: Mapping[str, Any]) -> bool:
    """Did the smallest batch also reach the target first in wall-clock seconds?"""
    times = [r["seconds_to_target"] or math.inf for r in entry["rows"]]
    return times[0] <= min(times)


def _batch_sections(ctx: ReportContext) -> list[Section]:
    sec = Section("On-line vs minibatch vs full-batch training")
    sec.text(
        "Wilson & Martinez (2003), 'The general inefficiency of batch training for gradient "
        "descent learning', report that on-line training (B = 1) reaches a given accuracy "
        "in fewer epochs than full-batch training, the more so on larger datasets. Every "
        "batch size here trains the same MLP with plain SGD for the same number of epochs, "
        "at its own learning rate (chosen on the validation error). Accuracies are "
        "validation accuracies of the best model so far within each budget, mean over "
        "seeds; '–' means some seed had not finished an epoch within that budget."
    )
    analysis = batch_size_analysis(ctx)
    verdicts = []
    fastest_small = 0
    for entry in analysis:
        rows = []
        for r in entry["rows"]:
            rows.append(
                [
                    r["label"],
                    format_value(r["lr"]),
                    fmt_pct(r["acc_epoch1"]),
                    fmt_pct(r["acc_epoch_last"]),
                    fmt_pct(r["acc_examples"]),
                    fmt_pct(r["acc_seconds"]),
                    str(r["epochs_to_target"]) if r["epochs_to_target"] else "–",
                    f"{r['seconds_to_target']:.2f}" if r["seconds_to_target"] else "–",
                ]
            )
        sec.table(
            Table(
                [
                    "B",
                    "lr",
                    "acc. after 1 epoch",
                    f"acc. after {entry['epoch_budget']} epochs",
                    f"acc. at {entry['examples_budget']:,} examples seen",
                    f"acc. at {entry['seconds_budget']:.2f}s",
                    f"epochs to {fmt_pct(1 - entry['target_error'])}",
                    "seconds to it",
                ],
                rows,
                caption=f"{entry['dataset']} ({entry['n_train']} training examples)",
            )
        )
        verdict, sentence = _batch_verdict(entry)
        if sentence:
            verdicts.append(verdict)
            fastest_small += _smallest_is_fastest(entry)
            sec.text(sentence)
    if verdicts:
        agree = verdicts.count("agree")
        sec.text(
            f"**Verdict (computed from the runs above).** On {agree} of {len(verdicts)} "
            "datasets the smallest batch reached the common target accuracy in fewer epochs "
            "than full-batch training"
            + (
                ", in line with Wilson & Martinez's claim."
                if agree == len(verdicts)
                else (
                    "; on the others it did not, so our results support the claim only partly."
                    if agree
                    else "; our results do not support the claim."
                )
            )
            + " The claim counts epochs, i.e. gradient evaluations. In wall-clock seconds "
            f"the smallest batch was also the first to the target on {fastest_small} of "
            f"{len(verdicts)} datasets"
            + (
                "."
                if fastest_small == len(verdicts)
                else ": a step on a minibatch costs the vectorized implementation little "
                "more than a step on one example (see the seconds per epoch above), so per "
                "second larger minibatches got further."
            )
        )
    else:
        sec.text("Not enough finished runs to compare batch sizes.")
    return [sec]


# ============================================================================ losses
def _losses_plan(settings: StudySettings) -> SweepPlan:
    fast = settings.fast
    grid = {"loss": ["nll", "mse"], "lr": lr_grid(0.3, 2, 1)}
    if fast:
        fixed = _fixed(
            settings,
            dataset="digits",
            model="mlp",
            hidden=[64],
            optimizer="sgd",
            batch_size=32,
            shuffle=True,
            max_epochs=30,
            early_stopping="none",
        )
    else:
        fixed = _fixed(
            settings,
            dataset="mnist",
            model="mlp",
            hidden=[500],
            optimizer="sgd",
            batch_size=20,
            shuffle=True,
            max_epochs=100,
            early_stopping="epochs",
            patience=10,
        )
    return SweepPlan.build(
        grid,
        fixed,
        seeds=_seeds(settings, 3, 5),
        tune=["lr"],
        title="Study: cross-entropy vs mean squared error" + (" (fast)" if fast else ""),
        study="losses",
    )


def _losses_sections(ctx: ReportContext) -> list[Section]:
    from descentlab.experiments.explain import losses_table
    from descentlab.experiments.report import configuration_summaries

    sec = Section("Cross-entropy or squared error?")
    columns, rows = losses_table()
    sec.text(
        "The worked example of the practical notes, computed by descentlab.losses: two "
        "models with the same classification error (1/3) that the average cross-entropy "
        "and the average squared error tell apart."
    )
    sec.table(Table(columns, rows))
    summaries = {s["label"]: s for s in configuration_summaries(ctx) if s["ok"]}
    ce, mse = summaries.get("nll"), summaries.get("mse")
    if ce and mse:
        diff = ce["test_error"]["mean"] - mse["test_error"]["mean"]
        verdict = (
            "the same mean test error"
            if abs(diff) < 1e-12
            else f"lower mean test error with {'cross-entropy' if diff < 0 else 'MSE'}"
        )
        sec.text(
            f"Trained on the same model, cross-entropy (lr {format_value(ce['tuned'].get('lr'))}) "
            f"reached a test error of {fmt_pct(ce['test_error']['mean'])} "
            f"(valid {fmt_pct(ce['best_valid_error']['mean'])}, best after "
            f"{ce['best_epoch']['mean']:.1f} epochs) and MSE on the softmax "
            f"(lr {format_value(mse['tuned'].get('lr'))}) {fmt_pct(mse['test_error']['mean'])} "
            f"(valid {fmt_pct(mse['best_valid_error']['mean'])}, best after "
            f"{mse['best_epoch']['mean']:.1f} epochs): {verdict}. See the "
            "McNemar test below for whether the difference is more than noise."
        )
    return [sec]


# ========================================================================= schedules
def _schedules_plan(settings: StudySettings) -> SweepPlan:
    fast = settings.fast
    epochs = 30 if fast else 100
    schedules = {
        "constant": "constant",
        "linear decay": f"linear:tau_epochs={epochs},final_ratio=0.01",
        "exponential": "exp:gamma=0.9" if fast else "exp:gamma=0.97",
        "1/t": "inv:t0=200" if fast else "inv:t0=10000",
    }
    grid: list[dict[str, Any]] = [
        {"label": label, "schedule": [spec], "lr": lr_grid(0.3, 1, 2)}
        for label, spec in schedules.items()
    ]
    common = {"optimizer": "sgd", "shuffle": True, "max_epochs": epochs, "early_stopping": "none"}
    if fast:
        fixed = _fixed(
            settings, dataset="digits", model="mlp", hidden=[64], batch_size=32, **common
        )
    else:
        fixed = _fixed(
            settings, dataset="mnist", model="mlp", hidden=[500], batch_size=20, **common
        )
    return SweepPlan.build(
        grid,
        fixed,
        seeds=_seeds(settings, 3, 5),
        tune=["lr"],
        title="Study: learning-rate schedules for SGD" + (" (fast)" if fast else ""),
        study="schedules",
    )


def _schedules_sections(ctx: ReportContext) -> list[Section]:
    from descentlab.plots import plot_curves
    from descentlab.experiments.report import configuration_summaries

    sec = Section("Learning-rate schedules")
    sec.text(
        "Constant ε; the book's linear decay to 1% of ε₀ over the run; exponential decay "
        "per epoch; and 1/t decay ε₀/(1 + k/t₀) per step (Σε = ∞, Σε² < ∞). ε₀ was tuned "
        "per schedule on the validation error."
    )
    series = [
        {"group": ctx.label(r), "history": ctx.history(r)} for r in ctx.ok_final if ctx.history(r)
    ]
    if series:
        paths = plot_curves(
            series,
            "epoch",
            "lr",
            "group",
            ctx.figures_dir / "lr_vs_epoch",
            logy=True,
            title="learning rate at each validation",
            ylabel="learning rate (log scale)",
        )
        sec.figure(paths[0])
    summaries = sorted(
        (s for s in configuration_summaries(ctx) if s["ok"]),
        key=lambda s: s["best_valid_error"]["mean"],
    )
    if summaries:
        sec.text(
            "Ranked by validation error: "
            + "; ".join(
                f"{s['label']} (ε₀ {format_value(s['tuned'].get('lr'))}: valid "
                f"{fmt_pct(s['best_valid_error']['mean'])}, "
                f"test {fmt_pct(s['test_error']['mean'])})"
                for s in summaries
            )
            + "."
        )
    return [sec]


# ==================================================================== regularization
def _regularization_plan(settings: StudySettings) -> SweepPlan:
    fast = settings.fast
    grid: list[dict[str, Any]] = [
        {"label": "none"},
        {"label": "L1", "l1": [1e-5, 1e-4, 1e-3]},
        {"label": "L2", "l2": [1e-5, 1e-4, 1e-3]},
        {"label": "dropout", "dropout": [0.2, 0.5]},
        {
            "label": "early stopping",
            "early_stopping": ["epochs"],
            "patience": [5 if fast else 10],
            "restore_best": [True],
        },
    ]
    # Every variant but early stopping trains all epochs and keeps the *final* model.
    common = {"early_stopping": "none", "restore_best": False, "shuffle": True}
    if fast:
        fixed = _fixed(
            settings,
            dataset="digits",
            model="mlp",
            hidden=[256],
            optimizer="adam",
            lr=1e-3,
            batch_size=32,
            max_epochs=60,
            **common,
        )
    else:
        fixed = _fixed(
            settings,
            dataset="mnist",
            subset=10000,
            model="mlp",
            hidden=[500],
            optimizer="adam",
            lr=1e-3,
            batch_size=20,
            max_epochs=150,
            **common,
        )
    return SweepPlan.build(
        grid,
        fixed,
        seeds=_seeds(settings, 3, 5),
        tune=["l1", "l2", "dropout"],
        title="Study: regularization" + (" (fast)" if fast else ""),
        study="regularization",
        select_metric="model_valid_error",
    )


def _regularization_sections(ctx: ReportContext) -> list[Section]:
    from descentlab.experiments.report import _ci, _fmt_ci, configuration_summaries

    sec = Section("Regularization: errors of the returned model and the train–valid gap")
    sec.text(
        "'none', L1, L2 and dropout train for every epoch and are scored with their final "
        "parameters; 'early stopping' keeps the parameters of the best validation point. "
        "The strength of L1, L2 and dropout was chosen on the validation error of the "
        "final model (one seed), then run with every seed. The gap is validation error "
        "minus training error of the same model. (The 'best valid error' of the general "
        "table below is the best point along each run — for the variants without early "
        "stopping that is not the model they return.)"
    )
    rows = []
    stats: list[tuple[str, float, float, float]] = []
    for s in configuration_summaries(ctx):
        ok = s["ok"]
        if not ok:
            continue
        strength = next(
            (f"{k}={format_value(v)}" for k, v in s["tuned"].items() if v not in (None, 0, 0.0)),
            "–",
        )
        train = _mean([r["model_train_error"] for r in ok])
        valid = _mean([r["model_valid_error"] for r in ok])
        test = _mean([r["model_test_error"] for r in ok])
        gap = valid - train if valid is not None and train is not None else None
        n_test = sum(int(r["n_test"]) for r in ok)
        errs = sum(round(r["model_test_error"] * r["n_test"]) for r in ok)
        if valid is not None and test is not None and gap is not None:
            stats.append((s["label"], valid, test, gap))
        rows.append(
            [
                s["label"],
                strength,
                fmt_pct(train),
                fmt_pct(valid),
                fmt_pct(test),
                _fmt_ci(_ci(errs, n_test)),
                fmt_pct(gap),
            ]
        )
    sec.table(
        Table(
            ["variant", "chosen", "train error", "valid error", "test error", "test 95% CI", "gap"],
            rows,
            caption="the returned model's errors, mean over seeds; CI: Wilson, pooled over seeds",
        )
    )
    if stats:
        best = min(stats, key=lambda t: t[1])
        narrow = min(stats, key=lambda t: t[3])
        none = next((t for t in stats if t[0] == "none"), None)
        text = (
            f"Lowest validation error: **{best[0]}** ({fmt_pct(best[1])}, test "
            f"{fmt_pct(best[2])}). Smallest train–valid gap: **{narrow[0]}** "
            f"({fmt_pct(narrow[3])})."
        )
        if none is not None:
            helped = [t[0] for t in stats if t[0] != "none" and t[1] < none[1]]
            text += (
                f" Compared with no regularization (valid {fmt_pct(none[1])}, gap "
                f"{fmt_pct(none[3])}), "
                + (
                    f"{', '.join(helped)} lowered the validation error."
                    if helped
                    else "no variant lowered the validation error."
                )
            )
        sec.text(text)
    return [sec]


# ========================================================================= surrogate
def _surrogate_plan(settings: StudySettings) -> SweepPlan:
    fast = settings.fast
    if fast:
        fixed = _fixed(
            settings,
            dataset="digits",
            model="mlp",
            hidden=[64],
            optimizer="sgd",
            lr=0.1,
            batch_size=32,
            shuffle=True,
            max_epochs=80,
            early_stopping="none",
        )
    else:
        fixed = _fixed(
            settings,
            dataset="mnist",
            model="mlp",
            hidden=[500],
            optimizer="sgd",
            lr=0.01,
            l2=1e-4,
            batch_size=20,
            shuffle=True,
            max_epochs=200,
            early_stopping="none",
        )
    return SweepPlan.build(
        {},
        fixed,
        seeds=_seeds(settings, 3, 3),
        title="Study: surrogate loss vs true metric" + (" (fast)" if fast else ""),
        study="surrogate",
    )


def surrogate_disagreements(
    epochs: Sequence[int], nll: Sequence[float], error: Sequence[float]
) -> dict[str, list[int]]:
    """Epochs where the surrogate and the true metric disagree about progress.

    ``surrogate_only``: validation NLL reached a new best but the error did not (the
    surrogate keeps improving, the true metric does not); ``metric_only``: the reverse.
    A "new best" is strictly below every earlier value.
    """
    out: dict[str, list[int]] = {"surrogate_only": [], "metric_only": []}
    best_nll = best_err = math.inf
    for e, n, err in zip(epochs, nll, error):
        nll_better, err_better = n < best_nll, err < best_err
        if nll_better and not err_better and best_err < math.inf:
            out["surrogate_only"].append(int(e))
        if err_better and not nll_better and best_nll < math.inf:
            out["metric_only"].append(int(e))
        best_nll, best_err = min(best_nll, n), min(best_err, err)
    return out


def _surrogate_sections(ctx: ReportContext) -> list[Section]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from descentlab.plots import save_figure

    sec = Section("Surrogate loss vs true metric")
    hists = [ctx.history(r) for r in ctx.ok_final]
    hists = [h for h in hists if h]
    if not hists:
        return [sec.text("No run finished.")]
    nll = _mean_curve(hists, "valid_nll")
    err = _mean_curve(hists, "valid_error")
    f1 = _mean_curve(hists, "valid_f1")
    train = _mean_curve(hists, "train_nll")
    epochs = [e for e in nll if e in err]
    marks = surrogate_disagreements(epochs, [nll[e] for e in epochs], [err[e] for e in epochs])

    fig = Figure(figsize=(8, 4.4), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax2 = ax.twinx()
    for e in marks["surrogate_only"]:
        ax.axvspan(e - 0.5, e + 0.5, color="#ffbf00", alpha=0.25, lw=0)
    ax.plot(epochs, [nll[e] for e in epochs], color="#1f77b4", lw=1.6, label="valid NLL")
    ax.plot(list(train), list(train.values()), color="#1f77b4", lw=1, ls="--", label="train NLL")
    ax2.plot(epochs, [100 * err[e] for e in epochs], color="#d62728", lw=1.6, label="valid error")
    ax2.plot(
        list(f1),
        [100 * (1 - v) for v in f1.values()],
        color="#2ca02c",
        lw=1.2,
        label="1 − macro-F1",
    )
    # log scales: the interesting part is the slow tail after the first few epochs
    if all(v > 0 for v in [*nll.values(), *train.values()]):
        ax.set_yscale("log")
    if all(v > 0 for v in err.values()) and all(v < 1 for v in f1.values()):
        from matplotlib.ticker import FuncFormatter

        ax2.set_yscale("log")
        plain = FuncFormatter(lambda v, _: f"{v:g}")
        ax2.yaxis.set_major_formatter(plain)
        ax2.yaxis.set_minor_formatter(plain)
    ax.set_xlabel("epoch")
    ax.set_ylabel("NLL (mean per example, log scale)")
    ax2.set_ylabel("error / 1 − F1 (%, log scale)")
    ax.set_title(
        f"mean of {len(hists)} seeds; shaded: valid NLL improved, valid error did not",
        fontsize=9,
    )
    lines = ax.get_lines() + ax2.get_lines()
    ax.legend(lines, [str(ln.get_label()) for ln in lines], fontsize=8, loc="upper right")
    ax.grid(True, alpha=0.3)
    paths = save_figure(fig, ctx.figures_dir / "surrogate_vs_metric")
    sec.figure(paths[0])

    best_nll_epoch = min(nll, key=lambda e: nll[e])
    best_err_epoch = min(err, key=lambda e: err[e])
    best_f1_epoch = max(f1, key=lambda e: f1[e]) if f1 else None
    text = (
        f"Averaged over {len(hists)} seeds, the validation NLL was lowest at epoch "
        f"{best_nll_epoch} ({nll[best_nll_epoch]:.4f}), the validation error at epoch "
        f"{best_err_epoch} ({fmt_pct(err[best_err_epoch])})"
        + (f" and 1 − macro-F1 at epoch {best_f1_epoch}" if best_f1_epoch else "")
        + ". "
    )
    if marks["surrogate_only"]:
        text += (
            "The surrogate kept improving while the error did not at epochs "
            f"{epoch_ranges(marks['surrogate_only'])} (shaded)."
        )
        late = [e for e in marks["surrogate_only"] if e > best_err_epoch]
        if late:
            text += (
                f" After epoch {best_err_epoch}, where the error was lowest, the NLL still "
                f"reached a new low at {len(late)} epochs (the last at epoch {late[-1]}) "
                "without the error ever improving again."
            )
        text += " "
    else:
        text += "There was no epoch at which the NLL improved without the error improving. "
    if marks["metric_only"]:
        text += (
            "Conversely, the error improved while the NLL did not at epochs "
            f"{epoch_ranges(marks['metric_only'])}"
            + (
                " — after its minimum the NLL rises as the model grows over-confident on "
                "the examples it gets wrong, while the error can still fall."
                if max(marks["metric_only"]) > best_nll_epoch
                else "."
            )
        )
    sec.text(text.strip())
    sec.text(
        "This is why the trainer early-stops on the validation *error* (the metric we care "
        "about), not on the loss it minimizes."
    )
    return [sec]


# ========================================================================= registry
STUDIES: dict[str, Study] = {
    s.name: s
    for s in (
        Study(
            "optimizers",
            "SGD, momentum, Nesterov, AdaGrad, RMSProp (+Nesterov), Adam, AdaDelta on MNIST",
            _optimizers_plan,
            _optimizers_sections,
            split_by="model",
        ),
        Study(
            "batch-size",
            "on-line vs minibatch vs full-batch training on six datasets (Wilson & Martinez 2003)",
            _batch_plan,
            _batch_sections,
            split_by="dataset",
        ),
        Study("losses", "cross-entropy vs MSE on the same model", _losses_plan, _losses_sections),
        Study(
            "schedules",
            "constant vs linear vs exponential vs 1/t learning rates for SGD",
            _schedules_plan,
            _schedules_sections,
        ),
        Study(
            "regularization",
            "none vs L1 vs L2 vs dropout vs early stopping, with the train–valid gap",
            _regularization_plan,
            _regularization_sections,
        ),
        Study(
            "surrogate",
            "validation NLL vs zero-one error vs macro-F1 through training",
            _surrogate_plan,
            _surrogate_sections,
        ),
    )
}


def get_study(name: str) -> Study:
    if name not in STUDIES:
        raise ConfigError(f"unknown study {name!r}", hint=did_you_mean(name, list(STUDIES)))
    return STUDIES[name]


def run_study(
    name: str,
    *,
    fast: bool = True,
    out: str | Path | None = None,
    jobs: int | None = None,
    seeds: int | None = None,
    data_dir: str | None = None,
    datasets: Sequence[str] | None = None,
    progress: bool = True,
    report: bool = True,
    stream: Any = None,
) -> Any:
    """Run (or resume) a built-in study into ``out`` (default ``studies/<name>[-fast]``).

    Returns the :class:`~descentlab.experiments.sweep.SweepResult`; its report holds the
    study's own sections.
    """
    from descentlab.experiments.sweep import run_sweep

    study = get_study(name)
    settings = StudySettings(fast=fast, seeds=seeds, data_dir=data_dir, datasets=datasets)
    plan = study.plan(settings)
    if out is None:
        out = Path("studies") / (f"{name}-fast" if fast else name)
    return run_sweep(plan, out, jobs=jobs, progress=progress, report=report, stream=stream)
