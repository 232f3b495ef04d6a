"""Each optimizer against an independent float64 NumPy transcription of its algorithm box.

100 full-batch steps on a fixed softmax-regression problem; every iterate must agree to
1e-10, for the foreach path (the default) and for the per-tensor reference path.
"""

from __future__ import annotations

import numpy as np
import optim_problem as P
import pytest
import torch

from descentlab.optim import SGD, AdaDelta, AdaGrad, Adam, RMSProp
from descentlab.optim.schedules import LinearDecay

STEPS = 100
TOL = 1e-10


@pytest.fixture(scope="module")
def oracle_setup():
    X, y, theta0 = P.make_data(seed=0)
    return theta0, P.numpy_grad_fn(X, y)


def _assert_iterates_equal(ours, expected, tol=TOL):
    assert len(ours) == len(expected)
    for k, (a, b) in enumerate(zip(ours, expected)):
        for pa, pb in zip(a, b):
            np.testing.assert_allclose(pa, pb, rtol=0, atol=tol, err_msg=f"iterate {k + 1}")


def _moved(expected):
    """Guard against a vacuous comparison: the oracle really moved the parameters."""
    first, last = expected[0], expected[-1]
    assert max(np.abs(a - b).max() for a, b in zip(first, last)) > 1e-2


FOREACH = pytest.mark.parametrize("foreach", [True, False], ids=["foreach", "per-tensor"])


@FOREACH
def test_sgd_with_linear_decay(oracle_setup, foreach):
    theta0, grad = oracle_setup
    tau, eps0, ratio = 60, 0.5, 0.01
    # ε_k = (1 − k/τ) ε_0 + (k/τ) ε_τ for k ≤ τ, then ε_τ; k counted from 0.
    lrs = [(1 - min(k, tau) / tau) * eps0 + min(k, tau) / tau * ratio * eps0 for k in range(STEPS)]
    expected = P.sgd(theta0, grad, lrs)
    problem = P.TorchProblem()
    opt = SGD(problem.params, lr=eps0, foreach=foreach)
    sched = LinearDecay(opt, tau=tau, final_ratio=ratio)
    _moved(expected)
    _assert_iterates_equal(P.run_torch(problem, opt, STEPS, scheduler=sched), expected)


@FOREACH
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_momentum(oracle_setup, foreach, weight_decay):
    theta0, grad = oracle_setup
    expected = P.momentum(theta0, grad, [0.1] * STEPS, alpha=0.9, weight_decay=weight_decay)
    problem = P.TorchProblem()
    opt = SGD(problem.params, lr=0.1, momentum=0.9, weight_decay=weight_decay, foreach=foreach)
    _moved(expected)
    _assert_iterates_equal(P.run_torch(problem, opt, STEPS), expected)


@FOREACH
def test_momentum_with_schedule_is_the_books_form(oracle_setup, foreach):
    """v ← αv − ε_k g: the velocity keeps the learning rates it was accumulated with."""
    theta0, grad = oracle_setup
    tau = 50
    lrs = [0.2 * ((1 - min(k, tau) / tau) + min(k, tau) / tau * 0.1) for k in range(STEPS)]
    expected = P.momentum(theta0, grad, lrs, alpha=0.9)
    problem = P.TorchProblem()
    opt = SGD(problem.params, lr=0.2, momentum=0.9, foreach=foreach)
    sched = LinearDecay(opt, tau=tau, final_ratio=0.1)
    _assert_iterates_equal(P.run_torch(problem, opt, STEPS, scheduler=sched), expected)


@FOREACH
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_nesterov_closure_form(oracle_setup, foreach, weight_decay):
    theta0, grad = oracle_setup
    expected = P.momentum(
        theta0, grad, [0.1] * STEPS, alpha=0.9, nesterov=True, weight_decay=weight_decay
    )
    problem = P.TorchProblem()
    opt = SGD(
        problem.params,
        lr=0.1,
        momentum=0.9,
        nesterov=True,
        weight_decay=weight_decay,
        foreach=foreach,
    )
    _moved(expected)
    _assert_iterates_equal(P.run_torch(problem, opt, STEPS), expected)


