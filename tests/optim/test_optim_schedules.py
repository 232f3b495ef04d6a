"""Learning-rate schedules and their spec parser."""

from __future__ import annotations

import math

import pytest
import torch
from torch.optim.lr_scheduler import LRScheduler

from descentlab.errors import ConfigError
from descentlab.optim import SGD, Adam, build_schedule
from descentlab.optim.schedules import (
    SCHEDULE_NAMES,
    Constant,
    ExponentialDecay,
    InverseTimeDecay,
    LinearDecay,
    ReduceOnPlateau,
    StepDecay,
    describe_schedules,
    parse_schedule_spec,
)


def _opt(lr=0.1):
    return SGD([torch.zeros(2, requires_grad=True)], lr=lr)


def _lr_after(sched, k):
    """The learning rate for iteration k (k steps of the schedule after construction)."""
    for _ in range(k):
        sched.optimizer.step()
        sched.step()
    return sched.optimizer.param_groups[0]["lr"]


@pytest.mark.parametrize(
    ("k", "expected"),
    [(0, 0.1), (50, 0.5 * 0.1 + 0.5 * 0.001), (100, 0.001), (200, 0.001)],
)
def test_linear_decay_values(k, expected):
    """ε_k = (1 − k/τ)ε_0 + (k/τ)ε_τ up to τ, then ε_τ = 1% of ε_0."""
    sched = LinearDecay(_opt(0.1), tau=100, final_ratio=0.01)
    assert sched.interval == "step"
    assert _lr_after(sched, k) == pytest.approx(expected, rel=1e-12)


def test_other_closed_forms():
    assert _lr_after(ExponentialDecay(_opt(), gamma=0.5), 3) == pytest.approx(0.1 * 0.125)
    assert _lr_after(StepDecay(_opt(), step_size=4, gamma=0.5), 9) == pytest.approx(0.025)
    inv = InverseTimeDecay(_opt(), t0=10)
    assert _lr_after(inv, 30) == pytest.approx(0.1 / 4)
    assert _lr_after(Constant(_opt()), 7) == 0.1


def test_inverse_time_decay_satisfies_the_sgd_conditions_numerically():
    t0 = 5.0
    sched = InverseTimeDecay(_opt(1.0), t0=t0)
    for n in (10_000, 100_000):
        block = [sched.lr_at(1.0, k) for k in range(n, 2 * n)]
        # Each doubling of k adds ≈ t0·ln 2 to Σ ε_k (so the sum diverges) ...
        assert sum(block) == pytest.approx(t0 * math.log(2), rel=1e-3)
        # ... but only ≈ t0²/(2n) to Σ ε_k² (so that sum converges).
        assert sum(x * x for x in block) == pytest.approx(t0**2 / (2 * n), rel=1e-2)


@pytest.mark.parametrize(
    "factory",
    [
        lambda o: LinearDecay(o, tau=10),
        lambda o: ExponentialDecay(o, gamma=0.9),
        lambda o: StepDecay(o, step_size=3),
        lambda o: InverseTimeDecay(o, t0=4),
        lambda o: ReduceOnPlateau(o, factor=0.5, patience=0),
    ],
)
def test_state_dict_round_trip(factory):
    opt = _opt()
    sched = factory(opt)
    for i in range(5):
        opt.step()
        if sched.needs_metric:
            sched.step(1.0 + i)  # never improves: the plateau schedule reduces the lr
        else:
            sched.step()
    saved = sched.state_dict()
    opt2 = _opt()
    opt2.load_state_dict(opt.state_dict())
    sched2 = factory(opt2)
    sched2.load_state_dict(saved)
    assert sched2.get_last_lr() == sched.get_last_lr()
    for _ in range(4):
        for s in (sched, sched2):
            s.optimizer.step()
            if s.needs_metric:
                s.step(9.0)
            else:
                s.step()
        assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    assert opt.param_groups[0]["lr"] < 0.1  # the schedules did change the rate


