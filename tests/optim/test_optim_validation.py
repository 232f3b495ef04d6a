"""Hyperparameter validation (hypothesis) and the optimizer registry."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from descentlab.errors import ConfigError
from descentlab.optim import (
    OPTIMIZER_NAMES,
    SGD,
    AdaDelta,
    AdaGrad,
    Adam,
    RMSProp,
    build_optimizer,
    describe_optimizers,
    optimizer_hyperparameters,
)

CLASSES = [SGD, AdaGrad, RMSProp, Adam, AdaDelta]
BASE_KW = {SGD: {"lr": 0.1}}  # SGD has no default learning rate

non_finite = st.sampled_from([math.nan, math.inf, -math.inf])
bad_positive = st.floats(max_value=0.0, allow_nan=False) | non_finite
bad_unit = (
    st.floats(min_value=1.0, allow_infinity=False)
    | st.floats(max_value=0.0, exclude_max=True, allow_infinity=False)
    | non_finite
)
bad_nonneg = st.floats(max_value=0.0, exclude_max=True, allow_infinity=False) | non_finite

BAD_VALUES = {
    # lr = 0 is accepted, as torch.optim does (a schedule may reach it).
    "lr": bad_nonneg,
    "eps": bad_positive,
    "momentum": bad_unit,
    "rho": bad_unit,
    "weight_decay": bad_nonneg,
}


def _params():
    return [torch.zeros(3, requires_grad=True)]


def _cases():
    """(class, hyperparameter) for every numeric hyperparameter each class accepts."""
    for cls in CLASSES:
        accepted = set(inspect.signature(cls.__init__).parameters)
        for name in BAD_VALUES:
            if name in accepted:
                yield cls, name


@pytest.mark.parametrize(("cls", "name"), list(_cases()), ids=lambda x: getattr(x, "__name__", x))
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_invalid_hyperparameters_raise_value_error_naming_them(cls, name, data):
    value = data.draw(BAD_VALUES[name])
    kwargs = {**BASE_KW.get(cls, {}), name: value}
    with pytest.raises(ValueError, match=name) as info:
        cls(_params(), **kwargs)
    assert isinstance(info.value, ConfigError)


@settings(max_examples=40, deadline=None)
@given(
    b1=st.floats(allow_nan=True, allow_infinity=True),
    b2=st.floats(allow_nan=True, allow_infinity=True),
)
def test_betas_outside_unit_interval_raise(b1, b2):
    ok = all(math.isfinite(b) and 0.0 <= b < 1.0 for b in (b1, b2))
    if ok:
        Adam(_params(), betas=(b1, b2))
    else:
        with pytest.raises(ValueError, match="betas"):
            Adam(_params(), betas=(b1, b2))


@settings(max_examples=40, deadline=None)
@given(
    lr=st.floats(min_value=1e-8, max_value=10.0),
    momentum=st.floats(min_value=0.0, max_value=0.999),
    wd=st.floats(min_value=0.0, max_value=1.0),
)
def test_valid_hyperparameters_are_accepted_as_floats(lr, momentum, wd):
    opt = SGD(_params(), lr=lr, momentum=momentum, weight_decay=wd)
    group = opt.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (lr, momentum, wd)


@pytest.mark.parametrize("value", ["fast", None, [0.1], True])
def test_non_numeric_learning_rates_are_config_errors(value):
    with pytest.raises(ConfigError, match="lr"):
        Adam(_params(), lr=value)


def test_betas_wrong_shape_and_string_form():
    with pytest.raises(ConfigError, match="betas"):
        Adam(_params(), betas=(0.9,))
    assert Adam(_params(), betas="0.8, 0.99").param_groups[0]["betas"] == (0.8, 0.99)


def test_sgd_requires_a_learning_rate():
    with pytest.raises(ConfigError, match="learning rate") as info:
        SGD(_params())
    assert "lr" in str(info.value)
    with pytest.raises(ConfigError, match="lr"):
        build_optimizer("momentum", _params())


def test_nesterov_needs_momentum():
    with pytest.raises(ConfigError, match="momentum"):
        SGD(_params(), lr=0.1, nesterov=True)
    with pytest.raises(ConfigError, match="momentum"):
        RMSProp(_params(), nesterov=True)


# ------------------------------------------------------------------------------ registry
@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_every_registry_name_builds(name):
    opt = build_optimizer(name, _params(), lr=0.01)
    assert isinstance(opt, torch.optim.Optimizer)


def test_registry_presets():
    assert build_optimizer("momentum", _params(), lr=0.1).param_groups[0]["momentum"] == 0.9
    nest = build_optimizer("nesterov", _params(), lr=0.1).param_groups[0]
    assert (nest["momentum"], nest["nesterov"]) == (0.9, True)
    rn = build_optimizer("rmsprop-nesterov", _params()).param_groups[0]
    assert (rn["momentum"], rn["nesterov"]) == (0.9, True)
    assert isinstance(build_optimizer("RMSProp_Nesterov", _params()), RMSProp)
    assert (
        build_optimizer("momentum", _params(), lr=0.1, momentum=0.5).param_groups[0]["momentum"]
        == 0.5
    )
    with pytest.raises(ConfigError, match="nesterov=True"):
        build_optimizer("nesterov", _params(), lr=0.1, nesterov=False)


def test_none_hyperparameters_are_ignored():
    opt = build_optimizer("adam", _params(), lr=None, betas=None, eps=None, weight_decay=None)
    assert opt.param_groups[0]["lr"] == 0.001


def test_torch_optimizers_by_name():
    opt = build_optimizer("torch.AdamW", _params(), lr=0.01, weight_decay=None)
    assert type(opt) is torch.optim.AdamW
    assert type(build_optimizer("torch.sgd", _params(), lr=0.1)) is torch.optim.SGD
    with pytest.raises(ConfigError, match=r"did you mean 'torch\.Adam"):
        build_optimizer("torch.AdamX", _params())
    with pytest.raises(ConfigError, match="Invalid learning rate"):
        build_optimizer("torch.SGD", _params(), lr=-1.0)


def test_unknown_names_get_a_did_you_mean():
    with pytest.raises(ConfigError, match="did you mean 'adam'"):
        build_optimizer("adamm", _params())
    with pytest.raises(ConfigError, match="did you mean 'momentum'") as info:
        build_optimizer("sgd", _params(), lr=0.1, momentun=0.9)
    assert "momentun" in str(info.value)


def test_describe_and_hyperparameter_listing():
    text = describe_optimizers()
    for name in OPTIMIZER_NAMES:
        assert name in text
    assert "torch." in text
    assert optimizer_hyperparameters("sgd")["lr"] is None
    assert optimizer_hyperparameters("adam")["betas"] == (0.9, 0.999)
