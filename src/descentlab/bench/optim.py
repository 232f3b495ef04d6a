"""Step time of descentlab's optimizers against torch.optim's own (foreach) implementations.

For every case the two optimizers get identical parameter lists (``n_tensors`` float32
tensors holding ``size`` numbers in all) and identical fixed gradients; their ``step()``
calls are timed interleaved (A, B, B, A, ...) so that drifts of the machine (clock,
caches, other load) hit both sides alike, and the medians are compared::

    rows = run_optim_bench(sizes=(1_000_000,), repeats=20)
    print(format_optim_table(rows))
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

from descentlab.errors import ConfigError, did_you_mean
from descentlab.optim import SGD, AdaDelta, AdaGrad, Adam, RMSProp

OptimizerFactory = Callable[[list[torch.Tensor]], torch.optim.Optimizer]

# label -> (ours, torch's, how torch's is configured); same hyperparameters on both sides.
# Nesterov runs without a closure here, i.e. in the reformulation torch also uses.
CASES: dict[str, tuple[OptimizerFactory, OptimizerFactory, str]] = {
    "sgd": (
        lambda p: SGD(p, lr=0.01),
        lambda p: torch.optim.SGD(p, lr=0.01, foreach=True),
        "SGD(lr=0.01)",
    ),
    "momentum": (
        lambda p: SGD(p, lr=0.01, momentum=0.9),
        lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9, foreach=True),
        "SGD(momentum=0.9)",
    ),
    "nesterov": (
        lambda p: SGD(p, lr=0.01, momentum=0.9, nesterov=True),
        lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9, nesterov=True, foreach=True),
        "SGD(momentum=0.9, nesterov=True)",
    ),
    "adagrad": (
        lambda p: AdaGrad(p, lr=0.01, eps=1e-10),
        lambda p: torch.optim.Adagrad(p, lr=0.01, eps=1e-10, foreach=True),
        "Adagrad(lr=0.01)",
    ),
    "rmsprop": (
        lambda p: RMSProp(p, lr=0.001, rho=0.99, eps=1e-8),
        lambda p: torch.optim.RMSprop(p, lr=0.001, alpha=0.99, eps=1e-8, foreach=True),
        "RMSprop(alpha=0.99)",
    ),
    "rmsprop-momentum": (
        lambda p: RMSProp(p, lr=0.001, rho=0.99, eps=1e-8, momentum=0.9),
        lambda p: torch.optim.RMSprop(
            p, lr=0.001, alpha=0.99, eps=1e-8, momentum=0.9, foreach=True
        ),
        "RMSprop(alpha=0.99, momentum=0.9)",
    ),
    "adam": (
        lambda p: Adam(p, lr=0.001),
        lambda p: torch.optim.Adam(p, lr=0.001, foreach=True),
        "Adam(lr=0.001)",
    ),
    "adadelta": (
        lambda p: AdaDelta(p, rho=0.9),
        lambda p: torch.optim.Adadelta(p, rho=0.9, foreach=True),
        "Adadelta(rho=0.9)",
    ),
}


def _split(size: int, n_tensors: int) -> list[int]:
    """``n_tensors`` sizes of uneven length (like the layers of a network) summing to size."""
    weights = [1.0 + (i % 5) for i in range(n_tensors)]
    total = sum(weights)
    sizes = [max(1, int(size * w / total)) for w in weights]
    sizes[-1] += size - sum(sizes)
    return sizes


def _make_params(
    sizes: Sequence[int], device: torch.device, seed: int
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    params, grads = [], []
    for n in sizes:
        params.append(torch.randn(n, generator=gen).to(device).requires_grad_())
        grads.append(torch.randn(n, generator=gen).mul_(1e-2).to(device))
    return params, grads


def _clone_with_grads(params: list[torch.Tensor], grads: list[torch.Tensor]) -> list[torch.Tensor]:
    out = []
    for p, g in zip(params, grads):
        q = p.detach().clone().requires_grad_()
        q.grad = g.clone()
        out.append(q)
    return out


def _time_step(opt: torch.optim.Optimizer, device: torch.device) -> float:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    opt.step()
    sync()
    return time.perf_counter() - start


def run_optim_bench(
    sizes: Iterable[int] = (1_000_000, 25_000_000),
    n_tensors: int = 50,
    repeats: int = 30,
    warmup: int = 5,
    optimizers: Iterable[str] | None = None,
    *,
    device: str | torch.device = "cpu",
    seed: int = 0,
    threads: int | None = None,
) -> list[dict[str, Any]]:
    """Time one ``step()`` of each descentlab optimizer and its torch.optim counterpart.

    Returns one row per (optimizer, size) with the keys ``optimizer``, ``torch`` (how the
    torch side is configured), ``size``, ``n_tensors``, ``ours_ms``, ``torch_ms`` (medians
    over ``repeats`` interleaved steps after ``warmup`` untimed ones), ``ratio``
    (ours/torch: below 1 means descentlab is faster), ``repeats``, ``device`` and
    ``threads`` (torch's intra-op threads during the run; ``threads=`` sets them for the
    duration of the benchmark, e.g. 1 for steadier timings on a busy machine).
    """
    if threads is None:
        return _run(sizes, n_tensors, repeats, warmup, optimizers, torch.device(device), seed)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"benchmark threads must be an integer >= 1, got {threads!r}")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _run(sizes, n_tensors, repeats, warmup, optimizers, torch.device(device), seed)
    finally:
        torch.set_num_threads(previous)


def _run(
    sizes: Iterable[int],
    n_tensors: int,
    repeats: int,
    warmup: int,
    optimizers: Iterable[str] | None,
    device: torch.device,
    seed: int,
) -> list[dict[str, Any]]:
    names = list(CASES) if optimizers is None else list(optimizers)
    for name in names:
        if name not in CASES:
            raise ConfigError(
                f"unknown benchmark optimizer {name!r}", hint=did_you_mean(name, list(CASES))
            )
    for label, value, low in (
        ("n_tensors", n_tensors, 1),
        ("repeats", repeats, 1),
        ("warmup", warmup, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"benchmark {label} must be an integer >= {low}, got {value!r}")
    rows = []
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, int) or size < n_tensors:
            raise ConfigError(
                f"benchmark size must be an integer >= n_tensors ({n_tensors}), got {size!r}"
            )
        base, grads = _make_params(_split(size, n_tensors), device, seed)
        for name in names:
            ours_factory, torch_factory, torch_label = CASES[name]
            ours = ours_factory(_clone_with_grads(base, grads))
            theirs = torch_factory(_clone_with_grads(base, grads))
            for _ in range(warmup):
                ours.step()
                theirs.step()
            t_ours, t_torch = [], []
            for i in range(repeats):
                # ABBA order: neither side always runs right after the other.
                if i % 2 == 0:
                    t_ours.append(_time_step(ours, device))
                    t_torch.append(_time_step(theirs, device))
                else:
                    t_torch.append(_time_step(theirs, device))
                    t_ours.append(_time_step(ours, device))
            ours_ms = statistics.median(t_ours) * 1e3
            torch_ms = statistics.median(t_torch) * 1e3
            rows.append(
                {
                    "optimizer": name,
                    "torch": f"torch.optim.{torch_label}",
                    "size": size,
                    "n_tensors": n_tensors,
                    "ours_ms": ours_ms,
                    "torch_ms": torch_ms,
                    "ratio": ours_ms / torch_ms,
                    "repeats": repeats,
                    "device": str(device),
                    "threads": torch.get_num_threads(),
                }
            )
            del ours, theirs
        del base, grads
    return rows


def _format_size(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1_000 and n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)


def format_optim_table(rows: Sequence[dict[str, Any]]) -> str:
    """A plain-text table of :func:`run_optim_bench` rows (ratio = ours/torch)."""
    header = ("optimizer", "params", "tensors", "ours ms", "torch ms", "ratio", "torch.optim")
    body = [
        (
            r["optimizer"],
            _format_size(r["size"]),
            str(r["n_tensors"]),
            f"{r['ours_ms']:.3f}",
            f"{r['torch_ms']:.3f}",
            f"{r['ratio']:.2f}",
            r["torch"].removeprefix("torch.optim."),
        )
        for r in rows
    ]
    widths = [
        max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)
    ]
    right = {2, 3, 4, 5}

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    out = [line(header), line(["-" * w for w in widths])]
    out += [line(b) for b in body]
    if rows:
        r = rows[0]
        out.append(
            f"(median of {r['repeats']} interleaved steps, float32 on {r['device']}, "
            f"{r['threads']} thread{'s' if r['threads'] != 1 else ''}; "
            "ratio < 1: descentlab faster)"
        )
    return "\n".join(out)


#: Name used in docs/architecture.md.
bench_optim = run_optim_bench
