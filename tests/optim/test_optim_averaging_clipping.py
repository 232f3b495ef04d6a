"""Polyak averaging, EMA of the weights, and gradient clipping."""

from __future__ import annotations

import numpy as np
import optim_problem as P
import pytest
import torch
from torch import nn

from descentlab.errors import CheckpointError, ConfigError
from descentlab.optim import EMA, SGD, PolyakAverage, clip_grad_norm_, clip_grad_value_


def _train(problem, opt, avg, steps):
    """Run ``steps`` SGD steps, updating ``avg`` after each; return the iterates (NumPy)."""
    iterates = []
    closure = problem.closure(opt)
    for step in range(1, steps + 1):
        opt.step(closure)
        avg.update(step)
        iterates.append(problem.snapshot())
    return iterates


@pytest.mark.parametrize("start", [0, 7])
def test_polyak_average_is_the_mean_of_the_iterates(start):
    problem = P.TorchProblem()
    opt = SGD(problem.params, lr=0.5, momentum=0.5)
    avg = PolyakAverage(problem.params, start=start)
    iterates = _train(problem, opt, avg, 30)
    included = iterates[max(start, 1) - 1 :]
    assert avg.n_averaged == len(included)
    for i, a in enumerate(avg.averaged()):
        expected = np.mean([it[i] for it in included], axis=0)
        np.testing.assert_allclose(a.numpy(), expected, rtol=0, atol=1e-13)


def test_ema_follows_its_formula():
    problem = P.TorchProblem()
    opt = SGD(problem.params, lr=0.5)
    ema = EMA(problem.params, decay=0.9)
    iterates = _train(problem, opt, ema, 20)
    expected = [t.copy() for t in iterates[0]]  # the first iterate initializes the average
    for it in iterates[1:]:
        expected = [0.9 * e + 0.1 * t for e, t in zip(expected, it)]
    for a, e in zip(ema.averaged(), expected):
        np.testing.assert_allclose(a.numpy(), e, rtol=0, atol=1e-13)


def _bn_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))


def _live_state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_applied_swaps_in_and_restores_exactly_also_after_errors():
    model = _bn_model()
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    ema = EMA(model, decay=0.5)
    x = torch.randn(16, 4)
    for step in range(1, 6):
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()
        ema.update(step)
    before = _live_state(model)
    with ema.applied(model):
        inside = _live_state(model)
        params = list(model.parameters())
        for p, a in zip(params, ema.averaged()):
            assert torch.equal(p, a)
    assert not torch.equal(inside["0.weight"], before["0.weight"])
    # BN running statistics are averaged like the weights, the integer counter is not.
    assert not torch.equal(inside["1.running_mean"], before["1.running_mean"])
    assert torch.equal(inside["1.num_batches_tracked"], before["1.num_batches_tracked"])
    for k, v in _live_state(model).items():
        assert torch.equal(v, before[k]), k
    with pytest.raises(RuntimeError, match="boom"), ema.applied(model):
        raise RuntimeError("boom")
    for k, v in _live_state(model).items():
        assert torch.equal(v, before[k]), k


def test_buffers_keep_policy_and_mismatched_module():
    model = _bn_model()
    avg = PolyakAverage(model, buffers="keep")
    model.train()
    model(torch.randn(8, 4))  # changes the running statistics
    avg.update(1)
    running = model[1].running_mean.clone()
    with avg.applied(model):
        assert torch.equal(model[1].running_mean, running)
    with pytest.raises(ConfigError, match="do not match"), avg.applied(nn.Linear(4, 2)):
        pass


def test_applied_before_any_update_changes_nothing():
    model = _bn_model()
    avg = PolyakAverage(model, start=100)
    before = _live_state(model)
    avg.update(3)  # before start: ignored
    with avg.applied(model):
        for k, v in _live_state(model).items():
            assert torch.equal(v, before[k])


def test_averaging_state_dict_round_trip_and_copy_to():
    problem = P.TorchProblem()
    opt = SGD(problem.params, lr=0.5)
    ema = EMA(problem.params, decay=0.8, start=2)
    _train(problem, opt, ema, 6)
    saved = {k: (list(v) if isinstance(v, list) else v) for k, v in ema.state_dict().items()}
    saved["average"] = [t.clone() for t in saved["average"]]
    other = EMA(problem.params, decay=0.1)
    other.load_state_dict(saved)
    assert (other.decay, other.start, other.n_averaged) == (0.8, 2, ema.n_averaged)
    for a, b in zip(other.averaged(), ema.averaged()):
        assert torch.equal(a, b)
    other.copy_to()
    for p, a in zip(problem.params, ema.averaged()):
        assert torch.equal(p.detach(), a)
    with pytest.raises(CheckpointError):
        PolyakAverage(problem.params).load_state_dict(saved)
    with pytest.raises(CheckpointError):
        EMA([torch.zeros(2)]).load_state_dict(saved)


@pytest.mark.parametrize("decay", [1.0, -0.1, float("nan")])
def test_ema_decay_validation(decay):
    with pytest.raises(ConfigError, match="decay"):
        EMA([torch.zeros(2)], decay=decay)


def test_polyak_start_validation():
    with pytest.raises(ConfigError, match="start"):
        PolyakAverage([torch.zeros(2)], start=-1)


# ------------------------------------------------------------------------------ clipping
def _with_grads(*grads):
    params = []
    for g in grads:
        p = torch.zeros_like(g, requires_grad=True)
        p.grad = g.clone()
        params.append(p)
    return params


def test_clip_grad_norm_scales_to_max_norm_and_returns_the_old_norm():
    params = _with_grads(torch.tensor([3.0, 0.0]), torch.tensor([[4.0]]))
    total = clip_grad_norm_(params, max_norm=1.0)
    assert total.item() == pytest.approx(5.0)
    assert params[0].grad.tolist() == pytest.approx([0.6, 0.0])
    assert params[1].grad.item() == pytest.approx(0.8)
    new_norm = torch.cat([p.grad.flatten() for p in params]).norm()
    assert new_norm.item() == pytest.approx(1.0, rel=1e-6)


def test_clip_grad_norm_leaves_small_gradients_alone():
    params = _with_grads(torch.tensor([0.3, 0.4]))
    total = clip_grad_norm_(params, max_norm=1.0, foreach=False)
    assert total.item() == pytest.approx(0.5)
    assert params[0].grad.tolist() == pytest.approx([0.3, 0.4])
    assert clip_grad_norm_([torch.zeros(2, requires_grad=True)], 1.0).item() == 0.0


def test_clip_grad_value_clamps_and_returns_the_old_norm():
    params = _with_grads(torch.tensor([3.0, -0.5]), torch.tensor([-4.0]))
    total = clip_grad_value_(iter(params), clip_value=1.0)
    assert total.item() == pytest.approx(float(np.sqrt(9 + 0.25 + 16)))
    assert params[0].grad.tolist() == [1.0, -0.5]
    assert params[1].grad.tolist() == [-1.0]


@pytest.mark.parametrize("bad", [0.0, -1.0, float("inf"), float("nan"), "x", True])
def test_clip_thresholds_are_validated(bad):
    with pytest.raises(ConfigError, match="max_norm"):
        clip_grad_norm_(_with_grads(torch.ones(2)), bad)
    with pytest.raises(ConfigError, match="clip_value"):
        clip_grad_value_(_with_grads(torch.ones(2)), bad)
