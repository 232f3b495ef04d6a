"""Gradient noise scale against a problem whose per-example gradient covariance is known."""

from __future__ import annotations

import math

import pytest
import torch
from diag_problems import mse_cost
from torch import nn

from descentlab.diagnostics import NoiseScaleEstimator, gradient_noise_scale
from descentlab.errors import ConfigError


def regression(n: int = 20000, d: int = 10, sigma: float = 2.0, seed: int = 0):
    """Linear regression at w = w* + δ (|δ| = 1).  The per-example gradient of
    ½(wᵀx − y)² is x·r with r = δᵀx − e; over the population ``G = δ`` and
    ``Σ = (|δ|² + σ²) I + δδᵀ`` (Isserlis), so B_simple ≈ (d(1+σ²) + 1)/1 = 51.  The test
    compares with the exact values on the finite sample, computed from the closed form."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    w_star = torch.randn(d, generator=gen, dtype=torch.float64)
    y = x @ w_star + sigma * torch.randn(n, generator=gen, dtype=torch.float64)
    delta = torch.randn(d, generator=gen, dtype=torch.float64)
    delta /= delta.norm()
    model = nn.Linear(d, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_((w_star + delta).unsqueeze(0))
    per_example = x * (x @ (w_star + delta) - y).unsqueeze(1)  # n × d
    g = per_example.mean(0)
    trace_sigma = float(per_example.square().sum(1).mean() - g @ g)
    return model, x, y, float(g @ g), trace_sigma


def test_noise_scale_within_ten_percent_of_exact():
    model, x, y, g2, trace_sigma = regression()
    exact = trace_sigma / g2
    assert 45 < exact < 57  # the population value is 51
    est = gradient_noise_scale(model, mse_cost, x, y, b_small=8, b_big=512, repeats=100)
    assert est.repeats == 100 and len(est.history) == 100
    assert abs(est.noise_scale - exact) / exact < 0.10
    assert abs(est.g2 - g2) / g2 < 0.10
    assert abs(est.trace_sigma - trace_sigma) / trace_sigma < 0.10
    assert est.critical_batch == est.noise_scale


def test_estimators_are_unbiased_on_exact_expectations():
    # Feeding E|G_B|² = |G|² + tr(Σ)/B for both batch sizes recovers both terms exactly.
    g2, tr = 0.7, 35.0
    est = NoiseScaleEstimator(16, 256, decay=0.9)
    for _ in range(3):
        out = est.update(g2 + tr / 16, g2 + tr / 256)
    assert out.g2 == pytest.approx(g2) and out.trace_sigma == pytest.approx(tr)
    assert out.noise_scale == pytest.approx(tr / g2)


def test_ema_follows_the_newest_values():
    est = NoiseScaleEstimator(1, 2, decay=0.5)
    est.update(3.0, 2.0)  # |G|² = 1, tr Σ = 2
    out = est.update(5.0, 3.0)  # |G|² = 1, tr Σ = 4
    assert out.trace_sigma == pytest.approx(3.0)  # 0.5·2 + 0.5·4
    mean = NoiseScaleEstimator(1, 2)  # decay=None: plain mean
    for a, b in [(3.0, 2.0), (5.0, 3.0), (7.0, 4.0)]:
        res = mean.update(a, b)
    assert res.trace_sigma == pytest.approx(4.0) and res.g2 == pytest.approx(1.0)


def test_nan_while_gradient_signal_not_positive():
    est = NoiseScaleEstimator(1, 2)
    out = est.update(1.0, 1.0)  # |G|² estimate 1, tr Σ 0
    assert out.noise_scale == 0.0
    out = NoiseScaleEstimator(1, 2).update(4.0, 1.0)  # |G|² estimate −2
    assert math.isnan(out.noise_scale)


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"b_small": 8, "b_big": 8}, "b_small < b_big"),
        ({"b_small": 8, "b_big": 20}, "multiple"),
        ({"repeats": 0}, "repeats"),
        ({"decay": 1.0}, "decay"),
    ],
)
def test_bad_arguments(kwargs, text):
    model, x, y, *_ = regression(n=100)
    with pytest.raises(ConfigError, match=text):
        gradient_noise_scale(model, mse_cost, x, y, **kwargs)
