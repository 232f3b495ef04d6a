"""Stability bounds checked by running the optimizers, and the §8.2.1 step test."""

from __future__ import annotations

import math

import pytest
import torch
from diag_problems import Quadratic, least_squares, mse_cost, quadratic_cost
from torch import nn

from descentlab.diagnostics import HessianOperator, StepRule, stability_bound, step_test
from descentlab.errors import ConfigError
from descentlab.optim import SGD, Adam, build_optimizer

LAM = 4.0


def final_distance(make_opt, lr: float, steps: int = 1500) -> float:
    """|θ| after ``steps`` steps on C(θ) = ½·LAM·θ² from θ = 1 (inf if it blew up)."""
    theta = nn.Parameter(torch.ones(1, dtype=torch.float64))
    opt = make_opt([theta], lr)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = 0.5 * LAM * theta.square().sum()
        loss.backward()
        return loss

    for _ in range(steps):
        opt.step(closure)
        if not torch.isfinite(theta.detach()).all():
            return math.inf
    return abs(float(theta.detach()))


CASES = {
    "sgd": lambda p, lr: SGD(p, lr=lr),
    "momentum": lambda p, lr: SGD(p, lr=lr, momentum=0.9),
    "nesterov": lambda p, lr: SGD(p, lr=lr, momentum=0.9, nesterov=True),
    "momentum+decoupled-wd": lambda p, lr: SGD(p, lr=lr, momentum=0.5, weight_decay=0.3),
    "torch-dampening": lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.7, dampening=0.4),
    "torch-coupled-wd": lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.6, weight_decay=0.5),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bound_separates_convergence_from_divergence(case):
    make = CASES[case]
    probe = make([nn.Parameter(torch.zeros(1))], 0.1)
    bound = stability_bound(LAM, StepRule.from_optimizer(probe)).lr_max
    assert bound is not None
    assert final_distance(make, 0.97 * bound) < 1e-3
    assert final_distance(make, 1.03 * bound) > 10.0  # growing from |θ₀| = 1


def test_closed_forms():
    assert stability_bound(4.0, StepRule("sgd", 0.1)).lr_max == pytest.approx(0.5)
    hb = stability_bound(4.0, StepRule("momentum", 0.1, momentum=0.9))
    assert hb.lr_max == pytest.approx(2 * 1.9 / 4) and hb.formula == "2(1+α)/λmax"
    nag = stability_bound(4.0, StepRule("nesterov", 0.1, momentum=0.9, nesterov=True))
    assert nag.lr_max == pytest.approx(2 * 1.9 / (2.8 * 4))
    assert hb.ratio(0.1) == pytest.approx(0.1 / hb.lr_max)


def test_no_bound_for_adaptive_or_nonpositive_curvature():
    adam = stability_bound(4.0, StepRule.from_optimizer(Adam([nn.Parameter(torch.zeros(1))])))
    assert adam.lr_max is None and "P⁻¹H" in (adam.reason or "")
    assert adam.ratio(0.1) is None
    flat = stability_bound(-1.0, StepRule("sgd", 0.1))
    assert flat.lr_max is None and "no positive curvature" in (flat.reason or "")


def test_step_rule_from_name_and_optimizer():
    rule = StepRule.from_name("momentum", lr=0.05)
    assert (rule.momentum, rule.nesterov, rule.adaptive) == (0.9, False, False)
    assert StepRule.from_name("nesterov", lr=0.05).nesterov
    assert StepRule.from_name("adam", lr=0.001).adaptive
    opt = build_optimizer("nesterov", [nn.Parameter(torch.zeros(1))], lr=0.2)
    rule = StepRule.from_optimizer(opt)
    assert (rule.name, rule.lr, rule.momentum) == ("nesterov", 0.2, 0.9)
    with pytest.raises(ConfigError):
        StepRule.from_name("sgd")  # no learning rate
    with pytest.raises(ConfigError):
        StepRule.from_name("sgdd", lr=0.1)


def test_step_test_exact_on_a_quadratic():
    # On a quadratic the second-order expansion is exact: predicted == actual change.
    model = Quadratic([5.0, 2.0, 1.0, 0.5, 0.25, 0.1, 0.05, 0.02, 0.01])
    op = HessianOperator(model, quadratic_cost, torch.zeros(2, 1), torch.zeros(2))
    before = [p.detach().clone() for p in model.parameters()]
    g, _ = op.gradient()
    q = float(g @ op.hvp(g)) / float(g @ g)  # curvature along g
    small, large = step_test(op, 0.5 * 2 / q), step_test(op, 1.5 * 2 / q)
    for st in (small, large):
        assert st.actual_change == pytest.approx(st.predicted_change, rel=1e-9, abs=1e-12)
        assert st.grad_norm == pytest.approx(float(g.norm()))
    assert small.ratio == pytest.approx(0.5) and not small.raises_cost
    assert large.ratio == pytest.approx(1.5) and large.raises_cost and large.actual_change > 0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # restored


def test_step_test_on_least_squares_and_bad_lr():
    model, x, y = least_squares([3.0, 1.0, 0.1], n=30)
    op = HessianOperator(model, mse_cost, x, y, chunk_size=7)
    st = step_test(op, 0.2)
    assert st.actual_change == pytest.approx(st.predicted_change, rel=1e-9)
    assert st.first_order == pytest.approx(0.2 * st.g_dot_g)
    with pytest.raises(ConfigError):
        step_test(op, 0.0)
