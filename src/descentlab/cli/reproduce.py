"""``descentlab reproduce dlt-logreg|dlt-mlp|dlt-lenet``."""

from __future__ import annotations

import argparse
from typing import Any

from descentlab.cli.common import add_command, add_flags
from descentlab.experiments.reproduce import PUBLISHED, run_reproduction


def cmd_reproduce(args: argparse.Namespace) -> int:
    """Train dlt-logreg, dlt-mlp or dlt-lenet exactly as the Deep Learning Tutorials do
    (console lines in the tutorial's format) and write reproduction.md beside the run:
    published vs ours (best validation, test, epoch of the best model, epochs run, wall
    time).  Checkpoints every epoch; --resume continues a killed run."""
    out = args.out or f"runs/reproduce-{args.preset}"
    result, path = run_reproduction(
        args.preset, out, threads=args.threads, resume=args.resume, quiet=args.quiet
    )
    s = result.summary
    print(
        f"descentlab: best validation error {100 * s['best_valid_error']:.6f}% at epoch "
        f"{s['best_epoch']}, test {100 * s['test_error']:.6f}%, {s['epochs_run']} epochs in "
        f"{s['train_seconds']:.1f}s; comparison written to {path}"
    )
    return 0


def register(sub: Any) -> None:
    """Add ``reproduce`` to the CLI's subparsers."""
    p = add_command(
        sub,
        "reproduce",
        cmd_reproduce,
        "run a tutorial preset to the end and compare with the published figures",
    )
    p.add_argument("preset", choices=tuple(PUBLISHED), help="the tutorial preset")
    p.add_argument("--out", default=None, help="run directory (default runs/reproduce-PRESET)")
    add_flags(p, "--threads")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    add_flags(p, "--quiet", quiet="no per-validation lines")
