"""Pieces shared by the models: activations, layer tags, parameter checks.

Every model in :mod:`descentlab.models` returns **logits** (unnormalised log-probabilities)
of shape ``(N, n_classes)``.  The softmax lives in the loss (:func:`descentlab.losses.nll`
uses ``log_softmax``), because computing ``log(softmax(z))`` in one fused step subtracts
``max(z)`` first and never forms a probability that underflows to 0 before the log.

Layer tags
----------
Initialization strategies need to know what follows each weight layer (Glorot's uniform
bound is multiplied by 4 before a sigmoid; ReLU layers want He's variance; the tutorial
zero-initializes the softmax layer).  The models record that on the layer itself with
:func:`tag_layer`: ``layer.descentlab_activation`` is ``"tanh"``, ``"relu"``,
``"sigmoid"``, or ``None`` for the output (softmax) layer, and conv layers that feed a
max-pool carry ``layer.descentlab_pool`` = the pool's area (the tutorial divides the
fan-out by it).  Layers without a tag belong to someone else's model.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch
from torch import Tensor, nn

from descentlab.errors import ConfigError, DataError, did_you_mean

__all__ = [
    "ACTIVATIONS",
    "check_model_input",
    "layer_activation",
    "layer_pool_area",
    "tag_layer",
]

#: Hidden-unit nonlinearities by name.  All three are monotone non-decreasing, which the
#: LeNet forward pass relies on to apply them after (instead of before) max-pooling.
ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
}

_ACTIVATION_ATTR = "descentlab_activation"
_M = TypeVar("_M", bound=nn.Module)
_POOL_ATTR = "descentlab_pool"


def tag_layer(layer: _M, activation: str | None, pool_area: int = 1) -> _M:
    """Record which nonlinearity follows ``layer`` (``None``: it is the output layer)."""
    setattr(layer, _ACTIVATION_ATTR, activation)
    if pool_area != 1:
        setattr(layer, _POOL_ATTR, int(pool_area))
    return layer


def layer_activation(layer: nn.Module) -> tuple[bool, str | None]:
    """``(tagged, activation)``: whether a descentlab model tagged the layer, and with what."""
    if hasattr(layer, _ACTIVATION_ATTR):
        return True, getattr(layer, _ACTIVATION_ATTR)
    return False, None


def layer_pool_area(layer: nn.Module) -> int:
    """Area of the max-pool that follows a conv layer (1 when none or untagged)."""
    return int(getattr(layer, _POOL_ATTR, 1))


# ---------------------------------------------------------------------------------------
# Parameter checks (shared by every model constructor and build_model)
# ---------------------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_input_shape(input_shape: object) -> tuple[int, ...]:
    """A non-empty tuple of positive ints (``(1, 28, 28)``, ``(64,)``, ...)."""
    if _is_int(input_shape):
        input_shape = (input_shape,)
    if (
        not isinstance(input_shape, Sequence)
        or isinstance(input_shape, str)
        or len(input_shape) == 0
        or not all(_is_int(d) and int(d) >= 1 for d in input_shape)
    ):
        raise ConfigError(
            f"input_shape must be a non-empty tuple of positive ints, got {input_shape!r}",
            hint="e.g. (1, 28, 28) for MNIST images or (64,) for feature vectors",
        )
    return tuple(int(d) for d in input_shape)


def check_n_classes(n_classes: object) -> int:
    if not _is_int(n_classes) or int(n_classes) < 2:  # type: ignore[call-overload]
        raise ConfigError(
            f"n_classes must be an int >= 2, got {n_classes!r}",
            hint="a classifier needs at least two classes",
        )
    return int(n_classes)  # type: ignore[call-overload]


def check_hidden(hidden: object, model: str) -> tuple[int, ...]:
    """Hidden-layer sizes: an int or a non-empty sequence of ints >= 1."""
    if _is_int(hidden):
        hidden = (hidden,)
    if (
        not isinstance(hidden, Sequence)
        or isinstance(hidden, str)
        or not all(_is_int(h) for h in hidden)
    ):
        raise ConfigError(
            f"hidden must be a tuple of layer sizes, got {hidden!r}",
            hint="e.g. hidden=(500,) or hidden=(256, 128)",
        )
    if len(hidden) == 0:
        raise ConfigError(
            f"{model} needs at least one hidden layer, got hidden=()",
            hint="use model 'logreg' for a network without hidden layers",
        )
    bad = [h for h in hidden if int(h) < 1]
    if bad:
        raise ConfigError(
            f"hidden layer sizes must be >= 1, got {tuple(hidden)!r}",
            hint="e.g. hidden=(500,)",
        )
    return tuple(int(h) for h in hidden)


def check_activation(activation: object) -> str:
    if not isinstance(activation, str) or activation.lower() not in ACTIVATIONS:
        raise ConfigError(
            f"unknown activation {activation!r}",
            hint=did_you_mean(str(activation).lower(), tuple(ACTIVATIONS)),
        )
    return activation.lower()


def check_dropout(dropout: object) -> float:
    """Dropout rate = probability of zeroing a unit; must lie in [0, 1)."""
    if (
        not isinstance(dropout, numbers.Real)
        or isinstance(dropout, bool)
        or not math.isfinite(float(dropout))
        or not 0.0 <= float(dropout) < 1.0
    ):
        raise ConfigError(
            f"dropout must be a rate in [0, 1), got {dropout!r}",
            hint="it is the probability of dropping a hidden unit; 0.5 is the classic choice",
        )
    return float(dropout)


def check_batch_norm(batch_norm: object) -> bool:
    if not isinstance(batch_norm, bool):
        raise ConfigError(
            f"batch_norm must be True or False, got {batch_norm!r}",
            hint="pass batch_norm=True to normalize each hidden layer's pre-activations",
        )
    return batch_norm


def check_model_input(model: nn.Module, input_shape: Sequence[int], n_classes: int) -> None:
    """Raise :class:`DataError` when a dataset does not fit a model built by ``build_model``.

    The forward passes do not check shapes (that would cost time on every minibatch), so
    callers that pair a saved model with a dataset call this once instead.
    """
    spec = getattr(model, "descentlab_spec", None)
    if spec is None:
        return
    want_shape = tuple(spec["input_shape"])
    if tuple(input_shape) != want_shape:
        raise DataError(
            f"the data has input shape {tuple(input_shape)} but the {spec['name']} model "
            f"expects {want_shape}",
            hint="use the dataset the model was trained on, or train a new model",
        )
    if int(n_classes) != int(spec["n_classes"]):
        raise DataError(
            f"the data has {n_classes} classes but the {spec['name']} model predicts "
            f"{spec['n_classes']}",
            hint="use the dataset the model was trained on, or train a new model",
        )


# ---------------------------------------------------------------------------------------
# The dense head shared by MLP and LeNet:  (Linear → [BN] → activation → [dropout])* → Linear
# ---------------------------------------------------------------------------------------
