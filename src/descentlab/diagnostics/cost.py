"""The cost the diagnostics measure, evaluated over a whole split in bounded-memory chunks.

Every diagnostic takes a model, a **cost function** and the data tensors::

    cost(model, x, y) -> scalar Tensor

The contract: the cost is a **mean over the examples of** ``(x, y)`` **plus a term that
does not depend on the data** (a weight penalty).  That is what the trainer minimizes —
``NLL + λ1·Σ|W| + λ2·Σ W²`` — and it is what lets the full-split cost be assembled from
chunks without ever holding the whole graph in memory::

    C(θ) = Σ_c (n_c / N) · cost(model, x_c, y_c)        (Σ_c n_c = N)

since ``Σ_c (n_c/N)(mean_c + P) = mean + P``.  Gradients and Hessian-vector products are
linear in the cost, so they are accumulated with the same weights.

:func:`default_cost` is :meth:`descentlab.objective.Objective.cost` — the one cost the
trainer, the scikit-learn estimator and the fast path minimize — so the diagnostics
measure exactly the cost as trained (a run's ``loss``, ``l1`` and ``l2``).

Diagnostics are taken on the **deterministic** network (:func:`eval_mode`): dropout off,
batch norm using its running statistics.  With either layer present that is not the
exact function a training step differentiates (that one is random, or depends on the
minibatch); it is the function being learned, and the only one with a well-defined
Hessian.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from descentlab.errors import ConfigError, DataError
from descentlab.objective import Objective

__all__ = [
    "CostFn",
    "add_to_params_",
    "check_data",
    "chunks",
    "default_cost",
    "eval_mode",
    "flat_grad",
    "flatten",
    "full_cost",
    "full_gradient",
    "has_stochastic_layers",
    "params_of",
    "sample_rows",
]

_DROPOUT = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)
_BATCH_NORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)

#: ``cost(model, x, y)``: mean over the examples of ``(x, y)`` plus a data-free penalty.
CostFn = Callable[[nn.Module, Tensor, Tensor], Tensor]


def default_cost(loss: str = "nll", l1: float = 0.0, l2: float = 0.0) -> CostFn:
    """The training cost ``loss(model(x), y) + λ1·Σ|W| + λ2·Σ W²`` (weights only).

    This is :meth:`descentlab.objective.Objective.cost` (``loss`` is ``"nll"`` or
    ``"mse"``; λ1, λ2 are checked now rather than mid-diagnosis).  The L1 term is
    piecewise linear, so it adds nothing to the Hessian (away from ``W = 0``); the L2
    term adds ``2·λ2`` on the diagonal of every weight entry.
    """
    return Objective(loss, l1=l1, l2=l2).cost


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in ``eval()`` (dropout off, batch norm on running statistics)
    for the duration, then give each its own previous ``training`` flag back."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, flag in flags:
            module.training = flag


def has_stochastic_layers(model: nn.Module) -> list[str]:
    """Kinds of layer whose train-mode output differs from eval mode (for the report)."""
    kinds = set()
    for m in model.modules():
        if isinstance(m, _DROPOUT) and float(getattr(m, "p", 0.0)) > 0:
            kinds.add("dropout")
        # descentlab's MLP/LeNet apply functional dropout at the rate in ``.dropout``.
        rate = getattr(m, "dropout", None)
        if isinstance(rate, float | int) and not isinstance(rate, bool) and rate > 0:
            kinds.add("dropout")
        if isinstance(m, _BATCH_NORM):
            kinds.add("batch norm")
    return sorted(kinds)


def params_of(model: nn.Module) -> list[Tensor]:
    """The trainable parameters, in ``model.parameters()`` order (the flat-vector order)."""
    params: list[Tensor] = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("the model has no trainable parameters", hint="nothing to diagnose")
    return params


def check_data(x: Tensor, y: Tensor) -> int:
    """Number of examples, or :class:`DataError` if ``x`` and ``y`` disagree or are empty."""
    n = int(x.shape[0])
    if n == 0 or int(y.shape[0]) != n:
        raise DataError(
            f"diagnostics need matching non-empty inputs and labels, got {n} inputs "
            f"and {int(y.shape[0])} labels",
            hint="pass the training split's x and y",
        )
    return n


def sample_rows(x: Tensor, y: Tensor, sample: int | None, seed: int = 0) -> tuple[Tensor, Tensor]:
    """The whole split (``sample=None``) or ``sample`` examples drawn without replacement."""
    n = check_data(x, y)
    if sample is None or sample >= n:
        return x, y
    if sample < 1:
        raise ConfigError(f"sample must be >= 1, got {sample}", hint="or None for all")
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(n, generator=gen)[:sample].to(x.device)
    return x[idx], y[idx]


def chunks(x: Tensor, y: Tensor, chunk_size: int) -> Iterator[tuple[Tensor, Tensor, float]]:
    """``(x_c, y_c, n_c / N)`` for consecutive chunks of at most ``chunk_size`` rows."""
    n = check_data(x, y)
    if chunk_size < 1:
        raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}")
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        yield x[start:stop], y[start:stop], (stop - start) / n


def full_cost(model: nn.Module, cost: CostFn, x: Tensor, y: Tensor, chunk_size: int) -> float:
    """``C(θ)`` over all of ``(x, y)``, without building a graph."""
    total = 0.0
    with torch.no_grad():
        for xc, yc, w in chunks(x, y, chunk_size):
            total += w * float(cost(model, xc, yc))
    return total


def flatten(tensors: Sequence[Tensor | None], like: Sequence[Tensor]) -> Tensor:
    """One flat vector of ``tensors``; a ``None`` (an unused parameter) counts as zeros."""
    return torch.cat(
        [(t if t is not None else torch.zeros_like(p)).reshape(-1) for t, p in zip(tensors, like)]
    )


def add_to_params_(params: Sequence[Tensor], vec: Tensor, alpha: float) -> None:
    """``θ ← θ + α·vec`` for a flat ``vec`` laid out as :func:`flatten` lays it out."""
    with torch.no_grad():
        offset = 0
        for p in params:
            n = p.numel()
            p.add_(vec[offset : offset + n].view_as(p), alpha=alpha)
            offset += n


def flat_grad(
    model: nn.Module, cost: CostFn, x: Tensor, y: Tensor, params: Sequence[Tensor]
) -> Tensor:
    """``∇_θ cost(model, x, y)`` as one flat vector (no chunking: one minibatch)."""
    params = list(params)
    return flatten(torch.autograd.grad(cost(model, x, y), params, allow_unused=True), params)


def full_gradient(
    model: nn.Module,
    cost: CostFn,
    x: Tensor,
    y: Tensor,
    chunk_size: int,
    params: Sequence[Tensor] | None = None,
) -> tuple[Tensor, float]:
    """``(∇C(θ), C(θ))`` over all of ``(x, y)`` as a flat vector and a float."""
    params = list(params) if params is not None else params_of(model)
    total = None
    value = 0.0
    for xc, yc, w in chunks(x, y, chunk_size):
        c = cost(model, xc, yc)
        flat = flatten(torch.autograd.grad(c, params, allow_unused=True), params)
        total = flat * w if total is None else total.add_(flat, alpha=w)
        value += w * float(c.detach())
    assert total is not None  # check_data guarantees at least one chunk
    return total, value
