"""Initialization strategies: bounds, variances, per-model defaults, spec parsing."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from descentlab.errors import ConfigError
from descentlab.models import build_model, init_parameters, parse_init

MNIST = (1, 28, 28)


def glorot_bound(fan_in, fan_out, gain=1.0):
    return gain * math.sqrt(6.0 / (fan_in + fan_out))


def assert_uniform(w: torch.Tensor, bound: float):
    """Inside ±bound, reaching near it, with the mean 0 and variance bound²/3 of U(-b, b).

    Tolerances are 5 standard errors for n draws: the sample variance of U(-b, b) has
    relative standard error √(0.8/n), the mean has standard error b/√(3n).
    """
    n = w.numel()
    assert w.abs().max().item() <= bound
    assert w.abs().max().item() > 0.95 * bound
    assert abs(w.var().item() / (bound**2 / 3) - 1) < 5 * math.sqrt(0.8 / n)
    assert abs(w.mean().item()) < 5 * bound / math.sqrt(3 * n)


def test_default_logreg_is_all_zeros():
    model = build_model("logreg", MNIST, 10)
    for p in model.parameters():
        assert torch.count_nonzero(p) == 0


def test_default_mlp_is_the_tutorials_glorot_with_zero_output_layer():
    torch.manual_seed(0)
    model = build_model("mlp", MNIST, 10, hidden=(500,))
    w = model.hidden_layers[0].weight
    assert_uniform(w, glorot_bound(784, 500))
    assert math.isclose(glorot_bound(784, 500), 0.068359, rel_tol=1e-4)  # √(6/1284)
    assert torch.count_nonzero(model.hidden_layers[0].bias) == 0
    assert torch.count_nonzero(model.output.weight) == 0
    assert torch.count_nonzero(model.output.bias) == 0


def test_default_sigmoid_multiplies_glorot_bound_by_four():
    torch.manual_seed(0)
    model = build_model("mlp", (400,), 10, hidden=(300,), activation="sigmoid")
    assert_uniform(model.hidden_layers[0].weight, glorot_bound(400, 300, gain=4.0))


def test_default_relu_is_he_normal():
    torch.manual_seed(0)
    model = build_model("mlp", (400,), 10, hidden=(300,), activation="relu")
    w = model.hidden_layers[0].weight
    assert abs(w.std().item() / math.sqrt(2 / 400) - 1) < 0.02
    assert abs(w.mean().item()) < 0.002


def test_default_lenet_conv_uses_pool_adjusted_fan_out():
    torch.manual_seed(0)
    model = build_model("lenet", MNIST, 10)
    # conv1: fan_in = 1·5·5 = 25, fan_out = 20·25/4 = 125 → ±0.2
    assert_uniform(model.conv1.weight, math.sqrt(6 / (25 + 125)))
    # conv2: fan_in = 20·25 = 500, fan_out = 50·25/4 = 312.5
    assert_uniform(model.conv2.weight, math.sqrt(6 / (500 + 312.5)))
    assert_uniform(model.hidden_layers[0].weight, glorot_bound(800, 500))
    assert torch.count_nonzero(model.output.weight) == 0
    for conv in (model.conv1, model.conv2):
        assert torch.count_nonzero(conv.bias) == 0


def test_explicit_glorot_also_initializes_output_layer():
    torch.manual_seed(0)
    model = build_model("mlp", (300,), 200, hidden=(400,), init="xavier")
    assert_uniform(model.output.weight, glorot_bound(400, 200))
    assert model.descentlab_spec["init"] == "glorot"


def test_zeros_strategy():
    model = build_model("mlp", (30,), 5, hidden=(20,), init="zeros")
    for p in model.parameters():
        assert torch.count_nonzero(p) == 0


def test_normal_strategy_default_and_custom_std():
    torch.manual_seed(0)
    model = build_model("mlp", (500,), 10, hidden=(400,), init="normal")
    assert abs(model.hidden_layers[0].weight.std().item() / 0.01 - 1) < 0.02
    model = build_model("mlp", (500,), 10, hidden=(400,), init="normal:std=0.1")
    assert abs(model.hidden_layers[0].weight.std().item() / 0.1 - 1) < 0.02
    assert torch.count_nonzero(model.hidden_layers[0].bias) == 0
    assert model.descentlab_spec["init"] == "normal:std=0.1"


def test_uniform_strategy_is_one_over_sqrt_fan_in():
    torch.manual_seed(0)
    model = build_model("mlp", (400,), 10, hidden=(300,), init="uniform")
    assert_uniform(model.hidden_layers[0].weight, 1 / math.sqrt(400))
    model = build_model("lenet", MNIST, 10, init="uniform")
    assert_uniform(model.conv2.weight, 1 / math.sqrt(20 * 25))


def test_he_strategy_std():
    torch.manual_seed(0)
    model = build_model("mlp", (400,), 10, hidden=(300,), init="kaiming")
    assert abs(model.hidden_layers[0].weight.std().item() / math.sqrt(2 / 400) - 1) < 0.02


def test_batch_norm_parameters_are_reset_to_identity():
    model = build_model("mlp", (10,), 3, hidden=(6,), batch_norm=True, init="normal")
    bn = model.norms[0]
    with torch.no_grad():
        bn.weight.fill_(3.0)
        bn.running_mean.fill_(1.0)
    init_parameters(model, "glorot")
    assert torch.equal(bn.weight, torch.ones(6))
    assert torch.equal(bn.bias, torch.zeros(6))
    assert torch.equal(bn.running_mean, torch.zeros(6))


def test_generator_makes_init_reproducible_without_touching_global_rng():
    model = build_model("mlp", (20,), 3, hidden=(10,))
    torch.manual_seed(0)
    init_parameters(model, "glorot", generator=torch.Generator().manual_seed(7))
    first = [p.clone() for p in model.parameters()]
    after = torch.rand(1)
    torch.manual_seed(0)
    init_parameters(model, "glorot", generator=torch.Generator().manual_seed(7))
    assert all(torch.equal(a, b) for a, b in zip(first, model.parameters()))
    assert torch.equal(torch.rand(1), after)  # the global stream was not consumed
    init_parameters(model, "glorot", generator=torch.Generator().manual_seed(8))
    assert not torch.equal(first[0], model.hidden_layers[0].weight)


def test_foreign_modules():
    # Untagged layers: named strategies treat them as plain layers (gain 1) ...
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(300, 200), nn.Sigmoid(), nn.Linear(200, 2))
    init_parameters(net, "glorot")
    assert_uniform(net[0].weight, glorot_bound(300, 200))
    # ... and "default" leaves them to PyTorch's own reset_parameters (not zeros).
    init_parameters(net, "zeros")
    init_parameters(net, "default")
    assert torch.count_nonzero(net[2].weight) > 0
    # Layers no strategy understands are refused rather than silently skipped.
    with pytest.raises(ConfigError, match="cannot initialize layer '0' of type Embedding"):
        init_parameters(nn.Sequential(nn.Embedding(5, 3)), "glorot")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (None, ("default", {})),
        ("GLOROT", ("glorot", {})),
        ("xavier", ("glorot", {})),
        ("normal", ("normal", {"std": 0.01})),
        ("normal: std = 0.5", ("normal", {"std": 0.5})),
        ("gaussian:std=1e-3", ("normal", {"std": 0.001})),
    ],
)
def test_parse_init(spec, expected):
    assert parse_init(spec) == expected


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("glorrot", "did you mean 'glorot'"),
        ("normal:sd=0.1", "did you mean 'std'"),
        ("normal:std=-1", "positive number"),
        ("normal:std=abc", "positive number"),
        ("normal:std", "positive number"),
        ("glorot:gain=2", "takes no options"),
        (3, "strategy name"),
    ],
)
def test_parse_init_errors(spec, match):
    with pytest.raises(ConfigError, match=match):
        parse_init(spec)
