"""Classifiers that map ``(N, *input_shape)`` to logits ``(N, n_classes)``.

=========  ==============================================================================
``logreg``  softmax regression (the tutorial's ``logistic_sgd``), zero-initialized
``mlp``     fully connected tanh/relu/sigmoid network with optional dropout and batch norm
``lenet``   two conv+pool stages and a dense head (the tutorial's ``convolutional_mlp``)
=========  ==============================================================================

Models return **logits**, never probabilities: the softmax is folded into the loss
(``log_softmax`` inside :func:`descentlab.losses.nll`), which is numerically stable where
``log(softmax(z))`` computed in two steps is not.  Use ``logits.softmax(1)`` for
probabilities and ``logits.argmax(1)`` for predictions.

:func:`build_model` validates its arguments and records them on the module as
``module.descentlab_spec`` (a JSON-serialisable dict), so a saved model is rebuilt with
``build_model_from_spec(spec)`` followed by ``load_state_dict``.

Forward passes are kept lean (no copies: ``flatten`` is a view; activations are plain
``torch.tanh``/``relu``/``sigmoid`` calls; dropout only when its rate is non-zero) and do
not check input shapes, which would cost time on every minibatch; call
:func:`check_model_input` once when pairing a model with a dataset instead.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from descentlab.errors import ConfigError, did_you_mean
from descentlab.limits import check_bytes
from descentlab.models.base import (
    ACTIVATIONS,
    check_activation,
    check_batch_norm,
    check_dropout,
    check_hidden,
    check_input_shape,
    check_model_input,
    check_n_classes,
)
from descentlab.models.init import INIT_STRATEGIES, format_init, init_parameters, parse_init
from descentlab.models.lenet import LeNet, lenet_min_image_size
from descentlab.models.logreg import LogisticRegression
from descentlab.models.mlp import MLP

__all__ = [
    "ACTIVATIONS",
    "INIT_STRATEGIES",
    "MLP",
    "MODEL_NAMES",
    "LeNet",
    "LogisticRegression",
    "build_model",
    "build_model_from_spec",
    "check_model_input",
    "count_parameters",
    "init_parameters",
    "lenet_min_image_size",
    "parse_init",
]

MODEL_NAMES: tuple[str, ...] = ("logreg", "mlp", "lenet")

_SPEC_KEYS = (
    "name",
    "input_shape",
    "n_classes",
    "hidden",
    "activation",
    "dropout",
    "batch_norm",
    "init",
)


def build_model(
    name: str,
    input_shape: Sequence[int],
    n_classes: int,
    *,
    hidden: Sequence[int] | int = (500,),
    activation: str = "tanh",
    dropout: float = 0.0,
    batch_norm: bool = False,
    init: str | None = None,
) -> nn.Module:
    """Build a classifier by name; see the module docstring for the list.

    Parameters
    ----------
    name:
        ``"logreg"``, ``"mlp"`` or ``"lenet"``.
    input_shape:
        Shape of one example, e.g. ``(1, 28, 28)``.
    n_classes:
        Number of classes (>= 2).
    hidden:
        Hidden layer sizes (mlp, and lenet's dense layers); ignored by logreg.
    activation:
        ``"tanh"`` (default, as in the tutorials), ``"relu"`` or ``"sigmoid"``; ignored by
        logreg, which has no hidden units.
    dropout:
        Rate in ``[0, 1)`` for the hidden layers' outputs (mlp, lenet).
    batch_norm:
        Batch-normalize hidden pre-activations (mlp, lenet).
    init:
        Initialization strategy spec (``None`` = ``"default"``, the tutorials' recipe).

    Raises
    ------
    ConfigError
        For any invalid argument, e.g. an unknown name (with a did-you-mean hint),
        dropout outside [0, 1), or an image too small for lenet.
    """
    if not isinstance(name, str) or name.lower() not in MODEL_NAMES:
        raise ConfigError(
            f"unknown model {name!r}", hint=did_you_mean(str(name).lower(), MODEL_NAMES)
        )
    name = name.lower()
    input_shape = check_input_shape(input_shape)
    n_classes = check_n_classes(n_classes)
    activation = check_activation(activation)
    dropout = check_dropout(dropout)
    batch_norm = check_batch_norm(batch_norm)
    init = format_init(*parse_init(init))

    model: nn.Module
    if name == "logreg":
        _refuse_hidden_options(dropout, batch_norm)
        hidden_sizes: tuple[int, ...] = ()
        _check_size(name, input_shape, n_classes, hidden_sizes)
        model = LogisticRegression(input_shape, n_classes, init=init)
    else:
        hidden_sizes = check_hidden(hidden, name)
        _check_size(name, input_shape, n_classes, hidden_sizes)
        cls = MLP if name == "mlp" else LeNet
        model = cls(
            input_shape,
            n_classes,
            hidden=hidden_sizes,
            activation=activation,
            dropout=dropout,
            batch_norm=batch_norm,
            init=init,
        )
    values = (name, list(input_shape), n_classes, list(hidden_sizes))
    spec = dict(zip(_SPEC_KEYS, (*values, activation, dropout, batch_norm, init), strict=True))
    # A plain attribute (not a buffer): JSON metadata, not part of the state_dict.
    setattr(model, "descentlab_spec", spec)  # noqa: B010 - nn.Module's __setattr__ typing
    return model


def _check_size(
    name: str, input_shape: Sequence[int], n_classes: int, hidden: Sequence[int]
) -> None:
    """Refuse, before allocating, a model whose dense layers alone exceed the byte limit.

    The dense layers' weights (inputs x hidden x ... x classes) bound the size from
    below; training keeps about four float32 copies (parameters, gradients and up to
    two optimizer moments), which is what is compared with ``DESCENTLAB_MAX_BYTES``.
    """
    widths = [math.prod(input_shape), *hidden, n_classes]
    if name == "lenet":
        widths = widths[1:]  # the convolutions shrink the input first; count from hidden
    weights = sum(a * b + b for a, b in itertools.pairwise(widths))
    check_bytes(16 * weights, f"model {name} with hidden sizes {list(hidden)}", error=ConfigError)


def _refuse_hidden_options(dropout: float, batch_norm: bool) -> None:
    """logreg refuses options that would silently do nothing rather than ignore them."""
    if dropout:
        raise ConfigError(
            "logreg has no hidden layer to apply dropout to",
            hint="use model 'mlp' for dropout, or set dropout=0",
        )
    if batch_norm:
        raise ConfigError(
            "logreg has no hidden layer to batch-normalize",
            hint="use model 'mlp' for batch norm, or set batch_norm=False",
        )


def build_model_from_spec(spec: Mapping[str, Any]) -> nn.Module:
    """Rebuild a model from its ``descentlab_spec`` (e.g. read back from JSON).

    The parameters are freshly initialized; load the saved ``state_dict`` afterwards.
    """
    required = ("name", "input_shape", "n_classes")
    if not isinstance(spec, Mapping) or not all(k in spec for k in required):
        raise ConfigError(
            f"a model spec must be a mapping with keys {', '.join(required)}, got {spec!r}",
            hint="use the dict stored as model.descentlab_spec by build_model",
        )
    unknown = sorted(set(spec) - set(_SPEC_KEYS))
    if unknown:
        raise ConfigError(
            f"unknown key {unknown[0]!r} in model spec",
            hint=did_you_mean(unknown[0], _SPEC_KEYS),
        )
    kwargs = {k: v for k, v in spec.items() if k not in ("name", "input_shape", "n_classes")}
    if isinstance(kwargs.get("hidden"), list):  # JSON has no tuples
        kwargs["hidden"] = tuple(kwargs["hidden"])
    return build_model(spec["name"], spec["input_shape"], spec["n_classes"], **kwargs)


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of scalar parameters (shared tensors counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
