"""Hessian-vector products of the training cost, and the eigenvalues and trace they give.

The Hessian of a 400k-parameter network has 1.6·10¹¹ entries; it is never formed.  What
is cheap is its product with a vector, by differentiating twice (Pearlmutter 1994)::

    H v = ∇_θ ( ∇_θ C(θ) · v )                    (v held constant)

one backward pass with ``create_graph=True`` and a second one through it, about the
cost of two to three gradient evaluations.  :class:`HessianOperator` evaluates it over
the whole split (or a stated sample) in chunks, weighted as in
:mod:`descentlab.diagnostics.cost`, so memory is bounded by the chunk size.

From products alone:

* **Top-k eigenvalues** — Lanczos (ARPACK's implicitly restarted Lanczos through
  :func:`scipy.sparse.linalg.eigsh`, ``which="LA"``), typically a few dozen products.
* **The most negative eigenvalue** — the same on the shifted operator ``λmax·I − H``,
  whose top eigenvalue is ``λmax − λmin`` (see :func:`min_eigenvalue` for why not
  ``which="SA"``).
* **Power iteration** (:func:`power_iteration`) — the fallback.  It converges to the
  eigenvalue of largest *magnitude*, which is λmax only when ``λmax ≥ |λmin|``; shifted by
  ``s`` (iterating on ``H − sI``) it finds the eigenvalue farthest from ``s``, so a shift
  of ``λmax`` gives λmin (:func:`lambda_max_power`, :func:`lambda_min_power`).
* **Trace** — Hutchinson's estimator ``tr H = E[zᵀHz]`` for ``z`` with independent ±1
  entries (Hutchinson 1990), averaged over probes, with its standard error.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from descentlab.diagnostics.cost import (
    CostFn,
    chunks,
    eval_mode,
    flatten,
    full_gradient,
    params_of,
    sample_rows,
)
from descentlab.errors import ConfigError

if TYPE_CHECKING:
    from scipy.sparse.linalg import LinearOperator

# scipy.sparse.linalg is imported where the Lanczos solver runs: it takes a fifth of a
# second to load, and every `descentlab` command loads this module (the --diagnostics
# option's callback is registered from it).

__all__ = [
    "EigenResult",
    "HessianOperator",
    "TraceEstimate",
    "hutchinson_trace",
    "lambda_max_power",
    "lambda_min_power",
    "min_eigenvalue",
    "power_iteration",
    "top_eigenvalues",
]


# One chunk's gradient tensors (``None`` for an unused parameter) and its weight n_c/N.
_Grads = tuple[tuple[Tensor | None, ...], float]


class HessianOperator:
    """``v ↦ H v`` for the Hessian of ``C(θ)`` over ``(x, y)`` at the model's parameters.

    Parameters
    ----------
    model, cost, x, y:
        The model (its trainable parameters, flattened in ``model.parameters()`` order,
        are θ), the cost function and the data.
    chunk_size:
        Rows per forward/backward pass; bounds memory, not the result.
    sample:
        Use this many examples drawn without replacement (seeded by ``seed``) instead
        of all of ``(x, y)``; :attr:`n_examples` records how many were used.
    dtype:
        Evaluate in this floating dtype on a *copy* of the model (``torch.float64`` for
        exactness checks); ``None`` uses the model as it is.
    cache_graph:
        Build each chunk's first-order graph (forward pass and ``create_graph``
        backward) once and keep it, so every product is a single extra backward pass:
        about twice as fast, at the memory of one forward and backward over *all* the
        examples at once.  The cache is tied to the current parameters; call
        :meth:`invalidate` after changing them (changing them in place and forgetting
        makes autograd raise, not return stale numbers).

    The model is put in eval mode during each product and given its mode back after.
    :attr:`matvecs` counts the products taken.
    """

    def __init__(
        self,
        model: nn.Module,
        cost: CostFn,
        x: Tensor,
        y: Tensor,
        *,
        chunk_size: int = 1024,
        sample: int | None = None,
        seed: int = 0,
        dtype: torch.dtype | None = None,
        cache_graph: bool = False,
    ) -> None:
        x, y = sample_rows(x, y, sample, seed)
        if dtype is not None:
            if not dtype.is_floating_point:
                raise ConfigError(f"dtype must be a floating type, got {dtype}")
            model = copy.deepcopy(model).to(dtype)
            x = x.to(dtype) if x.is_floating_point() else x
        if chunk_size < 1:
            raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}")
        self.model, self.cost, self.x, self.y = model, cost, x, y
        self.chunk_size = chunk_size
        self.params = params_of(model)
        self.dim = sum(p.numel() for p in self.params)
        self.n_examples = int(x.shape[0])
        self.matvecs = 0
        self.cache_graph = cache_graph
        self._cache: list[_Grads] | None = None

    @property
    def dtype(self) -> torch.dtype:
        return self.params[0].dtype

    def hvp(self, v: Tensor) -> Tensor:
        """``H v`` for a flat vector ``v`` of length :attr:`dim` (returned in ``v``'s dtype)."""
        if v.shape != (self.dim,):
            raise ConfigError(f"vector of shape {tuple(v.shape)} for a {self.dim}-dim Hessian")
        out_dtype = v.dtype
        v = v.to(device=self.params[0].device, dtype=self.dtype)
        pieces = list(torch.split(v, [p.numel() for p in self.params]))
        vs = [piece.view_as(p) for piece, p in zip(pieces, self.params)]
        total = torch.zeros_like(v)
        with eval_mode(self.model):
            for grads, w in self._first_order():
                dot = sum(
                    ((g * vi).sum() for g, vi in zip(grads, vs) if g is not None),
                    start=v.new_zeros(()),
                )
                if not dot.requires_grad:  # cost linear in θ: H = 0
                    continue
                hv = torch.autograd.grad(
                    dot, self.params, allow_unused=True, retain_graph=self.cache_graph
                )
                total.add_(flatten(hv, self.params), alpha=w)
        self.matvecs += 1
        return total.to(out_dtype)

    def _first_order(self) -> Iterator[_Grads]:
        """``(∇cost(chunk) with its graph, n_c/N)`` per chunk, from the cache if kept."""
        if self._cache is not None:
            yield from self._cache
            return
        built: list[_Grads] = []
        for xc, yc, w in chunks(self.x, self.y, self.chunk_size):
            c = self.cost(self.model, xc, yc)
            grads = torch.autograd.grad(c, self.params, create_graph=True, allow_unused=True)
            if self.cache_graph:
                built.append((grads, w))
            yield grads, w
        if self.cache_graph:
            self._cache = built

    def invalidate(self) -> None:
        """Drop the cached graph (after the parameters changed)."""
        self._cache = None

    def gradient(self) -> tuple[Tensor, float]:
        """``(∇C(θ), C(θ))`` over the same examples, in eval mode."""
        with eval_mode(self.model):
            return full_gradient(
                self.model, self.cost, self.x, self.y, self.chunk_size, self.params
            )

    def matvec(self, v: np.ndarray) -> np.ndarray:
        """``H v`` on float64 numpy vectors (what SciPy's solvers call)."""
        out = self.hvp(torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64).ravel()))
        return out.cpu().numpy()

    def linear_operator(self) -> LinearOperator:
        """The Hessian as a SciPy :class:`~scipy.sparse.linalg.LinearOperator`."""
        from scipy.sparse.linalg import LinearOperator

        return LinearOperator((self.dim, self.dim), matvec=self.matvec, dtype=np.float64)

    def dense(self) -> Tensor:
        """The full Hessian, one product per column (tests and tiny models only)."""
        eye = torch.eye(self.dim, dtype=torch.float64)
        return torch.stack([self.hvp(eye[i]) for i in range(self.dim)], dim=1)


