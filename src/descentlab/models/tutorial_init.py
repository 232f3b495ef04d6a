"""The Deep Learning Tutorials' initial weights, drawn number for number.

The tutorial scripts draw every weight from one ``numpy.random.RandomState(seed)``
(``mlp.py``: 1234, ``convolutional_mlp.py``: 23455), layer after layer in the order
the model is built (LeNet: conv 1, conv 2, the hidden layer, the softmax layer)::

    conv layer   W ~ U(-r, r), shape (out, in, kh, kw),  fan_in  = in·kh·kw
                                                           fan_out = out·kh·kw / pool_area
    hidden layer W ~ U(-r, r), shape (n_in, n_out),      fan_in = n_in, fan_out = n_out
                 (×4 for a sigmoid hidden layer)
    softmax      W = 0                                    (no draw)
    every bias   b = 0                                    (no draw)

    r = √(6 / (fan_in + fan_out))

Two layout differences with PyTorch: a Theano dense weight is ``(n_in, n_out)``
(``x·W``) where ``nn.Linear`` holds ``(n_out, n_in)``, so it is transposed; and
Theano's ``conv2d`` convolves (flips the kernel) where ``nn.Conv2d`` cross-correlates,
so the kernel is flipped in both spatial axes.  Both give the same function of the
input as the tutorial's network with the tutorial's numbers.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from descentlab.errors import ConfigError
from descentlab.models.base import layer_activation, layer_pool_area

__all__ = ["tutorial_draw", "tutorial_init"]


def tutorial_draw(
    rng: np.random.RandomState, layer: nn.Module, activation: str | None
) -> np.ndarray | None:
    """The tutorial's draw for one layer, in the tutorial's layout (None: zeros, no draw)."""
    if activation is None:
        return None
    if isinstance(layer, nn.Conv2d):
        out_c, in_c, kh, kw = layer.weight.shape
        fan_in = in_c * kh * kw
        fan_out = out_c * kh * kw / layer_pool_area(layer)
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(low=-bound, high=bound, size=(out_c, in_c, kh, kw))
    if isinstance(layer, nn.Linear):
        n_out, n_in = layer.weight.shape
        bound = math.sqrt(6.0 / (n_in + n_out))
        values = rng.uniform(low=-bound, high=bound, size=(n_in, n_out))
        return values * 4 if activation == "sigmoid" else values
    raise ConfigError(
        f"init 'tutorial' cannot initialize a {type(layer).__name__}",
        hint="it knows the tutorial's layers: Linear and Conv2d",
    )


def _to_torch_layout(values: np.ndarray, layer: nn.Module) -> torch.Tensor:
    # conv: flip (convolution → cross-correlation); dense: (n_in, n_out) → (n_out, n_in)
    values = values[:, :, ::-1, ::-1] if isinstance(layer, nn.Conv2d) else values.T
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))


@torch.no_grad()
def tutorial_init(module: nn.Module, seed: int) -> nn.Module:
    """Initialize a descentlab MLP / LeNet / logreg in place as the tutorial would; return it.

    Layers are visited in ``module.modules()`` order, which is the order the models
    create them in (the tutorial's order).  Untagged layers (not built by a descentlab
    model) raise :class:`ConfigError`: the tutorial's recipe is only defined for its
    own layers.
    """
    rng = np.random.RandomState(seed)
    for name, layer in module.named_modules():
        if not isinstance(layer, nn.Linear | nn.Conv2d):
            if isinstance(layer, nn.modules.batchnorm._NormBase | nn.LayerNorm):
                layer.reset_parameters()
            continue
        tagged, activation = layer_activation(layer)
        if not tagged:
            raise ConfigError(
                f"init 'tutorial' cannot initialize layer {name!r}: it was not built by a "
                "descentlab model",
                hint="use it with model logreg, mlp or lenet",
            )
        values = tutorial_draw(rng, layer, activation)
        if values is None:
            layer.weight.zero_()
        else:
            layer.weight.copy_(_to_torch_layout(values, layer))
        if layer.bias is not None:
            layer.bias.zero_()
    return module
