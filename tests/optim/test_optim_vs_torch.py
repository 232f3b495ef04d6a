"""descentlab's optimizers against torch.optim where the two rules coincide, and the exact
size of the difference where they do not (scheduled lr with momentum; where δ goes)."""

from __future__ import annotations

import numpy as np
import optim_problem as P
import pytest
import torch

from descentlab.optim import SGD, AdaDelta, AdaGrad, Adam, RMSProp
from descentlab.optim.schedules import LinearDecay

STEPS = 100
TOL32 = 1e-6

# name -> (our optimizer, torch's, use a closure); both built on fresh float32 params.
CASES = {
    "sgd": (lambda p: SGD(p, lr=0.5), lambda p: torch.optim.SGD(p, lr=0.5, foreach=True)),
    "sgd+decay": (
        # Decoupled decay equals torch's L2 weight decay for plain SGD.
        lambda p: SGD(p, lr=0.5, weight_decay=0.01),
        lambda p: torch.optim.SGD(p, lr=0.5, weight_decay=0.01),
    ),
    "momentum": (
        lambda p: SGD(p, lr=0.1, momentum=0.9),
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
    ),
    "adagrad": (
        lambda p: AdaGrad(p, lr=0.1, eps=1e-10),
        lambda p: torch.optim.Adagrad(p, lr=0.1, eps=1e-10, initial_accumulator_value=0.0),
    ),
    "rmsprop": (
        lambda p: RMSProp(p, lr=0.01, rho=0.99, eps=1e-8),
        lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.99, eps=1e-8),
    ),
    "rmsprop+momentum": (
        lambda p: RMSProp(p, lr=0.001, rho=0.9, eps=1e-6, momentum=0.9),
        lambda p: torch.optim.RMSprop(p, lr=0.001, alpha=0.9, eps=1e-6, momentum=0.9),
    ),
    "adam": (
        lambda p: Adam(p, lr=0.01),
        lambda p: torch.optim.Adam(p, lr=0.01, foreach=True),
    ),
    "adam+decay=adamw": (
        lambda p: Adam(p, lr=0.01, weight_decay=0.1),
        lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1),
    ),
    "adadelta": (
        lambda p: AdaDelta(p, rho=0.9, eps=1e-6),
        lambda p: torch.optim.Adadelta(p, lr=1.0, rho=0.9, eps=1e-6),
    ),
    # The options added for issue 12 (torch's names): the same results as torch.optim.
    "rmsprop-centered": (
        lambda p: RMSProp(p, lr=0.01, rho=0.99, eps=1e-8, centered=True),
        lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.99, eps=1e-8, centered=True),
    ),
    "rmsprop-centered+momentum": (
        lambda p: RMSProp(p, lr=0.001, rho=0.9, eps=1e-6, momentum=0.9, centered=True),
        lambda p: torch.optim.RMSprop(
            p, lr=0.001, alpha=0.9, eps=1e-6, momentum=0.9, centered=True
        ),
    ),
    "adam-amsgrad": (
        lambda p: Adam(p, lr=0.01, amsgrad=True),
        lambda p: torch.optim.Adam(p, lr=0.01, amsgrad=True),
    ),
    "adamw-amsgrad": (
        lambda p: Adam(p, lr=0.01, amsgrad=True, weight_decay=0.1),
        lambda p: torch.optim.AdamW(p, lr=0.01, amsgrad=True, weight_decay=0.1),
    ),
    "adagrad-initial-accumulator": (
        lambda p: AdaGrad(p, lr=0.1, eps=1e-10, initial_accumulator_value=0.1),
        lambda p: torch.optim.Adagrad(p, lr=0.1, eps=1e-10, initial_accumulator_value=0.1),
    ),
    "sgd-momentum-maximize": (
        lambda p: SGD(p, lr=0.01, momentum=0.9, maximize=True),
        lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9, maximize=True),
    ),
    "adagrad-maximize": (
        lambda p: AdaGrad(p, lr=0.1, eps=1e-10, maximize=True),
        lambda p: torch.optim.Adagrad(p, lr=0.1, eps=1e-10, maximize=True),
    ),
    "rmsprop-maximize": (
        lambda p: RMSProp(p, lr=0.01, rho=0.99, eps=1e-8, maximize=True),
        lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.99, eps=1e-8, maximize=True),
    ),
    "adam-maximize": (
        lambda p: Adam(p, lr=0.01, maximize=True),
        lambda p: torch.optim.Adam(p, lr=0.01, maximize=True),
    ),
    "adadelta-maximize": (
        lambda p: AdaDelta(p, rho=0.9, eps=1e-6, maximize=True),
        lambda p: torch.optim.Adadelta(p, lr=1.0, rho=0.9, eps=1e-6, maximize=True),
    ),
}
# Velocity v = −lr·b (ours) against torch's buffer b, divided by a centered (smaller)
# denominator: float32 rounding of the two forms drifts apart by 1.5e-6 in 100 steps.
LOOSER = {"rmsprop-centered+momentum": 3e-6}
FUSABLE = [
    "sgd",
    "sgd+decay",
    "momentum",
    "sgd-momentum-maximize",
    "adagrad",
    "rmsprop",
    "adam",
    "adam+decay=adamw",
    "adam-amsgrad",
    "adamw-amsgrad",
]
FUSABLE += ["adagrad-initial-accumulator", "adagrad-maximize", "rmsprop-maximize", "adam-maximize"]


