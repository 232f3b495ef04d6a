"""Hessian-vector products, eigenvalues and trace against exact answers."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from diag_problems import (
    Quadratic,
    digits,
    least_squares,
    mse_cost,
    quadratic_cost,
    trained_digits_logreg,
)
from torch import nn

from descentlab.diagnostics import (
    HessianOperator,
    default_cost,
    hutchinson_trace,
    lambda_max_power,
    lambda_min_power,
    min_eigenvalue,
    power_iteration,
    top_eigenvalues,
)
from descentlab.errors import ConfigError
from descentlab.models import build_model

# Indefinite, with |λmin| > λmax so that plain power iteration finds λmin.
EIGS = [5.0, 2.0, 1.0, 0.5, 0.25, 0.1, 0.0, -0.3, -8.0]
X0 = torch.zeros(4, 1, dtype=torch.float64)
Y0 = torch.zeros(4, dtype=torch.float64)


def rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def exact_hessian(model: nn.Module, x, y, l2: float) -> torch.Tensor:
    """Float64 Hessian of ``nll(model(x), y) + l2·Σ W²`` over the flat parameters,
    written independently of the diagnostics code (torch.func + autograd.functional)."""
    m = copy.deepcopy(model).double()
    names = [n for n, _ in m.named_parameters()]
    shapes = [p.shape for p in m.parameters()]
    flat0 = torch.cat([p.detach().reshape(-1) for p in m.parameters()])

    def f(flat: torch.Tensor) -> torch.Tensor:
        pieces = torch.split(flat, [math.prod(s) for s in shapes])
        params = {n: t.view(s) for n, t, s in zip(names, pieces, shapes)}
        logits = torch.func.functional_call(m, params, (x.double(),))
        pen = sum(t.square().sum() for t in params.values() if t.dim() >= 2)
        return F.cross_entropy(logits, y) + l2 * pen

    return torch.autograd.functional.hessian(f, flat0, vectorize=True)


def test_quadratic_top_k_and_min_exact():
    model = Quadratic(EIGS)
    op = HessianOperator(model, quadratic_cost, X0, Y0)
    assert op.dim == 9
    top = top_eigenvalues(op, 3, tol=0)
    assert top.converged and top.method == "lanczos"
    for got, want in zip(top.values, [5.0, 2.0, 1.0]):
        assert rel(got, want) < 1e-6
    low = min_eigenvalue(op, tol=0)
    assert rel(low.values[0], -8.0) < 1e-6


def test_power_iteration_finds_largest_magnitude_and_shifts_fix_it():
    op = HessianOperator(Quadratic(EIGS), quadratic_cost, X0, Y0)
    plain = power_iteration(op, iters=500, tol=1e-14)
    assert plain.converged and rel(plain.values[0], -8.0) < 1e-6  # largest |λ|, not λmax
    lmax = lambda_max_power(op, iters=500, tol=1e-14)
    assert rel(lmax.values[0], 5.0) < 1e-6 and lmax.method == "power-shifted"
    lmin = lambda_min_power(op, lmax.values[0], iters=500, tol=1e-14)
    assert rel(lmin.values[0], -8.0) < 1e-6


def test_chunked_least_squares_exact():
    # Hessian XᵀX/N assembled from unequal chunks (50 = 16+16+16+2) must be exact.
    eigs = [9.0, 4.0, 3.0, 1.0, 0.5, 0.01]
    model, x, y = least_squares(eigs, n=50)
    op = HessianOperator(model, mse_cost, x, y, chunk_size=16)
    assert op.n_examples == 50
    dense = op.dense()
    want = torch.tensor(sorted(eigs, reverse=True), dtype=torch.float64)
    got = torch.linalg.eigvalsh(dense).flip(0)
    assert torch.allclose(got, want, rtol=1e-9, atol=1e-12)
    top = top_eigenvalues(op, 2, tol=0)
    assert rel(top.values[0], 9.0) < 1e-6 and rel(top.values[1], 4.0) < 1e-6


def test_sample_uses_stated_number_of_examples():
    model, x, y = least_squares([1.0, 2.0], n=40)
    op = HessianOperator(model, mse_cost, x, y, sample=10, seed=3)
    assert op.n_examples == 10
    with pytest.raises(ConfigError):
        top_eigenvalues(op, 2)  # k must be < dim


def test_dense_matches_exact_hessian_of_small_mlp_with_penalty():
    torch.manual_seed(0)
    x, y = digits()
    x, y = x[:200], y[:200]
    model = build_model("mlp", (64,), 10, hidden=(6,))
    l2 = 1e-3
    op = HessianOperator(
        model, default_cost("nll", l2=l2), x, y, chunk_size=64, dtype=torch.float64
    )
    assert torch.allclose(op.dense(), exact_hessian(model, x, y, l2), rtol=1e-7, atol=1e-10)
    assert next(model.parameters()).dtype == torch.float32  # the float64 copy was a copy


def test_eval_mode_during_products_and_mode_restored():
    torch.manual_seed(0)
    x, y = digits()
    model = build_model("mlp", (64,), 10, hidden=(8,), dropout=0.5, batch_norm=True)
    model.train()
    op = HessianOperator(model, default_cost(), x[:100], y[:100])
    v = torch.randn(op.dim, dtype=torch.float64)
    first, second = op.hvp(v), op.hvp(v)
    assert torch.equal(first, second)  # dropout off: deterministic
    assert all(m.training for m in model.modules())


def test_digits_softmax_lambda_max_within_one_percent_of_exact():
    model, x, y = trained_digits_logreg(l2=1e-4)
    exact = exact_hessian(model, x, y, 1e-4)
    eig = torch.linalg.eigvalsh(exact)
    op = HessianOperator(model, default_cost("nll", l2=1e-4), x, y)  # float32, as trained
    assert op.n_examples == len(y) == 1797
    top = top_eigenvalues(op, 1)
    assert top.converged
    assert rel(top.values[0], float(eig[-1])) < 0.01
    # The model is convex: λmin ≥ 0 up to rounding, and 2·l2 on the weight directions.
    assert float(eig[0]) > -1e-8


def test_hutchinson_within_error_bars_of_exact_trace():
    model, x, y = trained_digits_logreg(l2=1e-4)
    exact = float(torch.trace(exact_hessian(model, x, y, 1e-4)))
    op = HessianOperator(model, default_cost("nll", l2=1e-4), x, y, dtype=torch.float64)
    est = hutchinson_trace(op, 100, seed=1)
    assert est.probes == 100 and len(est.samples) == 100
    assert abs(est.value - exact) <= 3 * est.stderr
    assert 0 < est.stderr < 0.1 * exact  # a real error bar, not a vacuous one


def test_hutchinson_standard_error_is_calibrated():
    # Over many independent estimates, about 95 % land within 2 standard errors.
    model = Quadratic([3.0, -1.0, 2.0, 0.5, 4.0, 1.0, -2.0, 0.2, 1.5])
    op = HessianOperator(model, quadratic_cost, X0, Y0)
    exact = float(torch.trace(model.a))
    hits = 0
    for seed in range(200):
        est = hutchinson_trace(op, 30, seed=seed)
        hits += abs(est.value - exact) <= 2 * est.stderr
    assert 0.88 <= hits / 200 <= 0.99


def test_linear_cost_has_zero_hessian():
    model = nn.Linear(3, 1, bias=False).double()

    def linear(m: nn.Module, x, y):
        return m(x).mean()

    op = HessianOperator(model, linear, torch.randn(5, 3, dtype=torch.float64), torch.zeros(5))
    assert torch.equal(
        op.hvp(torch.ones(3, dtype=torch.float64)), torch.zeros(3, dtype=torch.float64)
    )


def test_cached_graph_gives_the_same_products_and_is_invalidated_by_steps():
    from descentlab.diagnostics import step_test

    torch.manual_seed(0)
    x, y = digits()
    model = build_model("mlp", (64,), 10, hidden=(8,))
    cost = default_cost("nll", l2=1e-3)
    plain = HessianOperator(model, cost, x[:300], y[:300], chunk_size=128)
    cached = HessianOperator(model, cost, x[:300], y[:300], chunk_size=128, cache_graph=True)
    v = torch.randn(plain.dim, dtype=torch.float64)
    want = plain.hvp(v)
    assert torch.allclose(cached.hvp(v), want, rtol=1e-5, atol=1e-7)
    assert torch.allclose(cached.hvp(v), want, rtol=1e-5, atol=1e-7)  # reused graph
    step_test(cached, 0.5)  # moves θ and back, then drops the cache
    assert torch.allclose(cached.hvp(v), want, rtol=1e-5, atol=1e-7)
    with torch.no_grad():
        next(model.parameters()).mul_(2.0)  # changed in place, cache not invalidated
    with pytest.raises(RuntimeError):
        cached.hvp(v)
    cached.invalidate()
    assert torch.allclose(cached.hvp(v), plain.hvp(v), rtol=1e-5, atol=1e-7)