@pytest.mark.parametrize(
    ("spec", "cls", "interval"),
    [
        (None, Constant, "epoch"),
        ("constant", Constant, "epoch"),
        ("linear:tau=1000,final_ratio=0.01", LinearDecay, "step"),
        ("linear:tau_epochs=2.5", LinearDecay, "step"),
        ("exp:gamma=0.99", ExponentialDecay, "epoch"),
        ("exp:gamma=0.999,interval=step", ExponentialDecay, "step"),
        ("step:step_size=10,gamma=0.5", StepDecay, "epoch"),
        ("inv:t0=1000", InverseTimeDecay, "step"),
        ("plateau:factor=0.5,patience=3", ReduceOnPlateau, "epoch"),
    ],
)
def test_each_spec_parses(spec, cls, interval):
    sched = build_schedule(spec, _opt(), steps_per_epoch=100)
    assert isinstance(sched, cls)
    assert isinstance(sched, LRScheduler)
    assert sched.interval == interval
    assert sched.needs_metric == (cls is ReduceOnPlateau)


def test_spec_details():
    assert build_schedule("linear:tau_epochs=2.5", _opt(), steps_per_epoch=100).tau == 250
    assert build_schedule("linear:tau=7", _opt(), steps_per_epoch=100).tau == 7
    lin = build_schedule(" Linear : tau=1e3 , final_ratio=0.05 ", _opt(), steps_per_epoch=1)
    assert (lin.tau, lin.final_ratio) == (1000, 0.05)
    plateau = build_schedule("plateau:factor=0.5,patience=3", _opt(), steps_per_epoch=1)
    assert (plateau.factor, plateau.patience) == (0.5, 3)
    assert parse_schedule_spec("exponential:gamma=0.9") == ("exp", {"gamma": 0.9})
    assert set(SCHEDULE_NAMES) == {"constant", "linear", "exp", "step", "inv", "plateau"}
    assert "linear" in describe_schedules()


@pytest.mark.parametrize(
    ("spec", "must_mention"),
    [
        ("linaer:tau=10", "did you mean 'linear'"),
        ("linear:tua=10", "'tua'"),
        ("linear:tua=10", "tau_epochs"),  # the valid keys are listed
        ("linear:final_ratio=0.1", "exactly one of tau"),
        ("linear:tau=10,tau_epochs=1", "exactly one of tau"),
        ("linear:tau=ten", "'tau'"),
        ("linear:tau=2.5", "whole number"),
        ("linear:tau", "key=value"),
        ("exp", "gamma"),
        ("exp:gamma=1.5", "gamma"),
        ("step:gamma=0.5", "step_size"),
        ("inv:t0=-3", "t0"),
        ("plateau:factor=2", "factor"),
        ("plateau:patience=-1", "patience"),
        ("plateau:mode=up", "mode"),
        ("linear:tau=10,interval=batch", "interval"),
        ("constant:tau=3", "takes no options"),
        ("exp:gamma=0.9,gamma=0.8", "twice"),
    ],
)
def test_bad_specs_name_the_problem(spec, must_mention):
    with pytest.raises(ConfigError) as info:
        build_schedule(spec, _opt(), steps_per_epoch=10)
    assert must_mention in str(info.value)


def test_bad_steps_per_epoch():
    with pytest.raises(ConfigError, match="steps_per_epoch"):
        build_schedule("constant", _opt(), steps_per_epoch=0)


def test_plateau_reduces_after_patience():
    opt = Adam([torch.zeros(2, requires_grad=True)], lr=0.01)
    sched = build_schedule("plateau:factor=0.5,patience=1", opt, steps_per_epoch=5)
    for metric in (1.0, 0.9, 0.95, 0.96):
        sched.step(metric)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.005)


def test_schedules_also_drive_torch_optimizers():
    opt = torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=1.0)
    sched = build_schedule("linear:tau=4,final_ratio=0", opt, steps_per_epoch=1)
    assert _lr_after(sched, 2) == pytest.approx(0.5)
