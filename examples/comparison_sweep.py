"""A small optimizer comparison with descentlab.experiments: tuned lr, several seeds, a report.

    python examples/comparison_sweep.py                      # SGD vs momentum vs Adam on digits
    python examples/comparison_sweep.py --tiny               # seconds: 2 runs of 2 epochs
    python examples/comparison_sweep.py --out sweeps/digits  # run again: finished runs are kept

The honest protocol: stage 1 trains every (optimizer, lr) pair once and keeps, for each
optimizer, the learning rate with the lowest *validation* error; stage 2 trains the
chosen settings with every seed. The test set is only read to report. The sweep leaves
``results.csv`` (one row per run), ``report.md``/``report.html`` and a run directory per run.
"""

from __future__ import annotations

import argparse
import os
import tempfile

from descentlab.experiments import run_sweep
from descentlab.experiments.plan import SweepPlan


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="sweep directory (default: a temporary one)")
    parser.add_argument("--jobs", type=int, default=None, help="worker processes (default: cores)")
    parser.add_argument(
        "--tiny",
        action="store_true",
        default=bool(os.environ.get("DESCENTLAB_EXAMPLES_TINY")),
        help="2 optimizers, 1 learning rate, 1 seed, 2 epochs (also: DESCENTLAB_EXAMPLES_TINY=1)",
    )
    args = parser.parse_args(argv)

    fixed = {
        "dataset": "digits",
        "model": "mlp",
        "hidden": (64,),
        "batch_size": 32,
        "shuffle": True,
        "max_epochs": 40,
        "early_stopping": "epochs",
        "patience": 8,
    }
    grid = {"optimizer": ["sgd", "momentum", "adam"], "lr": [0.001, 0.01, 0.1]}
    seeds = 3
    if args.tiny:
        fixed.update(hidden=(16,), max_epochs=2, subset=300)
        grid = {"optimizer": ["sgd", "adam"], "lr": [0.1]}
        seeds = 1
    plan = SweepPlan.build(grid, fixed, seeds=seeds, tune=["lr"], title="Optimizers on digits")

    out = args.out or tempfile.mkdtemp(prefix="descentlab-sweep-")
    result = run_sweep(plan, out, jobs=args.jobs or (1 if args.tiny else None), progress=False)

    print(f"{'optimizer':10s} {'chosen lr':>9s}  {'valid error':>11s}  test error (per seed)")
    for selection in result.selection:
        optimizer = selection["group"]["optimizer"]
        lr = (selection["chosen"] or {}).get("lr")
        runs = [r for r in result.final_rows if r["optimizer"] == optimizer and r["lr"] == lr]
        tests = ", ".join(f"{r['test_error']:.2%}" for r in runs if r["status"] == "ok")
        print(f"{optimizer:10s} {lr!s:>9s}  {selection['score']:>11.2%}  {tests}")
    print(f"results: {result.path / 'results.csv'}")
    if result.report is not None:
        print(f"report:  {result.report[1]}")


if __name__ == "__main__":
    main()
