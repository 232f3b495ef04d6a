"""``descentlab bench sweep``: a grid trained fused (one batched model) and run by run.

Both contenders run in this process on the same data, interleaved (fused, separate,
fused, ...), so machine load hits both alike.  "fused" trains the grid as the sweeps do:
one fused group per :func:`~descentlab.train.fused.group_key` (one per optimizer
algorithm), each run the fused trainer cannot handle on its own.  "separate" is each
configuration trained by :func:`descentlab.fit`, one after the other: the fair in-process
comparison (a process pool adds start-up and data loading per run on top).  Besides
runs/hour, the bench checks that fusing changed nothing: the largest difference between
a member's final parameters and its separate run's, and how many members' errors or best
iterations differ.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from descentlab.bench.timing import check_counts, thread_limit
from descentlab.train import fit
from descentlab.train.build import load_data
from descentlab.train.config import TrainConfig, from_mapping
from descentlab.train.fused import fit_fused, fuse_problem, group_key
from descentlab.train.records import FitResult

__all__ = ["fit_grouped", "format_sweep_bench", "run_sweep_bench", "sweep_grid"]


def sweep_grid(
    *,
    model: str = "mlp",
    lrs: Sequence[float] = (0.01, 0.03, 0.1),
    momenta: Sequence[float] = (0.0, 0.5, 0.9),
    seeds: Sequence[int] = (1, 2),
    optimizers: Sequence[str] = (),
    **options: Any,
) -> list[TrainConfig]:
    """One config per (lr, momentum, seed); ``options`` are shared by all.

    With ``optimizers``: one per (optimizer, lr, seed) instead, each optimizer with its
    own defaults (a study's grid; ``momenta`` unused).
    """
    configs = []
    for name, lr, seed in itertools.product(optimizers, lrs, seeds):
        values = {"model": model, "lr": lr, "seed": seed, "quiet": True, **options}
        configs.append(from_mapping({**values, "optimizer": name}))
    if optimizers:
        return configs
    for lr, momentum, seed in itertools.product(lrs, momenta, seeds):
        values = {"model": model, "lr": lr, "seed": seed, "quiet": True, **options}
        values["optimizer"] = "momentum" if momentum else "sgd"
        if momentum:
            values["momentum"] = momentum
        configs.append(from_mapping(values))
    return configs


def fit_grouped(configs: Sequence[TrainConfig], data: Any) -> list[FitResult]:
    """``configs`` as the sweeps run them: fused groups by :func:`group_key`, the rest alone."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, cfg in enumerate(configs):
        key = group_key(cfg) if not fuse_problem(cfg) else ("alone", i)
        groups.setdefault(key, []).append(i)
    results: list[FitResult | None] = [None] * len(configs)
    for members in groups.values():
        if len(members) == 1:
            results[members[0]] = fit(config=configs[members[0]], data=data)
            continue
        for i, result in zip(members, fit_fused([configs[i] for i in members], data=data)):
            results[i] = result
    return [r for r in results if r is not None]


def _largest_differences(fused: list[FitResult], separate: list[FitResult]) -> dict[str, Any]:
    param_diff = 0.0
    error_diff = 0.0
    best_iteration_mismatches = 0
    for f, s in zip(fused, separate):
        fs, ss = f.model.state_dict(), s.model.state_dict()
        for key, value in ss.items():
            param_diff = max(param_diff, float((fs[key] - value).abs().max()))
        for name in ("test_error", "best_valid_error"):
            a, b = getattr(f.summary, name), getattr(s.summary, name)
            if a is not None and b is not None:
                error_diff = max(error_diff, abs(a - b))
        best_iteration_mismatches += f.summary.best_iteration != s.summary.best_iteration
    return {
        "max_param_diff": param_diff,
        "max_error_diff": error_diff,
        "best_iteration_mismatches": best_iteration_mismatches,
    }


def run_sweep_bench(
    configs: Sequence[TrainConfig],
    *,
    repeats: int = 1,
    threads: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Time ``configs`` fused and separately, ``repeats`` times each, interleaved."""
    check_counts(("repeats", repeats, 1))
    data = load_data(configs[0])
    times: dict[str, list[float]] = {"fused": [], "separate": []}
    fused: list[FitResult] = []
    separate: list[FitResult] = []
    with thread_limit(threads):
        # untimed: first calls pay for imports, allocator and kernel warm-up
        fit_grouped(configs[:2], data)
        for cfg in configs[:2]:
            fit(config=cfg, data=data)
        for r in range(repeats):
            start = time.perf_counter()
            fused = fit_grouped(configs, data)
            times["fused"].append(time.perf_counter() - start)
            start = time.perf_counter()
            separate = [fit(config=cfg, data=data) for cfg in configs]
            times["separate"].append(time.perf_counter() - start)
            if progress is not None:
                progress(
                    f"repeat {r + 1}/{repeats}: fused {times['fused'][-1]:.1f} s, "
                    f"separate {times['separate'][-1]:.1f} s"
                )
    n = len(configs)
    best = {name: min(values) for name, values in times.items()}
    return {
        "runs": n,
        "dataset": data.name,
        "n_train": int(data.train.y.shape[0]),
        "model": configs[0].model,
        "threads": threads if threads is not None else torch.get_num_threads(),
        "seconds": best,
        "runs_per_hour": {name: 3600.0 * n / s for name, s in best.items()},
        "speedup": best["separate"] / best["fused"],
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        **_largest_differences(fused, separate),
    }


def format_sweep_bench(row: dict[str, Any]) -> str:
    rph = row["runs_per_hour"]
    lines = [
        f"{row['runs']} runs of {row['model']} on {row['dataset']} ({row['n_train']} train), "
        f"{row['threads']} thread(s), load average {row['load_average']:.2f}",
        f"  fused      {row['seconds']['fused']:8.2f} s  {rph['fused']:10.0f} runs/hour",
        f"  separate   {row['seconds']['separate']:8.2f} s  {rph['separate']:10.0f} runs/hour",
        f"  speedup    {row['speedup']:.2f}x",
        f"  largest member-vs-separate difference: parameters {row['max_param_diff']:.2e}, "
        f"errors {row['max_error_diff']:.2e}, best_iteration mismatches "
        f"{row['best_iteration_mismatches']}/{row['runs']}",
    ]
    return "\n".join(lines)
