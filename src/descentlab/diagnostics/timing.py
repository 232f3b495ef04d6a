"""Time the curvature diagnostics on the tutorial MLP (784-500-10 tanh, 397,510 parameters).

::

    python -m descentlab.diagnostics.timing --threads 2 [--examples 4096] [--cache-graph]
        [--all]

Random initialization; MNIST training images when ``DESCENTLAB_DATA`` holds them (else
standard-normal inputs with random labels).  Prints one JSON object: wall and CPU
seconds of λmax (and, with ``--all``, of a whole :func:`diagnose`: λmax, λmin, step test,
noise scale), the number of Hessian-vector products, and the peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from typing import Any

import torch
from torch import Tensor

from descentlab.data import load_dataset
from descentlab.diagnostics.cost import default_cost
from descentlab.diagnostics.hessian import HessianOperator, top_eigenvalues
from descentlab.diagnostics.report import DiagnoseOptions, diagnose
from descentlab.diagnostics.stability import StepRule
from descentlab.errors import DescentlabError
from descentlab.models import build_model

__all__ = ["main", "tutorial_data"]


def tutorial_data(n: int, seed: int = 0) -> tuple[Tensor, Tensor, str]:
    """``n`` MNIST training examples if ``DESCENTLAB_DATA`` has them, else random ones."""
    if os.environ.get("DESCENTLAB_DATA"):
        try:
            data = load_dataset("mnist", offline=True, subset=n, quiet=True)
            return data.train.x[:n], data.train.y[:n], "mnist"
        except DescentlabError:
            pass  # fall back to random inputs, and say so in the output
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 28, 28, generator=gen)
    return x, torch.randint(0, 10, (n,), generator=gen), "random-normal"


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m descentlab.diagnostics.timing")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--examples", type=int, default=4096)
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--cache-graph", action="store_true")
    parser.add_argument("--all", action="store_true", help="also time a whole diagnose()")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x, y, source = tutorial_data(args.examples)
    model = build_model("mlp", (1, 28, 28), 10, hidden=(500,), activation="tanh")
    cost = default_cost("nll")
    op = HessianOperator(
        model, cost, x, y, chunk_size=args.chunk_size, cache_graph=args.cache_graph
    )
    wall, cpu = time.perf_counter(), _cpu_seconds()
    top = top_eigenvalues(op, 1, tol=args.tol)
    out: dict[str, Any] = {
        "data": source,
        "examples": op.n_examples,
        "parameters": op.dim,
        "threads": torch.get_num_threads(),
        "cache_graph": args.cache_graph,
        "lambda_max": top.values[0] if top.values else None,
        "lambda_max_matvecs": top.matvecs,
        "lambda_max_wall_s": round(time.perf_counter() - wall, 2),
        "lambda_max_cpu_s": round(_cpu_seconds() - cpu, 2),
    }
    if args.all:
        opts = DiagnoseOptions(
            tol=args.tol, chunk_size=args.chunk_size, cache_graph=args.cache_graph
        )
        wall, cpu = time.perf_counter(), _cpu_seconds()
        d = diagnose(model, x, y, cost=cost, rule=StepRule("sgd", 0.01), options=opts)
        out["diagnose_wall_s"] = round(time.perf_counter() - wall, 2)
        out["diagnose_cpu_s"] = round(_cpu_seconds() - cpu, 2)
        out["diagnose_matvecs"] = d.matvecs
        out["diagnose"] = d.to_dict()
    out["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out["load_average"] = list(os.getloadavg())
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