def _max_diff(a, b):
    """Largest |a − b| over all iterates, relative where |b| > 1 (float32 keeps 7 digits)."""
    return max(
        max((np.abs(x - y) / np.maximum(1.0, np.abs(y))).max() for x, y in zip(u, v))
        for u, v in zip(a, b)
    )


@pytest.mark.parametrize("foreach", [True, False], ids=["foreach", "per-tensor"])
@pytest.mark.parametrize("name", list(CASES))
def test_same_iterates_as_torch(name, foreach):
    ours_factory, torch_factory = CASES[name]
    mine, theirs = P.TorchProblem(dtype=torch.float32), P.TorchProblem(dtype=torch.float32)
    opt = ours_factory(mine.params)
    for group in opt.param_groups:
        group["foreach"] = foreach
    ours = P.run_torch(mine, opt, STEPS)
    ref = P.run_torch(theirs, torch_factory(theirs.params), STEPS)
    assert _max_diff(ours, ref) <= LOOSER.get(name, TOL32)
    assert _max_diff(ref[:1], ref[-1:]) > 1e-2  # the runs went somewhere


@pytest.mark.parametrize("name", FUSABLE)
def test_fused_same_iterates_as_torch(name):
    """``fused=True`` (torch's single-pass kernels) gives torch.optim's iterates too."""
    ours_factory, torch_factory = CASES[name]
    mine, theirs = P.TorchProblem(dtype=torch.float32), P.TorchProblem(dtype=torch.float32)
    opt = ours_factory(mine.params)
    for group in opt.param_groups:
        group["foreach"], group["fused"] = None, True
    ours = P.run_torch(mine, opt, STEPS)
    ref = P.run_torch(theirs, torch_factory(theirs.params), STEPS)
    assert _max_diff(ours, ref) <= TOL32


def test_nesterov_matches_torch_without_closure():
    mine, theirs = P.TorchProblem(dtype=torch.float32), P.TorchProblem(dtype=torch.float32)
    ours = P.run_torch(
        mine, SGD(mine.params, lr=0.1, momentum=0.9, nesterov=True), STEPS, use_closure=False
    )
    ref = P.run_torch(
        theirs,
        torch.optim.SGD(theirs.params, lr=0.1, momentum=0.9, nesterov=True),
        STEPS,
        use_closure=False,
    )
    assert _max_diff(ours, ref) <= TOL32


def test_nesterov_closure_form_holds_theta_where_torch_holds_lookahead():
    """With a closure our parameters hold θ; torch's hold φ = θ + αv with v = −lr·buf."""
    lr, alpha = 0.1, 0.9
    mine, theirs = P.TorchProblem(dtype=torch.float32), P.TorchProblem(dtype=torch.float32)
    opt = SGD(mine.params, lr=lr, momentum=alpha, nesterov=True)
    ref_opt = torch.optim.SGD(theirs.params, lr=lr, momentum=alpha, nesterov=True)
    ours = P.run_torch(mine, opt, STEPS)
    theirs_phi = P.run_torch(theirs, ref_opt, STEPS)
    bufs = [ref_opt.state[p]["momentum_buffer"].numpy() for p in theirs.params]
    theta_from_torch = [phi + alpha * lr * b for phi, b in zip(theirs_phi[-1], bufs)]
    assert _max_diff([ours[-1]], [theta_from_torch]) <= TOL32
    # ... and our velocity is torch's buffer in parameter units.
    for p, b in zip(mine.params, bufs):
        np.testing.assert_allclose(opt.velocity(p).numpy(), -lr * b, atol=TOL32)
    # The two really hold different points (αv is not negligible here).
    assert _max_diff([ours[-1]], theirs_phi[-1:]) > 1e-4


def _linear_loss_run(opt, params, gradients, scheduler=None):
    """Feed a fixed gradient sequence (loss_k = ⟨c_k, θ⟩, so g_k = c_k whatever θ is)."""
    for c in gradients:
        opt.zero_grad()
        (params[0] * torch.as_tensor(c)).sum().backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()
    return params[0].detach().numpy().copy()


