"""Study ``batch-size``: on-line vs minibatch vs full-batch training (Wilson & Martinez 2003)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from descentlab.data import load_dataset
from descentlab.errors import ConfigError, did_you_mean
from descentlab.experiments.plan import SweepPlan, format_value
from descentlab.experiments.report import ReportContext, Section, Table, fmt_pct
from descentlab.experiments.studies.common import (
    Study,
    StudySettings,
    best_so_far,
    group_rows,
    lr_grid,
    mean_curve,
    study_plan,
    study_report,
)

__all__ = ["BATCH_SIZES", "STUDY", "batch_size_analysis", "build_plan", "report_sections"]

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
    data = load_dataset(dataset, data_dir=data_dir, subset=subset)
    return int(data.train.y.shape[0])


def build_plan(settings: StudySettings) -> SweepPlan:
    """Every batch size that fits each dataset, with an lr grid centred for that size."""
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
    common = {
        "model": "mlp",
        "activation": "tanh",
        "optimizer": "sgd",
        "shuffle": True,
        "early_stopping": "none",
    }
    return study_plan(
        settings,
        "batch-size",
        "on-line vs minibatch vs full-batch training",
        grid,
        fast={**common, "hidden": [32], "max_epochs": 20},
        full={**common, "hidden": [100], "max_epochs": 100},
        tune=["lr"],
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
    for dataset, rows in group_rows(ctx.ok_final, "dataset").items():
        by_b = group_rows(rows, "batch_size")
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
            secs = mean_curve(hists, "seconds")
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


@study_report(
    "On-line vs minibatch vs full-batch training",
    "Wilson & Martinez (2003), 'The general inefficiency of batch training for gradient "
    "descent learning', report that on-line training (B = 1) reaches a given accuracy "
    "in fewer epochs than full-batch training, the more so on larger datasets. Every "
    "batch size here trains the same MLP with plain SGD for the same number of epochs, "
    "at its own learning rate (chosen on the validation error). Accuracies are "
    "validation accuracies of the best model so far within each budget, mean over "
    "seeds; '–' means some seed had not finished an epoch within that budget.",
)
def report_sections(ctx: ReportContext, sec: Section) -> None:
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


STUDY = Study(
    "batch-size",
    "on-line vs minibatch vs full-batch training on six datasets (Wilson & Martinez 2003)",
    build_plan,
    report_sections,
    split_by="dataset",
)