@dataclass(frozen=True)
class EigenResult:
    """Eigenvalue estimates: ``values`` (descending), how they were found, and the cost."""

    values: list[float]
    method: str  # "lanczos", "lanczos-shifted" (λmin), "power" or "power-shifted"
    matvecs: int
    converged: bool
    seconds: float


def _start_vector(dim: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(dim)


def _lanczos(
    op: HessianOperator,
    k: int,
    tol: float,
    maxiter: int | None,
    seed: int,
    shift: float | None = None,
) -> EigenResult:
    """Top-k of ``H`` (``shift=None``) or of ``sI − H``, mapped back to ``s − μ``."""
    if not 1 <= k < op.dim:
        raise ConfigError(
            f"k must be between 1 and {op.dim - 1} for a {op.dim}-parameter model, got {k}",
            hint="ARPACK needs k < number of parameters; use dense() for tiny models",
        )
    from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

    start, before = time.perf_counter(), op.matvecs
    converged = True
    linop = op.linear_operator()
    if shift is not None:
        s = float(shift)
        linop = LinearOperator(
            linop.shape, matvec=lambda v: s * np.ravel(v) - op.matvec(v), dtype=np.float64
        )
    try:
        vals = eigsh(
            linop,
            k=k,
            which="LA",
            tol=tol,
            maxiter=maxiter,
            v0=_start_vector(op.dim, seed),
            return_eigenvectors=False,
        )
    except ArpackNoConvergence as err:  # keep whatever did converge
        vals, converged = np.asarray(err.eigenvalues), False
    values = [float(v) for v in np.real(vals)]
    if shift is not None:
        values = [shift - v for v in values]
    method = "lanczos" if shift is None else "lanczos-shifted"
    return EigenResult(
        sorted(values, reverse=True),
        method,
        op.matvecs - before,
        converged,
        time.perf_counter() - start,
    )


def top_eigenvalues(
    op: HessianOperator,
    k: int = 1,
    *,
    tol: float = 1e-4,
    maxiter: int | None = None,
    seed: int = 0,
) -> EigenResult:
    """The ``k`` largest (most positive) eigenvalues of the Hessian, by Lanczos.

    ``tol`` is ARPACK's relative accuracy of each eigenvalue (0 = machine precision);
    ``maxiter`` caps its restarts.  If ARPACK stops short, the eigenvalues that did
    converge are returned with ``converged=False``.
    """
    return _lanczos(op, k, tol, maxiter, seed)


def min_eigenvalue(
    op: HessianOperator,
    *,
    lambda_max: float | None = None,
    tol: float = 1e-3,
    maxiter: int | None = None,
    seed: int = 0,
) -> EigenResult:
    """The most negative (smallest algebraic) eigenvalue λmin, by Lanczos on ``λmax·I − H``.

    A negative value is a direction of negative curvature (§8.2.3: the point is not a
    minimum).  Why the shift: ARPACK's test is *relative* (``‖r‖ ≤ tol·|μ|``), and a
    network's λmin usually sits in a dense cluster near 0, so asking ``which="SA"`` for it
    directly asks for near-absolute precision and can take thousands of products
    (measured: 1,581 on digits softmax regression).  The top eigenvalue of
    ``λmax·I − H`` is ``λmax − λmin``, of the scale of λmax, so the same ``tol`` gives
    λmin to within about ``tol·λmax`` — the accuracy that matters next to λmax.
    ``lambda_max`` is computed first (and its products counted) when not given.
    """
    matvecs, seconds = 0, 0.0
    if lambda_max is None:
        top = top_eigenvalues(op, 1, tol=tol, maxiter=maxiter, seed=seed)
        if not top.values:
            return EigenResult([], "lanczos-shifted", top.matvecs, False, top.seconds)
        lambda_max, matvecs, seconds = top.values[0], top.matvecs, top.seconds
    # A shift slightly above λmax keeps sI − H positive semi-definite even when λmax
    # is a slight underestimate, so its top eigenvalue is the one we want.
    shift = lambda_max + abs(lambda_max) * 1e-3
    low = _lanczos(op, 1, tol, maxiter, seed + 1, shift=shift)
    return EigenResult(
        low.values, low.method, low.matvecs + matvecs, low.converged, low.seconds + seconds
    )


def power_iteration(
    op: HessianOperator,
    *,
    shift: float = 0.0,
    iters: int = 200,
    tol: float = 1e-6,
    seed: int = 0,
) -> EigenResult:
    """The eigenvalue of ``H`` **farthest from** ``shift``, by power iteration on ``H − sI``.

    With ``shift = 0`` that is the eigenvalue of largest magnitude — λmax only if
    ``λmax ≥ |λmin|``.  Iterates ``v ← (H − sI)v / ‖·‖`` and stops when the Rayleigh
    quotient ``vᵀHv`` changes by less than ``tol`` relative, or after ``iters``
    products.  Convergence is linear with rate ``|μ₂/μ₁|`` (the two largest magnitudes
    of ``H − sI``), so it is slow when they are close: prefer :func:`top_eigenvalues`.
    """
    start, before = time.perf_counter(), op.matvecs
    v = torch.from_numpy(_start_vector(op.dim, seed))
    v /= v.norm()
    value, converged = math.nan, False
    for _ in range(iters):
        hv = op.hvp(v)
        rayleigh = float(v @ hv)
        w = hv - shift * v
        norm = float(w.norm())
        if norm == 0.0 or not math.isfinite(norm):  # v is an eigenvector of eigenvalue s
            value, converged = rayleigh, norm == 0.0
            break
        if abs(rayleigh - value) <= tol * max(abs(rayleigh), 1e-30):
            value, converged = rayleigh, True
            break
        value, v = rayleigh, w / norm
    method = "power-shifted" if shift else "power"
    return EigenResult([value], method, op.matvecs - before, converged, time.perf_counter() - start)


def lambda_max_power(
    op: HessianOperator, *, iters: int = 200, tol: float = 1e-6, seed: int = 0
) -> EigenResult:
    """λmax by power iteration: unshifted, then — if that found a negative eigenvalue
    (``|λmin| > λmax``) — shifted by it, which makes λmax the farthest eigenvalue."""
    first = power_iteration(op, iters=iters, tol=tol, seed=seed)
    if first.values[0] >= 0 or not math.isfinite(first.values[0]):
        return first
    second = power_iteration(op, shift=first.values[0], iters=iters, tol=tol, seed=seed)
    return EigenResult(
        second.values,
        second.method,
        first.matvecs + second.matvecs,
        second.converged,
        first.seconds + second.seconds,
    )


def lambda_min_power(
    op: HessianOperator,
    lambda_max: float,
    *,
    iters: int = 200,
    tol: float = 1e-6,
    seed: int = 0,
) -> EigenResult:
    """λmin by power iteration shifted by ``lambda_max``: every eigenvalue is ≤ λmax, so
    the one farthest from it is the smallest."""
    return power_iteration(op, shift=lambda_max, iters=iters, tol=tol, seed=seed)


@dataclass(frozen=True)
class TraceEstimate:
    """Hutchinson's ``tr H`` estimate: mean of ``zᵀHz`` over probes and its standard error."""

    value: float
    stderr: float
    probes: int
    samples: list[float]


def hutchinson_trace(op: HessianOperator, probes: int = 64, *, seed: int = 0) -> TraceEstimate:
    """``tr H ≈ (1/m) Σ_j z_jᵀ H z_j`` with Rademacher probes ``z_j`` (entries ±1).

    Unbiased; its variance per probe is ``2(‖H‖_F² − Σ_i H_ii²)`` (Hutchinson 1990), so
    the standard error ``s/√m`` (``s`` the sample standard deviation over probes) shrinks
    as ``1/√m``.  Needs ``probes >= 2`` for an error bar.
    """
    if probes < 2:
        raise ConfigError(f"probes must be >= 2 for a standard error, got {probes}")
    gen = torch.Generator().manual_seed(seed)
    samples = []
    for _ in range(probes):
        z = torch.randint(0, 2, (op.dim,), generator=gen, dtype=torch.float64) * 2 - 1
        samples.append(float(z @ op.hvp(z)))
    arr = np.asarray(samples)
    return TraceEstimate(
        float(arr.mean()), float(arr.std(ddof=1) / math.sqrt(probes)), probes, samples
    )
