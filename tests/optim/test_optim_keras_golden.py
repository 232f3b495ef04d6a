"""Keras's published golden values for SGD, AdaGrad, RMSprop, Adam and Adadelta.

The numbers are the fixtures of keras 3's own optimizer tests
(``keras/src/optimizers/<name>_test.py``: ``test_single_step`` and
``test_correctness_with_golden``; the same tolerances, 1e-4 and 5e-4). Each case lists
the descentlab options that give Keras's rule and defaults:

* SGD: Keras's ``SGD(nesterov=True)`` keeps its default momentum 0, i.e. plain SGD with
  ε = 0.01 (our ``nesterov=True`` needs α > 0, so plain SGD is the same rule);
* AdaGrad: r starts at ``initial_accumulator_value`` (Keras 0.1) and δ sits inside the
  root (``eps_inside_sqrt=True``, δ = 1e-7);
* RMSprop: ``centered=True``, δ inside the root, ρ = 0.9, δ = 1e-7, ε = 0.001;
* Adam: ``amsgrad=True``, δ = 1e-7 (Keras adds it to √r̂ without the bias correction;
  the difference is ~1e-7/√r̂ relative, far below the tolerance);
* Adadelta: Zeiler's rule, as ours.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from descentlab.optim import SGD, AdaDelta, AdaGrad, Adam, RMSProp

GOLDEN = {
    "sgd": (
        lambda p, **path: SGD(p, lr=0.01, **path),
        np.array(
            [
                [0.9999] * 10,
                [0.9989, 0.9979, 0.9969, 0.9959, 0.9949, 0.9939, 0.9929, 0.9919, 0.9909, 0.9899],
                [0.9979, 0.9959, 0.9939, 0.9919, 0.9899, 0.9879, 0.9859, 0.9839, 0.9819, 0.9799],
                [0.9969, 0.9939, 0.9909, 0.9879, 0.9849, 0.9819, 0.9789, 0.9759, 0.9729, 0.9699],
                [0.9959, 0.9919, 0.9879, 0.9839, 0.9799, 0.9759, 0.9719, 0.9679, 0.9639, 0.9599],
            ]
        ),
    ),
    "adagrad": (
        lambda p, **path: AdaGrad(
            p, lr=0.2, eps=1e-6, initial_accumulator_value=0.3, eps_inside_sqrt=True, **path
        ),
        np.array(
            [
                [0.9963] * 10,
                [0.9604, 0.9278, 0.9003, 0.8784, 0.8615, 0.8487, 0.8388, 0.8313, 0.8255, 0.8209],
                [0.9251, 0.8629, 0.8137, 0.7768, 0.7497, 0.7298, 0.7151, 0.704, 0.6956, 0.6891],
                [0.8903, 0.8012, 0.7342, 0.6862, 0.6521, 0.6277, 0.6099, 0.5967, 0.5867, 0.579],
                [0.856, 0.7422, 0.6604, 0.6037, 0.5644, 0.5367, 0.5168, 0.5021, 0.491, 0.4825],
            ]
        ),
    ),
    "rmsprop": (
        lambda p, **path: RMSProp(
            p, lr=0.001, rho=0.9, eps=1e-7, eps_inside_sqrt=True, centered=True, **path
        ),
        np.tile([[0.9967], [0.9933], [0.9908], [0.9885], [0.9864]], (1, 10)),
    ),
    "adam": (
        lambda p, **path: Adam(p, lr=0.001, eps=1e-7, amsgrad=True, **path),
        np.tile([[0.999], [0.9982], [0.9974], [0.9965], [0.9955]], (1, 10)),
    ),
    "adadelta": (
        lambda p, **path: AdaDelta(p, lr=1.0, rho=0.8, eps=1e-6, **path),
        np.tile([[0.9978], [0.9947], [0.9915], [0.9882], [0.9849]], (1, 10)),
    ),
}

# test_single_step: lr 0.5 and Keras's other defaults, g = (1, 6, 7, 2) at θ = (1, 2, 3, 4).
SINGLE_STEP = {
    "sgd": (lambda p, **path: SGD(p, lr=0.5, **path), [0.5, -1.0, -0.5, 3.0]),
    "adagrad": (
        lambda p, **path: AdaGrad(
            p, lr=0.5, eps=1e-7, initial_accumulator_value=0.1, eps_inside_sqrt=True, **path
        ),
        [0.5233, 1.5007, 2.5005, 3.5061],
    ),
    "rmsprop": (
        lambda p, **path: RMSProp(p, lr=0.5, rho=0.9, eps=1e-7, eps_inside_sqrt=True, **path),
        [-0.5811, 0.4189, 1.4189, 2.4189],
    ),
    "adam": (lambda p, **path: Adam(p, lr=0.5, eps=1e-7, **path), [0.5, 1.5, 2.5, 3.5]),
    "adadelta": (
        lambda p, **path: AdaDelta(p, lr=0.5, rho=0.95, eps=1e-7, **path),
        [0.9993, 1.9993, 2.9993, 3.9993],
    ),
}

PATHS = {"foreach": {"foreach": True}, "per-tensor": {"foreach": False}}


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("name", list(GOLDEN))
def test_keras_correctness_with_golden(name, path):
    make, golden = GOLDEN[name]
    x = torch.ones(10, dtype=torch.float64, requires_grad=True)
    opt = make([x], **PATHS[path])
    grads = torch.arange(0.1, 1.1, 0.1, dtype=torch.float64)[:10]
    x.grad = torch.full((10,), 0.01, dtype=torch.float64)
    opt.step()
    for row in golden:
        np.testing.assert_allclose(x.detach().numpy(), row, rtol=5e-4, atol=5e-4)
        x.grad = grads.clone()
        opt.step()


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("name", list(SINGLE_STEP))
def test_keras_single_step(name, path):
    make, expected = SINGLE_STEP[name]
    x = torch.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    opt = make([x], **PATHS[path])
    x.grad = torch.tensor([1.0, 6.0, 7.0, 2.0])
    opt.step()
    np.testing.assert_allclose(x.detach().numpy(), expected, rtol=1e-4, atol=1e-4)


def test_the_golden_values_tell_the_options_apart():
    """Guard against a fixture that any rule would pass: the book's defaults miss them."""
    x = torch.ones(10, dtype=torch.float64, requires_grad=True)
    opt = AdaGrad([x], lr=0.2, eps=1e-6)  # no initial accumulator: much larger first step
    x.grad = torch.full((10,), 0.01, dtype=torch.float64)
    opt.step()
    assert not np.allclose(x.detach().numpy(), GOLDEN["adagrad"][1][0], rtol=5e-4, atol=5e-4)
    y = torch.ones(10, dtype=torch.float64, requires_grad=True)
    plain = RMSProp([y], lr=0.001, rho=0.9, eps=1e-7, eps_inside_sqrt=True)  # not centered
    y.grad = torch.full((10,), 0.01, dtype=torch.float64)
    plain.step()
    for _ in range(4):
        y.grad = torch.arange(0.1, 1.1, 0.1, dtype=torch.float64)[:10]
        plain.step()
    assert not np.allclose(y.detach().numpy(), GOLDEN["rmsprop"][1][4], rtol=5e-4, atol=5e-4)
