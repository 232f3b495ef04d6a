"""``descentlab diagnose RUN_DIR`` and ``descentlab lr-find``: chapter 8's diagnostics.

Printing only: the measurements are :mod:`descentlab.diagnostics`.  Both run on one
torch thread unless ``--threads`` says otherwise: on a shared machine (load 7 on two
cores) two threads measured slower than one for the Hessian-vector products.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from descentlab.cli.common import add_command, add_flags, positive_int
from descentlab.cli.train import add_train_options, options_from_args
from descentlab.diagnostics import DiagnoseOptions, Diagnostics, plot_lr_find
from descentlab.diagnostics.runs import (
    MIN_SAMPLE,
    LRFindReport,
    RunPoint,
    diagnose_run,
    lr_find_config,
)
from descentlab.errors import ConfigError
from descentlab.train.config import resolve

THREADS_NOTE = "1 torch thread (default; --threads N to change)"
JSON_HELP = "one JSON object"


def parse_sample(text: str) -> int | None:
    """``all`` (the whole training split) or a positive integer."""
    if text.strip().lower() in ("all", "full"):
        return None
    return positive_int(text, what="a number or 'all'", below="expected a positive number")


def _set_threads(threads: int | None) -> str:
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads or 1)
    return THREADS_NOTE if threads is None else f"{threads} torch thread(s)"


def _g(value: float | None, fmt: str = ".4g") -> str:
    return "n/a" if value is None else format(value, fmt)


def _text(point: RunPoint, d: Diagnostics, n_train: int, threads: str) -> list[str]:
    where = f"iteration {point.iteration}" if point.iteration is not None else "unknown iteration"
    lines = [
        f"run {point.path} at {point.at} ({where}); {d.n_examples:,} of {n_train:,} training "
        f"examples, {d.n_parameters:,} parameters; cost {point.config.loss}"
        f" + {point.config.l1}·L1 + {point.config.l2}·L2; {d.eval_mode_note}",
        f"curvature   λmax {_g(d.lambda_max)}"
        + (f" (top {len(d.top_eigenvalues)}: {', '.join(_g(v) for v in d.top_eigenvalues)})"
           if d.top_eigenvalues and len(d.top_eigenvalues) > 1 else "")
        + f", λmin {_g(d.lambda_min)} (to within ~tol·λmax)",
    ]  # fmt: skip
    if d.lambda_max_samples:
        lines.append(
            f"            λmax over {len(d.lambda_max_samples)} samples: "
            f"{', '.join(_g(v) for v in d.lambda_max_samples)} (std {_g(d.lambda_max_spread)})"
        )
    if d.trace is not None:
        lines.append(f"            trace {_g(d.trace)} ± {_g(d.trace_stderr)} (Hutchinson)")
    if d.lr_stability_bound is not None:
        ratio = (d.lr or 0) / d.lr_stability_bound
        lines.append(
            f"stability   {d.optimizer} lr {_g(d.lr)} vs bound {d.bound_formula} = "
            f"{_g(d.lr_stability_bound)} (lr is {ratio:.3g}× the bound)"
        )
    else:
        lines.append(f"stability   {d.optimizer} lr {_g(d.lr)}: no bound ({d.bound_note})")
    if d.step_ratio is not None:
        verdict = "raises" if d.step_ratio > 1 else "lowers"
        lines.append(
            f"§8.2.1      ‖g‖ {_g(d.grad_norm)}; ½ε²gᵀHg / εgᵀg = {_g(d.step_ratio)} (a step of "
            f"ε {verdict} the cost to second order); predicted Δcost "
            f"{_g(d.step_predicted_change)}, actual {_g(d.step_actual_change)}"
        )
    if d.noise_scale is not None:
        b: list[Any] = list(d.noise_batches) if d.noise_batches else ["?", "?"]
        lines.append(
            f"noise       B_simple {_g(d.noise_scale)}, critical batch ≈ {_g(d.critical_batch)} "
            f"(batches {b[0]}/{b[1]}, {d.noise_repeats} repeats); the run's batch "
            f"{point.config.batch_size}"
        )
    total = sum(d.seconds.values())
    parts = ", ".join(f"{k} {v:.1f}" for k, v in d.seconds.items())
    lines.append(f"time        {total:.1f} s ({parts}); {d.matvecs} Hessian-vector products; "
                 f"{threads}")  # fmt: skip
    return lines


def cmd_diagnose(args: argparse.Namespace) -> int:
    """Measure chapter 8's diagnostics of a finished run on its training cost (loss +
    penalties as trained; dropout off, batch norm in eval mode)."""
    threads = _set_threads(args.threads)
    opts = DiagnoseOptions(
        top_k=args.top_k,
        trace_probes=args.trace_probes,
        repeats=args.repeats,
        noise_repeats=args.noise_repeats,
    )
    start = time.perf_counter()
    point, d = diagnose_run(args.run_dir, at=args.at, sample=args.sample, options=opts)
    n_train = int(point.x.shape[0])
    if args.json:
        out: dict[str, Any] = {
            "run": str(point.path),
            "at": point.at,
            "iteration": point.iteration,
            "n_train": n_train,
            "threads": torch.get_num_threads(),
            "wall_seconds": round(time.perf_counter() - start, 3),
            **d.to_dict(),
        }
        print(json.dumps(out, indent=1, allow_nan=False))
        return 0
    print("\n".join(_text(point, d, n_train, threads)))
    return 0


def _lr_find_text(report: LRFindReport, png: Path) -> list[str]:
    r = report.result
    stop = f"stopped at lr {r.diverged_at:.3g} (loss > 4× its best)" if r.diverged_at else (
        "ran to lr_max without diverging")  # fmt: skip
    bound = (
        f"{report.bound_at_init:.3g} (λmax(θ₀) = {_g(report.lambda_max_init)} on "
        f"{report.n_examples:,} examples)"
        if report.bound_at_init is not None
        else f"none ({report.bound_note or 'λmax ≤ 0'})"
    )
    return [
        f"swept {len(r.lrs)} steps from lr {r.lrs[0]:.3g} to {r.lrs[-1]:.3g}; {stop}",
        f"suggested lr {r.suggestion:.3g} ({r.method}); lr at the minimum / 10: "
        f"{r.lr_min_over_10:.3g}",
        f"curvature bound at initialization: {bound}",
        f"plot: {png}",
    ]


def cmd_lr_find(args: argparse.Namespace) -> int:
    """Train a fresh model for up to --steps minibatches while the learning rate grows
    geometrically; stop when the smoothed loss exceeds 4x its best; plot lr_find.png
    and suggest a learning rate, next to the stability bound at initialization.
    Dataset, model, optimizer, batch and cost take train's options."""
    threads = _set_threads(getattr(args, "threads", None))
    cfg = resolve(
        preset_name=args.preset, config_file=args.config, overrides=options_from_args(args)
    )
    report = lr_find_config(
        cfg, lr_min=args.lr_min, lr_max=args.lr_max, steps=args.steps, sample=args.sample
    )
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    png = plot_lr_find(
        report.result,
        out_dir / "lr_find.png",
        bound=report.bound_at_init,
        title=f"lr range test: {cfg.model} on {cfg.dataset}, {cfg.optimizer}, "
        f"batch {cfg.batch_size}",
    )
    r = report.result
    if args.json:
        row = {
            "suggested_lr": r.suggestion,
            "lr_at_min": r.lr_at_min,
            "lr_min_over_10": r.lr_min_over_10,
            "diverged_at": r.diverged_at,
            "steps": len(r.lrs),
            "lambda_max_init": report.lambda_max_init,
            "lr_stability_bound_init": report.bound_at_init,
            "n_examples": report.n_examples,
            "plot": str(png),
        }
        print(json.dumps(row, indent=1))
        return 0
    print("\n".join([*_lr_find_text(report, png), f"threads: {threads}"]))
    return 0