@FOREACH
def test_nesterov_without_closure_holds_lookahead_point(oracle_setup, foreach):
    """Without a closure the parameters hold φ = θ + αv of Algorithm 8.3's θ and v."""
    theta0, grad = oracle_setup
    alpha, lr = 0.9, 0.1
    # Track θ and v of the book's algorithm to form φ = θ + αv after each step.
    theta, v, expected_phi = theta0, P._zeros(theta0), []
    for _ in range(STEPS):
        g = grad([t + alpha * vi for t, vi in zip(theta, v)])
        v = [alpha * vi - lr * gi for vi, gi in zip(v, g)]
        theta = [t + vi for t, vi in zip(theta, v)]
        expected_phi.append([t + alpha * vi for t, vi in zip(theta, v)])
    problem = P.TorchProblem()
    opt = SGD(problem.params, lr=lr, momentum=alpha, nesterov=True, foreach=foreach)
    ours = P.run_torch(problem, opt, STEPS, use_closure=False)
    _assert_iterates_equal(ours, expected_phi)


@FOREACH
def test_adagrad(oracle_setup, foreach):
    theta0, grad = oracle_setup
    expected = P.adagrad(theta0, grad, STEPS, lr=0.1, delta=1e-7)
    problem = P.TorchProblem()
    opt = AdaGrad(problem.params, lr=0.1, eps=1e-7, foreach=foreach)
    _moved(expected)
    _assert_iterates_equal(P.run_torch(problem, opt, STEPS), expected)


@FOREACH
@pytest.mark.parametrize("inside", [False, True], ids=["delta+sqrt(r)", "sqrt(delta+r)"])
def test_rmsprop_both_eps_placements(oracle_setup, foreach, inside):
    theta0, grad = oracle_setup
    # δ large enough that its placement matters for the trajectory.
    expected = P.rmsprop(theta0, grad, STEPS, 0.01, 0.9, 1e-3, delta_inside_sqrt=inside)
    problem = P.TorchProblem()
    opt = RMSProp(
        problem.params, lr=0.01, rho=0.9, eps=1e-3, eps_inside_sqrt=inside, foreach=foreach
    )
    _moved(expected)
    _assert_iterates_equal(P.run_torch(problem, opt, STEPS), expected)


@FOREACH
@pytest.mark.parametrize("nesterov", [False, True], ids=["classical", "nesterov"])
def test_rmsprop_with_momentum(oracle_setup, foreach, nesterov):
    theta0, grad = oracle_setup
    # Near the minimum RMSProp with momentum behaves like sign descent and amplifies
    # rounding differences chaotically; lr = 0.001 keeps 100 steps in the regular regime.
    expected = P.rmsprop(theta0, grad, STEPS, 0.001, 0.9, 1e-6, alpha=0.9, nesterov=nesterov)
    problem = P.TorchProblem()
    opt = RMSProp(
        problem.params,
        lr=0.001,
        rho=0.9,
        eps=1e-6,
        momentum=0.9,
        nesterov=nesterov,
        foreach=foreach,
    )
    _moved(expected)
    _assert_iterates_equal(P.run_torch(problem, opt, STEPS), expected)


@FOREACH
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adam(oracle_setup, foreach, weight_decay):
    theta0, grad = oracle_setup
    expected = P.adam(theta0, grad, STEPS, 0.01, 0.9, 0.999, 1e-8, weight_decay=weight_decay)
    problem = P.TorchProblem()
    opt = Adam(
        problem.params,
        lr=0.01,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=weight_decay,
        foreach=foreach,
    )
    _moved(expected)
    _assert_iterates_equal(P.run_torch(problem, opt, STEPS), expected)


@FOREACH
def test_adadelta(oracle_setup, foreach):
    theta0, grad = oracle_setup
    # A larger ε than the default so that AdaDelta's slow start still moves θ noticeably.
    expected = P.adadelta(theta0, grad, STEPS, lr=1.0, rho=0.95, eps=1e-3)
    problem = P.TorchProblem()
    opt = AdaDelta(problem.params, lr=1.0, rho=0.95, eps=1e-3, foreach=foreach)
    _moved(expected)
    _assert_iterates_equal(P.run_torch(problem, opt, STEPS), expected)


def test_step_returns_closure_loss_and_none_without_closure():
    problem = P.TorchProblem()
    opt = Adam(problem.params)
    loss = opt.step(problem.closure(opt))
    assert torch.is_tensor(loss) and loss.ndim == 0
    problem.closure(opt)()
    assert opt.step() is None


def test_parameters_without_gradient_are_left_alone():
    problem = P.TorchProblem()
    frozen = torch.ones(3, dtype=torch.float64, requires_grad=True)
    opt = RMSProp([*problem.params, frozen], lr=0.1, momentum=0.5)
    for _ in range(3):
        opt.step(problem.closure(opt))
    assert torch.equal(frozen, torch.ones(3, dtype=torch.float64))
    assert frozen not in opt.state or not opt.state[frozen]
