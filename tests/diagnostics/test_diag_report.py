"""diagnose() and its record, and the edge-of-stability helper."""

from __future__ import annotations

import json
import math
import statistics

import pytest
import torch
from diag_problems import digits, least_squares, mse_cost, trained_digits_logreg

from descentlab.diagnostics import (
    DiagnoseOptions,
    HessianOperator,
    StepRule,
    default_cost,
    diagnose,
    edge_of_stability,
    top_eigenvalues,
)
from descentlab.errors import ConfigError, DivergenceError
from descentlab.models import build_model
from descentlab.optim import SGD, Adam

REQUIRED = (
    "lambda_max",
    "lambda_min",
    "lr",
    "lr_stability_bound",
    "noise_scale",
    "critical_batch",
    "n_examples",
    "trace",
)


def test_diagnose_record_agrees_with_its_parts():
    model, x, y = trained_digits_logreg(l2=1e-4)
    cost = default_cost("nll", l2=1e-4)
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    opts = DiagnoseOptions(top_k=2, trace_probes=10, noise_batches=(16, 256), noise_repeats=4)
    d = diagnose(model, x, y, cost=cost, rule=opt, options=opts)
    record = json.loads(d.to_json())
    assert all(k in record for k in REQUIRED)
    assert record["n_examples"] == 1797 and record["n_parameters"] == 650
    assert record["optimizer"] == "momentum" and record["lr"] == 0.1
    lam = top_eigenvalues(HessianOperator(model, cost, x, y)).values[0]
    assert d.lambda_max == pytest.approx(lam, rel=1e-3)
    assert len(d.top_eigenvalues or []) == 2
    assert d.lr_stability_bound == pytest.approx(2 * 1.9 / d.lambda_max)
    assert d.bound_formula == "2(1+α)/λmax"
    # Convex problem: λmin ≈ 0 to within the tolerance relative to λmax (1e-3).
    assert d.lambda_min is not None and abs(d.lambda_min) < 2e-3 * d.lambda_max
    assert d.trace is not None and d.trace_stderr is not None and d.trace > 0
    assert d.noise_scale is not None and d.noise_scale == d.critical_batch
    assert d.step_ratio is not None and d.step_ratio < 1  # lr 0.1 ≪ 2/λmax
    assert d.grad_norm is not None and d.grad_norm > 0
    assert d.noise_batches == [16, 256] and d.noise_repeats == 4
    assert d.matvecs > 0 and set(d.seconds) >= {"lambda_max", "lambda_min", "trace"}


def test_diagnose_without_rule_and_with_adaptive_rule():
    x, y = digits()
    torch.manual_seed(0)
    model = build_model("mlp", (64,), 10, hidden=(8,), dropout=0.2, batch_norm=True)
    opts = DiagnoseOptions(lambda_min=False, noise_batches=None)
    d = diagnose(model, x[:300], y[:300], options=opts)
    assert d.lr is None and d.lr_stability_bound is None and d.step_ratio is None
    assert d.noise_scale is None and d.lambda_min is None and d.trace is None
    assert "dropout off" in d.eval_mode_note and "batch norm" in d.eval_mode_note
    assert model.training  # mode given back
    adam = Adam(model.parameters(), lr=1e-3)
    d = diagnose(model, x[:300], y[:300], rule=adam, options=opts)
    assert d.lr_stability_bound is None and d.bound_note and "P⁻¹H" in d.bound_note
    assert json.loads(d.to_json())["lr_stability_bound"] is None
    with pytest.raises(ConfigError):
        diagnose(model, x, y, rule="sgd", options=opts)  # type: ignore[arg-type]


def test_sample_size_is_reported():
    x, y = digits()
    model = build_model("logreg", (64,), 10)
    opts = DiagnoseOptions(sample=500, lambda_min=False, noise_batches=None)
    d = diagnose(model, x, y, rule=StepRule("sgd", 0.1), options=opts)
    assert d.n_examples == 500


def test_non_finite_values_become_null_in_json():
    from descentlab.diagnostics import Diagnostics

    d = Diagnostics(10, 3, 0.1, "sgd", lambda_max=math.nan, noise_scale=math.inf)
    record = json.loads(d.to_json())
    assert record["lambda_max"] is None and record["noise_scale"] is None


def test_edge_of_stability_on_least_squares_matches_closed_form():
    # Constant Hessian: λmax is the same at every measurement, and GD's cost follows
    # C_t − C* = Σ_i ½λ_i c_i² (1 − ελ_i)^{2t} exactly.
    eigs = [2.0, 0.5, 0.1]
    model, x, y = least_squares(eigs, n=30)
    series = edge_of_stability(model, mse_cost, x, y, lr=0.6, steps=25, every=10, tol=0)
    assert series.steps == [0, 10, 20, 25] and series.threshold == pytest.approx(2 / 0.6)
    assert all(v == pytest.approx(2.0, rel=1e-8) for v in series.lambda_max)
    assert series.fraction_of_threshold()[0] == pytest.approx(0.6)
    h = x.T @ x / len(y)
    w_opt = torch.linalg.solve(h, x.T @ y / len(y))
    c_star = float(0.5 * (x @ w_opt - y).square().mean())
    lam, vecs = torch.linalg.eigh(h)
    c = vecs.T @ (model.weight.detach().squeeze(0) - w_opt)
    for t in (0, 7, 24):
        want = c_star + float((0.5 * lam * c.square() * (1 - 0.6 * lam) ** (2 * t)).sum())
        assert series.losses[t] == pytest.approx(want, rel=1e-9)
    assert series.loss_steps == list(range(25))


def test_edge_of_stability_diverges_loudly_and_leaves_model_alone():
    model, x, y = least_squares([2.0, 0.5], n=20)
    before = model.weight.detach().clone()
    with pytest.raises(DivergenceError):
        edge_of_stability(model, mse_cost, x, y, lr=5.0, steps=2000, every=1000)
    assert torch.equal(model.weight.detach(), before)


def test_repeats_report_the_spread_over_samples():
    x, y = digits()
    model = build_model("logreg", (64,), 10)
    opts = DiagnoseOptions(sample=400, repeats=3, lambda_min=False, noise_batches=None)
    d = diagnose(model, x, y, options=opts)
    samples = d.lambda_max_samples or []
    assert len(samples) == 3 and samples[0] == d.lambda_max
    assert len(set(samples)) == 3  # different samples, different curvature
    assert d.lambda_max_spread == pytest.approx(statistics.stdev(samples))
    with pytest.raises(ConfigError, match="sample"):
        diagnose(model, x, y, options=DiagnoseOptions(repeats=2))