def test_scheduled_momentum_differs_from_torch_exactly_as_documented():
    """Book: v ← αv − ε_k g. torch: b ← αb + g, θ ← θ − ε_k b. The book's step minus torch's
    at iteration k is Σ_{j<k} α^{k−j} (ε_k − ε_j) g_j."""
    rng = np.random.default_rng(1)
    steps, alpha, eps0, tau, ratio = 30, 0.9, 0.5, 20, 0.1
    gradients = rng.normal(size=(steps, 7))
    lrs = [(1 - min(k, tau) / tau) * eps0 + min(k, tau) / tau * ratio * eps0 for k in range(steps)]

    def run(make):
        theta = [torch.zeros(7, dtype=torch.float64, requires_grad=True)]
        opt = make(theta)
        return _linear_loss_run(opt, theta, gradients, LinearDecay(opt, tau, ratio))

    ours = run(lambda p: SGD(p, lr=eps0, momentum=alpha))
    theirs = run(lambda p: torch.optim.SGD(p, lr=eps0, momentum=alpha))
    predicted = sum(
        alpha ** (k - j) * (lrs[k] - lrs[j]) * gradients[j] for k in range(steps) for j in range(k)
    )
    np.testing.assert_allclose(ours - theirs, predicted, rtol=0, atol=1e-12)
    assert np.abs(predicted).max() > 0.1  # the documented difference is not negligible


def test_constant_lr_momentum_equals_torch_on_a_gradient_sequence():
    rng = np.random.default_rng(2)
    gradients = rng.normal(size=(30, 7))

    def run(make):
        theta = [torch.zeros(7, dtype=torch.float64, requires_grad=True)]
        return _linear_loss_run(make(theta), theta, gradients)

    ours = run(lambda p: SGD(p, lr=0.3, momentum=0.9))
    theirs = run(lambda p: torch.optim.SGD(p, lr=0.3, momentum=0.9))
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)


def test_rmsprop_eps_placement_differs_from_torch_exactly_as_documented():
    """δ inside: Δθ = −ε g/√(δ + r); torch (and our default): −ε g/(δ + √r)."""
    rng = np.random.default_rng(3)
    steps, lr, rho, delta = 25, 0.01, 0.9, 1e-2
    gradients = rng.normal(size=(steps, 7)) * 0.1

    def run(make):
        theta = [torch.zeros(7, dtype=torch.float64, requires_grad=True)]
        return _linear_loss_run(make(theta), theta, gradients)

    inside = run(lambda p: RMSProp(p, lr=lr, rho=rho, eps=delta, eps_inside_sqrt=True))
    outside = run(lambda p: RMSProp(p, lr=lr, rho=rho, eps=delta))
    theirs = run(lambda p: torch.optim.RMSprop(p, lr=lr, alpha=rho, eps=delta))
    np.testing.assert_allclose(outside, theirs, rtol=0, atol=1e-12)
    r = np.zeros(7)
    predicted = np.zeros(7)
    for g in gradients:
        r = rho * r + (1 - rho) * g * g
        predicted += -lr * g / np.sqrt(delta + r) + lr * g / (delta + np.sqrt(r))
    np.testing.assert_allclose(inside - theirs, predicted, rtol=0, atol=1e-12)
    assert np.abs(predicted).max() > 1e-3


def test_l2_penalty_and_decoupled_decay_differ_for_adam():
    """For plain SGD λ-decay equals an L2 gradient term (see CASES); for Adam it does not."""
    mine, theirs = P.TorchProblem(), P.TorchProblem()
    ours = P.run_torch(mine, Adam(mine.params, lr=0.01, weight_decay=0.1), 50)
    l2 = P.run_torch(theirs, torch.optim.Adam(theirs.params, lr=0.01, weight_decay=0.1), 50)
    assert _max_diff(ours[-1:], l2[-1:]) > 1e-3


def test_tutorial_l2_penalty_equals_decoupled_decay_of_twice_lambda_for_plain_sgd():
    """Cost + λ2 ΣW² (not halved, as in the tutorial) ≡ weight_decay = 2λ2 for plain SGD."""
    lam2 = 0.05
    penalized, decoupled = P.TorchProblem(), P.TorchProblem()
    opt_pen = SGD(penalized.params, lr=0.3)
    opt_dec = SGD(decoupled.params, lr=0.3, weight_decay=2 * lam2)

    def closure():
        opt_pen.zero_grad()
        cost = penalized.loss() + lam2 * sum((p**2).sum() for p in penalized.params)
        cost.backward()
        return cost

    for _ in range(50):
        opt_pen.step(closure)
        opt_dec.step(decoupled.closure(opt_dec))
    for a, b in zip(penalized.params, decoupled.params):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