def _probes(text: str) -> int:
    """``--trace-probes``: 0 (no trace) or at least 2 (a standard error needs two)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value != 0 and value < 2:
        raise argparse.ArgumentTypeError(f"must be 0 (no trace) or >= 2, got {value}")
    return value


def _sample_arg(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--sample",
        type=parse_sample,
        default=MIN_SAMPLE,
        metavar="N|all",
        help=f"training examples {what} (>= {MIN_SAMPLE}, or 'all' for the whole split; "
        f"default {MIN_SAMPLE}, or the whole split when smaller)",
    )


def register(sub: Any) -> None:
    """Add ``diagnose`` and ``lr-find`` to the CLI's subparsers."""
    p = add_command(
        sub,
        "diagnose",
        cmd_diagnose,
        "curvature, stability bound, §8.2.1 step test and noise scale of a run",
    )
    p.add_argument("run_dir", metavar="RUN_DIR")
    add_flags(p, "--json", json=JSON_HELP)
    p.add_argument(
        "--at",
        choices=("best", "last"),
        default="best",
        help="best: model.safetensors (best validation point); last: the newest checkpoint",
    )
    _sample_arg(p, "the curvature, gradient and noise are computed on")
    p.add_argument(
        "--repeats", type=positive_int, default=1, help="λmax on K independent samples: its spread"
    )
    p.add_argument(
        "--top-k", type=positive_int, default=1, help="how many top eigenvalues (default 1)"
    )
    p.add_argument(
        "--trace-probes",
        type=_probes,
        default=8,
        help="Hutchinson probes for tr H (0: no trace; default 8)",
    )
    p.add_argument(
        "--noise-repeats",
        type=positive_int,
        default=10,
        help="repeats of the noise-scale estimate",
    )
    add_flags(p, "--threads", threads="torch threads (default 1)")

    p = add_command(
        sub,
        "lr-find",
        cmd_lr_find,
        "learning-rate range test from a fresh model, with the curvature bound",
    )
    p.add_argument("--preset", default=None, help="start from a preset (as train)")
    p.add_argument("--config", default=None, help="TOML or JSON file of options (as train)")
    p.add_argument("--out", default=".", help="folder for lr_find.png (default: here)")
    p.add_argument("--lr-min", type=float, default=1e-5, help="first learning rate")
    p.add_argument("--lr-max", type=float, default=10.0, help="last learning rate")
    p.add_argument("--steps", type=int, default=300, help="at most this many steps")
    _sample_arg(p, "λmax at initialization is computed on")
    add_flags(p, "--json", json=JSON_HELP)
    add_train_options(p)  # train's --threads sets the torch threads (default 1)
