"""``descentlab bench optim | train | time-to-target | overhead | sweep``: timings, baselines."""

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
    WORKLOADS,
    format_time_to_target,
    format_train_table,
    run_time_to_target,
    run_train_bench,
)
from descentlab.cli.common import add_command, add_flags, arguments_for, positive_int


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
        rows = run_optim_bench(**arguments_for(run_optim_bench, args))
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
    """Train each workload with every contender one epoch at a time, interleaved (with
    --threads 1,2 both counts in the same rounds), and print the median s/epoch, the
    speedup over the best baseline, the fraction of the compute floor (matrix products at
    this machine's measured rate) and the test error after the timed epochs."""
    # --threads 1,2: both counts interleaved in the same rounds
    progress = _progress(args.quiet or args.json)
    rows = run_train_bench(**arguments_for(run_train_bench, args, progress=progress))
    print(json.dumps(rows, indent=2) if args.json else format_train_table(rows))
    return 0


def cmd_time_to_target(args: argparse.Namespace) -> int:
    """Train a preset (default fast-mnist) in a child process and report when the test
    error at the best validation point first reached the target, the final numbers and
    the peak memory."""
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
    """Time, interleaved, an epoch end to end, the same epoch training only, scoring the
    validation and test sets, and writing the checkpoint."""
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
    """Train a grid of lr x momentum x seed configurations fused (descentlab.train.fused)
    and separately (descentlab.fit, one after the other, in this process), interleaved;
    print runs/hour for each and the largest difference between a member and its
    separate run."""
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
        optimizers=_names(args.optimizers) if args.optimizers else (),
        **options,
    )
    row = run_sweep_bench(
        configs, repeats=args.repeats, threads=args.threads, progress=_progress(args.quiet)
    )
    print(json.dumps(row, indent=2) if args.json else format_sweep_bench(row))
    return 0


def _register_optim(bench: Any) -> None:
    q = add_command(bench, "optim", cmd_optim, "optimizer step time vs torch.optim")
    q.add_argument("--sizes", type=_sizes, default=[1_000_000, 25_000_000], help="e.g. 1M,25M")
    q.add_argument(
        "--tensors",
        dest="n_tensors",
        metavar="TENSORS",
        type=int,
        default=50,
        help="parameter tensors (default %(default)s)",
    )
    q.add_argument("--optimizers", type=_names, default=None, help="e.g. sgd,adam (default all)")
    _add_repeats(q, repeats=30, warmup=5, unit="steps", per="optimizer")
    add_flags(q, "--threads", "--device", "--json")


def _register_train(bench: Any) -> None:
    q = add_command(
        bench, "train", cmd_train, "seconds per epoch vs the strongest plain PyTorch loops"
    )
    workloads, contenders = ", ".join(WORKLOADS), ", ".join(CONTENDERS)
    q.add_argument("--workloads", type=_names, default=None, help=f"{workloads} (default all)")
    q.add_argument(
        "--contenders",
        type=_names,
        default=None,
        help=f"any of: {contenders} (default: {', '.join(DEFAULT_CONTENDERS)})",
    )
    _add_repeats(q, repeats=5, warmup=1, unit="epochs", per="contender")
    add_flags(
        q,
        "--threads",
        threads={
            "type": _thread_counts,
            "help": "CPU threads for every contender; 1,2: both counts, interleaved in one run",
        },
    )
    q.add_argument("--dataset", default="mnist", help="dataset name or path (default %(default)s)")
    add_flags(q, "--data-dir", "--subset", "--device", "--quiet", "--json")


def _register_time_to_target(bench: Any) -> None:
    q = add_command(
        bench,
        "time-to-target",
        cmd_time_to_target,
        "seconds to reach a test error with the fast preset",
    )
    q.add_argument("--target", type=float, default=0.0165, help="test error (default %(default)s)")
    q.add_argument("--preset", default="fast-mnist", help="preset to train (default %(default)s)")
    add_flags(
        q,
        "--threads",
        threads={
            "type": _thread_counts,
            "help": "torch CPU threads; 1,2 runs each count in turn (default: chosen)",
        },
    )
    q.add_argument("--dataset", default=None, help="override the preset's dataset")
    add_flags(q, "--data-dir", "--subset")
    q.add_argument("--max-epochs", type=int, default=None, help="override the preset's epochs")
    add_flags(
        q,
        "--device",
        "--json",
        device={"default": None, "help": "cpu, cuda or auto (default: the preset's)"},
    )


def _register_overhead(bench: Any) -> None:
    q = add_command(
        bench,
        "overhead",
        cmd_overhead,
        "what an epoch of descentlab train spends besides training",
    )
    q.add_argument("--preset", default="dlt-mlp", help="preset to time (default %(default)s)")
    _add_repeats(q, repeats=3, warmup=1, unit="rounds", per="part")
    add_flags(q, "--threads", "--data-dir", "--subset", "--json")


def _register_sweep(bench: Any) -> None:
    q = add_command(bench, "sweep", cmd_sweep, "a grid trained as one fused model vs run by run")
    q.add_argument("--model", default="mlp", choices=("logreg", "mlp"), help="default mlp")
    q.add_argument("--hidden", type=int, default=100, help="MLP hidden units (default 100)")
    q.add_argument("--lrs", type=_floats, default=[0.01, 0.03, 0.1], help="e.g. 0.01,0.1")
    q.add_argument("--momenta", type=_floats, default=[0.0, 0.5, 0.9], help="e.g. 0,0.9")
    q.add_argument(
        "--optimizers", default=None, help="e.g. sgd,adam: optimizer x lr x seed (no --momenta)"
    )
    q.add_argument("--seeds", type=_floats, default=[1, 2], help="e.g. 1,2 (default 1,2)")
    q.add_argument("--dataset", default="digits", help="dataset (default %(default)s)")
    add_flags(q, "--data-dir", "--subset")
    q.add_argument("--batch-size", type=int, default=20, help="default %(default)s")
    q.add_argument("--max-epochs", type=int, default=2, help="default %(default)s")
    q.add_argument("--repeats", type=positive_int, default=1, help="timed rounds (default 1)")
    add_flags(
        q,
        "--threads",
        "--device",
        "--quiet",
        "--json",
        device={"default": None, "help": "cpu or cuda (default: cpu)"},
    )


def cmd_bench(args: argparse.Namespace) -> int:
    """Time descentlab against hand-written PyTorch, torch.optim and scikit-learn,
    interleaved in one process (ratios are what to compare)."""
    args.bench_parser.print_help()
    return 2


def register(sub: Any) -> None:
    """Add ``bench`` and its sub-commands to the CLI's subparsers."""
    p = add_command(sub, "bench", cmd_bench, "benchmarks next to their plainly-written baselines")
    p.set_defaults(bench_parser=p)
    bench = p.add_subparsers(dest="bench_command", metavar="BENCH")
    for add in (
        _register_optim,
        _register_train,
        _register_time_to_target,
        _register_overhead,
        _register_sweep,
    ):
        add(bench)
