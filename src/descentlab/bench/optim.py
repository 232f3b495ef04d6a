"""Step time of descentlab's optimizers against torch.optim's foreach and fused ones.

For every case the optimizers (ours, torch's ``foreach=True`` and, where torch has one,
its ``fused=True``) get identical parameter lists (``n_tensors`` float32 tensors holding
``size`` numbers in all) and identical fixed gradients; their ``step()`` calls are timed
interleaved in rotating order so that drifts of the machine (clock, caches, other load)
hit all sides alike, in rounds that build the sides afresh in rotated order (where a
side's tensors lie in memory matters too), and the medians are compared::

    rows = run_optim_bench(sizes=(1_000_000,), repeats=20)
    print(format_optim_table(rows))
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import torch

from descentlab.bench.timing import check_counts
from descentlab.errors import ConfigError, did_you_mean
from descentlab.optim import SGD, AdaDelta, AdaGrad, Adam, RMSProp

OptimizerFactory = Callable[[list[torch.Tensor]], torch.optim.Optimizer]


class Case(NamedTuple):
    """One benchmark row: ours, torch's foreach optimizer, its label, torch's fused one."""

    ours: OptimizerFactory
    torch_foreach: OptimizerFactory
    label: str
    torch_fused: OptimizerFactory | None = None


def _torch(cls: Any, **kw: Any) -> tuple[OptimizerFactory, OptimizerFactory]:
    """torch's optimizer with ``foreach=True`` and with ``fused=True``."""
    return (lambda p: cls(p, foreach=True, **kw)), (lambda p: cls(p, fused=True, **kw))


_SGD = _torch(torch.optim.SGD, lr=0.01)
_MOMENTUM = _torch(torch.optim.SGD, lr=0.01, momentum=0.9)
_NESTEROV = _torch(torch.optim.SGD, lr=0.01, momentum=0.9, nesterov=True)
_ADAGRAD = _torch(torch.optim.Adagrad, lr=0.01, eps=1e-10)
_ADAM = _torch(torch.optim.Adam, lr=0.001)

