"""``descentlab bench optim | train | time-to-target | sweep``: timings next to their baselines."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from descentlab.bench.optim import format_optim_table, run_optim_bench
from descentlab.bench.overhead import format_overhead, run_overhead_bench
from descentlab.bench.sweep import format_sweep_bench, run_sweep_bench, sweep_grid
from descentlab.bench.timing import thread_limit
from descentlab.bench.train import (
    CONTENDERS,
    DEFAULT_CONTENDERS,
    format_time_to_target,
    format_train_table,
    run_time_to_target,
    run_train_bench,
)


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def _sizes(text: str) -> list[int]:
    out = []
    for v in _names(text):
        scale = 1
        if v[-1] in "kKmM":
            scale = 1_000 if v[-1] in "kK" else 1_000_000
            v = v[:-1]
        try:
            out.append(int(float(v) * scale))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected sizes like 1M,25M or 1000000, got {text!r}"
            ) from None
    return out


def _progress(quiet: bool) -> Any:
    if quiet:
        return None
    return lambda message: print(f"descentlab bench: {message}", file=sys.stderr, flush=True)


def cmd_optim(args: argparse.Namespace) -> int:
    with thread_limit(args.threads):
        rows = run_optim_bench(
            sizes=args.sizes,
            n_tensors=args.tensors,
            repeats=args.repeats,
            warmup=args.warmup,
            optimizers=args.optimizers,
            device=args.device,
        )
    print(json.dumps(rows, indent=2) if args.json else format_optim_table(rows))
    return 0


def _thread_counts(text: str) -> list[int]:
    try:
        return [int(v) for v in _names(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected thread counts like 1 or 1,2, got {text!r}"
        ) from None


def cmd_train(args: argparse.Namespace) -> int:
    rows = run_train_bench(
        workloads=args.workloads,
        contenders=args.contenders,
        repeats=args.repeats,
        warmup=args.warmup,
        threads=args.threads,  # 1,2: both counts interleaved in the same rounds
        dataset=args.dataset,
        data_dir=args.data_dir,
        subset=args.subset,
        device=args.device,
        progress=_progress(args.quiet or args.json),
    )
    print(json.dumps(rows, indent=2) if args.json else format_train_table(rows))
    return 0


def cmd_time_to_target(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.dataset is not None:
        overrides["dataset"] = args.dataset
    if args.subset is not None:
        overrides["subset"] = args.subset
    if args.max_epochs is not None:
        overrides["max_epochs"] = args.max_epochs
    if args.device is not None:
        overrides["device"] = args.device
    results = []
    for threads in args.threads or [None]:  # each count in its own child, in turn
        result = run_time_to_target(
            args.target, preset=args.preset, threads=threads, data_dir=args.data_dir, **overrides
        )
        results.append(result)
        if not args.json:
            print(format_time_to_target(result), flush=True)
    if args.json:  # one object for one thread count (as before), else a list
        print(json.dumps(results[0] if len(results) == 1 else results, indent=2, default=str))
    return 0


def cmd_overhead(args: argparse.Namespace) -> int:
    overrides = {k: getattr(args, k) for k in ("data_dir", "subset") if getattr(args, k)}
    result = run_overhead_bench(
        args.preset, repeats=args.repeats, warmup=args.warmup, threads=args.threads, **overrides
    )
    print(json.dumps(result, indent=2) if args.json else format_overhead(result))
    return 0


def _add_repeats(q: Any, *, repeats: int, warmup: int, unit: str, per: str) -> None:
    """``--repeats`` (timed) and ``--warmup`` (untimed first) counts of ``unit``."""
    q.add_argument(
        "--repeats", type=int, default=repeats, help=f"timed {unit} per {per} (default %(default)s)"
    )
    q.add_argument(
        "--warmup", type=int, default=warmup, help=f"untimed {unit} first (default %(default)s)"
    )


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in _names(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 0.01,0.1, got {text!r}") from None


def cmd_sweep(args: argparse.Namespace) -> int:
    options: dict[str, Any] = {"dataset": args.dataset, "max_epochs": args.max_epochs}
    options["batch_size"] = args.batch_size
    if args.model == "mlp":
        options["hidden"] = (args.hidden,)
    for name in ("data_dir", "subset", "device"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    configs = sweep_grid(
        model=args.model,
        lrs=args.lrs,
        momenta=args.momenta,
        seeds=[int(s) for s in args.seeds],
        **options,
    )
    row = run_sweep_bench(
        configs, repeats=args.repeats, threads=args.threads, progress=_progress(args.quiet)
    )
    print(json.dumps(row, indent=2) if args.json else format_sweep_bench(row))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmarks next to their plainly-written baselines",
        description="Time descentlab against hand-written PyTorch, torch.optim and "
        "scikit-learn, interleaved in one process (ratios are what to compare).",
    )
    bench = p.add_subparsers(dest="bench_command", metavar="BENCH")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    q = bench.add_parser("optim", help="optimizer step time vs torch.optim")
    q.add_argument("--sizes", type=_sizes, default=[1_000_000, 25_000_000], help="e.g. 1M,25M")
    q.add_argument(
        "--tensors", type=int, default=50, help="parameter tensors (default %(default)s)"
    )
    q.add_argument("--optimizers", type=_names, default=None, help="e.g. sgd,adam (default all)")
    _add_repeats(q, repeats=30, warmup=5, unit="steps", per="optimizer")
    q.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    q.add_argument("--device", default="cpu", help="cpu or cuda (default %(default)s)")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.set_defaults(func=cmd_optim)

    q = bench.add_parser(
        "train",
        help="seconds per epoch vs the strongest plain PyTorch loops",
        description="Train each workload with every contender one epoch at a time, "
        "interleaved, and print the median s/epoch, the range, the speedup over the "
        "best baseline, the fraction of the compute floor (matrix products at this "
        "machine's measured rate) and the test error after the timed epochs.",
    )
    q.add_argument(
        "--workloads",
        type=_names,
        default=None,
        help="logreg, mlp-tanh, mlp-adam (default all)",
    )
    q.add_argument(
        "--contenders",
        type=_names,
        default=None,
        help="any of: "
        + ", ".join(CONTENDERS)
        + " (default: "
        + ", ".join(DEFAULT_CONTENDERS)
        + ")",
    )
    _add_repeats(q, repeats=5, warmup=1, unit="epochs", per="contender")
    q.add_argument(
        "--threads",
        type=_thread_counts,
        default=None,
        help="CPU threads for every contender; 1,2: both counts, interleaved in one run",
    )
    q.add_argument("--dataset", default="mnist", help="dataset name or path (default %(default)s)")
    q.add_argument("--data-dir", default=None, help="folder holding mnist/ ...")
    q.add_argument("--subset", type=int, default=None, help="first N examples of each split")
    q.add_argument("--device", default="cpu", help="cpu or cuda (default %(default)s)")
    q.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.set_defaults(func=cmd_train)

    q = bench.add_parser(
        "time-to-target",
        help="seconds to reach a test error with the fast preset",
        description="Train a preset (default fast-mnist) in a child process and report "
        "when the test error at the best validation point first reached the target, "
        "the final numbers and the peak memory.",
    )
    q.add_argument("--target", type=float, default=0.0165, help="test error (default %(default)s)")
    q.add_argument("--preset", default="fast-mnist", help="preset to train (default %(default)s)")
    q.add_argument(
        "--threads",
        type=_thread_counts,
        default=None,
        help="torch CPU threads; 1,2 runs each count in turn (default: chosen)",
    )
    q.add_argument("--dataset", default=None, help="override the preset's dataset")
    q.add_argument("--data-dir", default=None, help="folder holding mnist/ ...")
    q.add_argument("--subset", type=int, default=None, help="first N examples of each split")
    q.add_argument("--max-epochs", type=int, default=None, help="override the preset's epochs")
    q.add_argument("--device", default=None, help="cpu, cuda or auto (default: the preset's)")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.set_defaults(func=cmd_time_to_target)

    q = bench.add_parser(
        "overhead",
        help="what an epoch of descentlab train spends besides training",
        description="Time, interleaved, an epoch end to end, the same epoch training only, "
        "scoring the validation and test sets, and writing the checkpoint.",
    )
    q.add_argument("--preset", default="dlt-mlp", help="preset to time (default %(default)s)")
    _add_repeats(q, repeats=3, warmup=1, unit="rounds", per="part")
    q.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    q.add_argument("--data-dir", default=None, help="folder holding mnist/ ...")
    q.add_argument("--subset", type=int, default=None, help="first N examples of each split")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.set_defaults(func=cmd_overhead)

    q = bench.add_parser(
        "sweep",
        help="a grid trained as one fused model vs run by run",
        description="Train a grid of lr x momentum x seed configurations fused "
        "(descentlab.train.fused) and separately (descentlab.fit, one after the other, in "
        "this process), interleaved; print runs/hour for each and the largest difference "
        "between a member and its separate run.",
    )
    q.add_argument("--model", default="mlp", choices=("logreg", "mlp"), help="default mlp")
    q.add_argument("--hidden", type=int, default=100, help="MLP hidden units (default 100)")
    q.add_argument("--lrs", type=_floats, default=[0.01, 0.03, 0.1], help="e.g. 0.01,0.1")
    q.add_argument("--momenta", type=_floats, default=[0.0, 0.5, 0.9], help="e.g. 0,0.9")
    q.add_argument("--seeds", type=_floats, default=[1, 2], help="e.g. 1,2 (default 1,2)")
    q.add_argument("--dataset", default="digits", help="dataset (default %(default)s)")
    q.add_argument("--data-dir", default=None, help="folder holding mnist/ ...")
    q.add_argument("--subset", type=int, default=None, help="first N examples of each split")
    q.add_argument("--batch-size", type=int, default=20, help="default %(default)s")
    q.add_argument("--max-epochs", type=int, default=2, help="default %(default)s")
    q.add_argument("--repeats", type=int, default=1, help="timed rounds (default 1)")
    q.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    q.add_argument("--device", default=None, help="cpu or cuda (default: cpu)")
    q.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.set_defaults(func=cmd_sweep)
