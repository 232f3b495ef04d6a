"""Losses on logits, the weight penalty, and the cross-entropy-vs-MSE worked example."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from descentlab.errors import ConfigError
from descentlab.losses import (
    LOSSES,
    add_penalty_grad_,
    get_loss,
    losses_worked_example,
    mse_softmax,
    nll,
    penalty,
    weight_parameters,
    zero_one,
)
from descentlab.models import build_model


def batch(n=6, k=4, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=g, dtype=dtype) * 3
    y = torch.randint(0, k, (n,), generator=g)
    return logits, y


def test_nll_is_mean_negative_log_softmax_of_the_target():
    logits, y = batch()
    p = torch.exp(logits) / torch.exp(logits).sum(1, keepdim=True)
    expected = -torch.log(p[torch.arange(len(y)), y]).mean()
    torch.testing.assert_close(nll(logits, y), expected)


@given(n=st.integers(1, 8), k=st.integers(2, 6), seed=st.integers(0, 10_000))
@settings(max_examples=40, deadline=None)
def test_nll_gradient_is_softmax_minus_onehot_over_n(n, k, seed):
    logits, y = batch(n, k, seed)
    logits.requires_grad_(True)
    nll(logits, y).backward()
    p = torch.exp(logits.detach() - logits.detach().max(1, keepdim=True).values)
    p = p / p.sum(1, keepdim=True)
    onehot = torch.zeros(n, k, dtype=torch.float64)
    onehot[torch.arange(n), y] = 1.0
    torch.testing.assert_close(logits.grad, (p - onehot) / n)


def test_nll_is_stable_for_huge_logits():
    logits = torch.tensor([[1000.0, 0.0, -1000.0], [0.0, 1000.0, 0.0]])
    y = torch.tensor([2, 1])
    loss = nll(logits, y)
    assert torch.isfinite(loss)
    # example 1: -log softmax = 2000 ; example 2: ≈ 0
    assert math.isclose(loss.item(), 1000.0, rel_tol=1e-6)


def test_zero_one_counts_argmax_mistakes():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, 1.0], [1.0, 1.0]])
    y = torch.tensor([0, 0, 0, 1])  # right, wrong, right, tie → class 0 → wrong
    out = zero_one(logits, y)
    assert out.dtype == torch.float32
    assert out.item() == 0.5
    assert zero_one(logits.double(), y).dtype == torch.float64


def test_mse_softmax_normalization():
    logits, y = batch(5, 3)
    p = torch.softmax(logits, 1)
    onehot = F.one_hot(y, 3).double()
    expected = sum(((p[i] - onehot[i]) ** 2).sum() for i in range(5)) / 5
    torch.testing.assert_close(mse_softmax(logits, y), expected)
    # K times PyTorch's element-wise mean
    torch.testing.assert_close(mse_softmax(logits, y), 3 * nn.MSELoss()(p, onehot))


def test_mse_softmax_gradient_matches_hand_formula():
    # ∂/∂z Σ_k (p_k − t_k)² = J_softmaxᵀ · 2(p − t),  J = diag(p) − p pᵀ,
    # i.e. 2 p ⊙ (d − p·d) with d = p − t; divided by N for the mean.
    logits, y = batch(7, 5, seed=3)
    logits.requires_grad_(True)
    mse_softmax(logits, y).backward()
    p = torch.softmax(logits.detach(), 1)
    d = p - F.one_hot(y, 5).double()
    expected = 2 * p * (d - (p * d).sum(1, keepdim=True)) / 7
    torch.testing.assert_close(logits.grad, expected)


def test_loss_registry():
    assert get_loss("nll") is nll
    assert get_loss("cross-entropy") is nll
    assert get_loss("Cross_Entropy") is nll
    assert get_loss("mse") is mse_softmax
    assert set(LOSSES) == {"nll", "cross-entropy", "mse"}
    with pytest.raises(ConfigError, match="did you mean 'mse'"):
        get_loss("mes")
    with pytest.raises(ConfigError, match="cannot be trained on"):
        get_loss("zero-one")


# --------------------------------------------------------------------------------------
# Penalty
# --------------------------------------------------------------------------------------


def test_weight_parameters_exclude_biases_and_batch_norm():
    model = build_model("mlp", (6,), 3, hidden=(5, 4), batch_norm=True)
    weights = weight_parameters(model)
    expected = [model.hidden_layers[0].weight, model.hidden_layers[1].weight, model.output.weight]
    assert [id(w) for w in weights] == [id(w) for w in expected]
    lenet = build_model("lenet", (1, 16, 16), 2, hidden=(3,))
    assert [tuple(w.shape) for w in weight_parameters(lenet)] == [
        (20, 1, 5, 5),
        (50, 20, 5, 5),
        (3, 50),
        (2, 3),
    ]


def test_penalty_value_excludes_biases():
    torch.manual_seed(0)
    model = build_model("mlp", (6,), 3, hidden=(5,), init="normal:std=1")
    with torch.no_grad():
        for layer in (model.hidden_layers[0], model.output):
            layer.bias.fill_(100.0)  # would dominate if biases were penalized
    w1, w2 = model.hidden_layers[0].weight, model.output.weight
    l1 = w1.abs().sum() + w2.abs().sum()
    l2 = (w1**2).sum() + (w2**2).sum()
    torch.testing.assert_close(penalty(model, l1=0.1, l2=0.01), 0.1 * l1 + 0.01 * l2)
    torch.testing.assert_close(penalty(model, l1=0.1), 0.1 * l1)
    assert penalty(model).item() == 0.0


def test_penalty_gradient_and_direct_gradient_agree():
    torch.manual_seed(0)
    model = build_model("mlp", (6,), 3, hidden=(5,), init="normal:std=1")
    with torch.no_grad():
        model.hidden_layers[0].weight[0, 0] = 0.0  # sign(0) = 0 in both
    penalty(model, l1=0.3, l2=0.2).backward()
    autograd = {name: p.grad for name, p in model.named_parameters()}
    assert autograd["hidden_layers.0.bias"] is None  # biases are not in the penalty's graph
    assert autograd["output.bias"] is None
    model.zero_grad(set_to_none=True)
    add_penalty_grad_(model, l1=0.3, l2=0.2)
    for name, p in model.named_parameters():
        if p.dim() >= 2:
            torch.testing.assert_close(p.grad, autograd[name])
            w = p.detach()
            torch.testing.assert_close(p.grad, 0.3 * torch.sign(w) + 0.4 * w)
        else:
            assert p.grad is None


@pytest.mark.parametrize("bad", [-0.1, float("inf"), float("nan"), "0.1", True])
def test_penalty_rejects_bad_coefficients(bad):
    model = build_model("logreg", (4,), 2)
    with pytest.raises(ConfigError, match=">= 0"):
        penalty(model, l1=bad)
    with pytest.raises(ConfigError, match=">= 0"):
        add_penalty_grad_(model, l2=bad)


# --------------------------------------------------------------------------------------
# The worked example of seed text 003
# --------------------------------------------------------------------------------------


def test_worked_example_reproduces_the_seed_text():
    model1, model2 = losses_worked_example()
    # The seed's tables: computed probabilities, targets, and "correct? yes yes no".
    assert model1["probabilities"] == [[0.3, 0.3, 0.4], [0.3, 0.4, 0.3], [0.1, 0.2, 0.7]]
    assert model2["probabilities"] == [[0.1, 0.2, 0.7], [0.1, 0.7, 0.2], [0.3, 0.4, 0.3]]
    for row in (model1, model2):
        assert row["targets"] == [[0, 0, 1], [0, 1, 0], [1, 0, 0]]
        assert row["correct"] == [True, True, False]
        # "Both classification errors are 1/3."
        assert math.isclose(row["classification_error"], 1 / 3)
    # Average cross-entropy (natural log), checked by hand:
    #   model 1: -(ln 0.4 + ln 0.4 + ln 0.1)/3 = (0.9163 + 0.9163 + 2.3026)/3 = 1.3784
    #   model 2: -(ln 0.7 + ln 0.7 + ln 0.3)/3 = (0.3567 + 0.3567 + 1.2040)/3 = 0.6391
    assert math.isclose(model1["cross_entropy"], 1.3784, abs_tol=1e-4)
    assert math.isclose(model2["cross_entropy"], 0.6391, abs_tol=1e-4)
    # Average squared error, summed over the 3 classes:
    #   model 1: (0.09+0.09+0.36 + 0.09+0.36+0.09 + 0.81+0.04+0.49)/3 = 2.42/3 = 0.8067
    #   model 2: (0.01+0.04+0.09 + 0.01+0.09+0.04 + 0.49+0.16+0.09)/3 = 1.02/3 = 0.34
    assert math.isclose(model1["mse"], 2.42 / 3, rel_tol=1e-9)
    assert math.isclose(model2["mse"], 1.02 / 3, rel_tol=1e-9)
    # The point of the example: same error, model 2 is better by both surrogate losses.
    assert model2["cross_entropy"] < model1["cross_entropy"]
    assert model2["mse"] < model1["mse"]