# label -> Case; same hyperparameters on every side. Nesterov runs without a closure here,
# i.e. in the reformulation torch also uses. torch has fused kernels for SGD, Adagrad and
# Adam (not RMSprop, Adadelta); the ``-fused`` rows run our ``fused=True`` update.
CASES: dict[str, Case] = {
    "sgd": Case(lambda p: SGD(p, lr=0.01), _SGD[0], "SGD(lr=0.01)", _SGD[1]),
    "momentum": Case(
        lambda p: SGD(p, lr=0.01, momentum=0.9), _MOMENTUM[0], "SGD(momentum=0.9)", _MOMENTUM[1]
    ),
    "momentum-fused": Case(
        lambda p: SGD(p, lr=0.01, momentum=0.9, fused=True),
        _MOMENTUM[0],
        "SGD(momentum=0.9)",
        _MOMENTUM[1],
    ),
    "nesterov": Case(
        lambda p: SGD(p, lr=0.01, momentum=0.9, nesterov=True),
        _NESTEROV[0],
        "SGD(momentum=0.9, nesterov=True)",
        _NESTEROV[1],
    ),
    "adagrad": Case(
        lambda p: AdaGrad(p, lr=0.01, eps=1e-10), _ADAGRAD[0], "Adagrad(lr=0.01)", _ADAGRAD[1]
    ),
    "adagrad-fused": Case(
        lambda p: AdaGrad(p, lr=0.01, eps=1e-10, fused=True),
        _ADAGRAD[0],
        "Adagrad(lr=0.01)",
        _ADAGRAD[1],
    ),
    "rmsprop": Case(
        lambda p: RMSProp(p, lr=0.001, rho=0.99, eps=1e-8),
        lambda p: torch.optim.RMSprop(p, lr=0.001, alpha=0.99, eps=1e-8, foreach=True),
        "RMSprop(alpha=0.99)",
    ),
    "rmsprop-fused": Case(
        lambda p: RMSProp(p, lr=0.001, rho=0.99, eps=1e-8, fused=True),
        lambda p: torch.optim.RMSprop(p, lr=0.001, alpha=0.99, eps=1e-8, foreach=True),
        "RMSprop(alpha=0.99)",
    ),
    "rmsprop-momentum": Case(
        lambda p: RMSProp(p, lr=0.001, rho=0.99, eps=1e-8, momentum=0.9),
        lambda p: torch.optim.RMSprop(
            p, lr=0.001, alpha=0.99, eps=1e-8, momentum=0.9, foreach=True
        ),
        "RMSprop(alpha=0.99, momentum=0.9)",
    ),
    "adam": Case(lambda p: Adam(p, lr=0.001), _ADAM[0], "Adam(lr=0.001)", _ADAM[1]),
    "adam-fused": Case(
        lambda p: Adam(p, lr=0.001, fused=True), _ADAM[0], "Adam(lr=0.001)", _ADAM[1]
    ),
    "adadelta": Case(
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
    check_counts(("n_tensors", n_tensors, 1), ("repeats", repeats, 1), ("warmup", warmup, 0))
    rows = []
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, int) or size < n_tensors:
            raise ConfigError(
                f"benchmark size must be an integer >= n_tensors ({n_tensors}), got {size!r}"
            )
        base, grads = _make_params(_split(size, n_tensors), device, seed)
        for name in names:
            rows.append(_time_case(name, base, grads, device, repeats, warmup))
            rows[-1].update(size=size, n_tensors=n_tensors)
        del base, grads
    return rows


def _time_case(
    name: str,
    base: list[torch.Tensor],
    grads: list[torch.Tensor],
    device: torch.device,
    repeats: int,
    warmup: int,
) -> dict[str, Any]:
    """Median step times of ours, torch's foreach and (if any) torch's fused optimizer."""
    case = CASES[name]
    sides = [case.ours, case.torch_foreach] + ([case.torch_fused] if case.torch_fused else [])
    times: list[list[float]] = [[] for _ in sides]
    # Where a side's tensors land in memory matters by a few per cent (a side compared
    # with an identical copy of itself, the first one built measured up to 6 % slower):
    # each round builds all sides afresh, in an order rotated by one, and the timings of
    # all rounds are pooled.
    rounds = min(len(sides), repeats)
    for r in range(rounds):
        per_round = repeats // rounds + (r < repeats % rounds)
        build = list(range(r, len(sides))) + list(range(r))
        opts: list[Any] = [None] * len(sides)
        for j in build:
            opts[j] = sides[j](_clone_with_grads(base, grads))
        for _ in range(warmup):
            for opt in opts:
                opt.step()
        for i in range(per_round):
            # Rotate the order: no side always runs right after the same other one.
            order = build[i % len(build) :] + build[: i % len(build)]
            for j in order if i % 2 == 0 else order[::-1]:
                times[j].append(_time_step(opts[j], device))
        del opts
    ms = [statistics.median(t) * 1e3 for t in times]
    fused_ms = ms[2] if len(ms) > 2 else None
    return {
        "optimizer": name,
        "torch": f"torch.optim.{case.label}",
        "ours_ms": ms[0],
        "torch_ms": ms[1],
        "ratio": ms[0] / ms[1],
        "torch_fused_ms": fused_ms,
        "ratio_fused": None if fused_ms is None else ms[0] / fused_ms,
        "repeats": repeats,
        "device": str(device),
        "threads": torch.get_num_threads(),
    }


def _format_size(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1_000 and n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)


def format_optim_table(rows: Sequence[dict[str, Any]]) -> str:
    """A plain-text table of :func:`run_optim_bench` rows (ratio = ours/torch)."""
    header: tuple[str, ...] = ("optimizer", "params", "tensors", "ours ms", "foreach ms")
    header += ("ratio", "fused ms", "vs fused", "torch.optim")
    body = [
        (
            r["optimizer"],
            _format_size(r["size"]),
            str(r["n_tensors"]),
            f"{r['ours_ms']:.3f}",
            f"{r['torch_ms']:.3f}",
            f"{r['ratio']:.2f}",
            "–" if r.get("torch_fused_ms") is None else f"{r['torch_fused_ms']:.3f}",
            "–" if r.get("ratio_fused") is None else f"{r['ratio_fused']:.2f}",
            r["torch"].removeprefix("torch.optim."),
        )
        for r in rows
    ]
    widths = [
        max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)
    ]
    right = {2, 3, 4, 5, 6, 7}

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
            "ratio: ours / torch foreach, vs fused: ours / torch fused=True; "
            "< 1: descentlab faster)"
        )
    return "\n".join(out)


#: Name used in docs/architecture.md.
bench_optim = run_optim_bench
