"""init="tutorial:seed=N": the tutorial's numpy.random.RandomState draws, in its order."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy.signal import convolve2d

from descentlab.models import build_model


def test_mlp_hidden_weights_are_randomstate_1234_draws() -> None:
    model = build_model(
        "mlp", (1, 28, 28), 10, hidden=(500,), activation="tanh", init="tutorial:seed=1234"
    )
    bound = math.sqrt(6.0 / (784 + 500))
    rng = np.random.RandomState(1234)
    first = rng.uniform(low=-bound, high=bound, size=5)  # numpy's own first five draws
    w = model.hidden_layers[0].weight.detach()  # torch layout (500, 784)
    # Theano's W is (n_in, n_out), filled row by row: W[0, 0:5] = the first draws
    assert np.array_equal(w[:5, 0].numpy(), first.astype(np.float32))
    full = np.random.RandomState(1234).uniform(-bound, bound, size=(784, 500))
    assert np.array_equal(w.numpy(), full.T.astype(np.float32))
    assert not model.output.weight.any() and not model.output.bias.any()
    assert not model.hidden_layers[0].bias.any()


def test_sigmoid_hidden_layer_is_four_times_larger() -> None:
    model = build_model(
        "mlp", (1, 28, 28), 10, hidden=(500,), activation="sigmoid", init="tutorial:seed=1234"
    )
    bound = math.sqrt(6.0 / (784 + 500))
    first = np.random.RandomState(1234).uniform(-bound, bound, size=3) * 4
    assert np.array_equal(
        model.hidden_layers[0].weight.detach()[:3, 0].numpy(), first.astype(np.float32)
    )


def test_lenet_draw_order_bounds_and_convolution() -> None:
    model = build_model(
        "lenet", (1, 28, 28), 10, hidden=(500,), activation="tanh", init="tutorial:seed=23455"
    )
    rng = np.random.RandomState(23455)
    b0 = math.sqrt(6.0 / (1 * 25 + 20 * 25 / 4))
    w0 = rng.uniform(-b0, b0, size=(20, 1, 5, 5))
    b1 = math.sqrt(6.0 / (20 * 25 + 50 * 25 / 4))
    w1 = rng.uniform(-b1, b1, size=(50, 20, 5, 5))
    b2 = math.sqrt(6.0 / (800 + 500))
    w2 = rng.uniform(-b2, b2, size=(800, 500))
    # torch cross-correlates, Theano convolves: the stored kernel is the flipped draw
    assert np.array_equal(
        model.conv1.weight.detach().numpy(), w0[:, :, ::-1, ::-1].astype(np.float32)
    )
    assert np.array_equal(
        model.conv2.weight.detach().numpy(), w1[:, :, ::-1, ::-1].astype(np.float32)
    )
    assert np.array_equal(model.hidden_layers[0].weight.detach().numpy(), w2.T.astype(np.float32))
    assert not model.output.weight.any()
    assert all(not getattr(model, n).bias.any() for n in ("conv1", "conv2", "output"))
    # the layer computes the tutorial's *convolution* with the drawn (unflipped) kernel
    x = np.random.default_rng(0).random((28, 28)).astype(np.float32)
    ours = F.conv2d(torch.from_numpy(x)[None, None], model.conv1.weight.detach())[0, 0]
    theirs = convolve2d(x.astype(np.float64), w0[0, 0], mode="valid")
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=1e-5, atol=1e-5)
