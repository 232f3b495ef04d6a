"""Weight initialization strategies, chosen by name.

A strategy is a name, optionally with options: ``"glorot"``, ``"normal:std=0.1"``.
Weights of linear and convolutional layers are drawn as below; biases are always zero
(Goodfellow et al. §8.4: "bias: okay to set zero"); normalization layers get ``γ = 1``,
``β = 0`` and fresh running statistics.  ``fan_in`` is the number of inputs of a unit
(``in_features``, or ``in_channels·kh·kw`` for a conv), ``fan_out`` the number of units
it feeds (``out_features``, or ``out_channels·kh·kw / pool_area`` for a conv followed by
max-pooling, as in the tutorial's LeNet).

==============  ===========================================================================
``zeros``       ``W = 0``.  Fine for softmax regression (convex, no symmetry to break);
                in a network with hidden layers every hidden unit stays identical.
``normal``      ``W ~ N(0, σ²)``, ``σ = 0.01`` unless ``normal:std=σ`` (the course notes'
                small Gaussian).
``uniform``     ``W ~ U(-1/√fan_in, 1/√fan_in)`` (the heuristic of Goodfellow et al. §8.4).
``glorot``      ``W ~ U(-r, r)``, ``r = g·√(6/(fan_in + fan_out))``, ``g = 4`` when the layer
                feeds a sigmoid, else 1 (Glorot & Bengio 2010, the tutorial's tanh init).
                Alias ``xavier``.
``he``          ``W ~ N(0, 2/fan_in)`` (He et al. 2015, derived for relu).  Alias
                ``kaiming``.
``tutorial``    The Deep Learning Tutorials' draws, number for number: one
                ``numpy.random.RandomState(seed)`` (``tutorial:seed=1234`` for mlp.py,
                ``tutorial:seed=23455`` for convolutional_mlp.py), ``glorot`` bounds in the
                tutorial's layer order and layout (see :mod:`descentlab.models.tutorial_init`).
``default``     Each descentlab model's own recipe, from the tutorials: the output
                (softmax) layer zero, hidden and conv layers ``glorot`` (×4 for sigmoid)
                except before relu, where ``he`` is used.  So logreg is all zeros, the
                tutorial's MLP and LeNet are reproduced exactly.  Layers of other models
                (untagged) get PyTorch's own ``reset_parameters()``.
==============  ===========================================================================

Randomness comes from ``generator`` when given, otherwise from the global RNG, so
``torch.manual_seed(s)`` before building a model makes its initialization reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _NormBase
from torch.nn.modules.conv import _ConvNd

from descentlab.errors import ConfigError, did_you_mean
from descentlab.models.base import layer_activation, layer_pool_area
from descentlab.models.tutorial_init import tutorial_init

__all__ = ["INIT_STRATEGIES", "init_parameters", "parse_init"]

#: Strategy names and the options each accepts, with their defaults.
INIT_STRATEGIES: dict[str, dict[str, float]] = {
    "default": {},
    "zeros": {},
    "normal": {"std": 0.01},
    "uniform": {},
    "glorot": {},
    "he": {},
    "tutorial": {"seed": 1234},
}
_ALIASES = {"xavier": "glorot", "kaiming": "he", "zero": "zeros", "gaussian": "normal"}

_NORM_LAYERS = (_NormBase, nn.LayerNorm, nn.GroupNorm)  # _NormBase: BatchNorm*, InstanceNorm*
_WEIGHT_LAYERS = (nn.Linear, _ConvNd)


def parse_init(spec: str | None) -> tuple[str, dict[str, float]]:
    """``"normal:std=0.1"`` → ``("normal", {"std": 0.1})``; ``None`` means ``"default"``.

    Unknown names or options and non-positive values raise :class:`ConfigError`.
    """
    if spec is None:
        return "default", {}
    if not isinstance(spec, str):
        raise ConfigError(
            f"init must be a strategy name such as 'glorot', got {spec!r}",
            hint="valid strategies: " + ", ".join(INIT_STRATEGIES),
        )
    name, _, opts_text = spec.strip().partition(":")
    name = name.strip().lower()
    name = _ALIASES.get(name, name)
    if name not in INIT_STRATEGIES:
        raise ConfigError(
            f"unknown init strategy {spec!r}",
            hint=did_you_mean(name, [*INIT_STRATEGIES, *_ALIASES]),
        )
    allowed = INIT_STRATEGIES[name]
    options = dict(allowed)
    for item in filter(None, (part.strip() for part in opts_text.split(","))):
        key, eq, value = (s.strip() for s in item.partition("="))
        if key not in allowed:
            hint = (
                did_you_mean(key, tuple(allowed))
                if allowed
                else f"strategy {name!r} takes no options"
            )
            raise ConfigError(f"unknown option {key!r} in init {spec!r}", hint=hint)
        try:
            number = float(value) if eq else math.nan
        except ValueError:
            number = math.nan
        if not (math.isfinite(number) and number > 0):
            raise ConfigError(
                f"init option {key} must be a positive number, got {value!r} in {spec!r}",
                hint=f"e.g. '{name}:{key}=0.1'",
            )
        options[key] = number
    return name, options


def format_init(name: str, options: dict[str, float]) -> str:
    """Canonical spec string: ``"normal:std=0.1"``, ``"glorot"`` (inverse of parse_init)."""
    if not options:
        return name
    return name + ":" + ",".join(f"{k}={v!r}" for k, v in sorted(options.items()))


def _fans(weight: Tensor, pool_area: int) -> tuple[int, float]:
    """(fan_in, fan_out) of a ``(out, in, *kernel)`` weight; fan_out divided by the pool."""
    receptive = math.prod(weight.shape[2:])
    fan_in = weight.shape[1] * receptive
    fan_out = weight.shape[0] * receptive / pool_area
    return fan_in, fan_out


def _draw(
    weight: Tensor,
    fill: Callable[[Tensor, torch.Generator | None], object],
    generator: torch.Generator | None,
) -> None:
    """Fill ``weight`` in place, drawing on the generator's device when it differs."""
    if generator is None or generator.device == weight.device:
        fill(weight, generator)
    else:
        tmp = torch.empty(weight.shape, dtype=weight.dtype, device=generator.device)
        fill(tmp, generator)
        weight.copy_(tmp)


def _init_weight(
    weight: Tensor,
    name: str,
    options: dict[str, float],
    activation: str | None,
    pool_area: int,
    generator: torch.Generator | None,
) -> None:
    fan_in, fan_out = _fans(weight, pool_area)
    if name == "zeros":
        weight.zero_()
    elif name == "normal":
        std = options["std"]
        _draw(weight, lambda w, g: w.normal_(0.0, std, generator=g), generator)
    elif name == "uniform":
        bound = 1.0 / math.sqrt(fan_in)
        _draw(weight, lambda w, g: w.uniform_(-bound, bound, generator=g), generator)
    elif name == "glorot":
        gain = 4.0 if activation == "sigmoid" else 1.0
        bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
        _draw(weight, lambda w, g: w.uniform_(-bound, bound, generator=g), generator)
    elif name == "he":
        std = math.sqrt(2.0 / fan_in)
        _draw(weight, lambda w, g: w.normal_(0.0, std, generator=g), generator)
    else:  # pragma: no cover - parse_init admits only the names above
        raise AssertionError(name)


def init_parameters(
    module: nn.Module,
    strategy: str | None = "default",
    generator: torch.Generator | None = None,
) -> nn.Module:
    """Initialize every linear/conv/normalization layer of ``module`` in place; return it.

    Parameters
    ----------
    module:
        A descentlab model, or any module built from ``nn.Linear``, ``nn.Conv*d`` and
        normalization layers.
    strategy:
        A strategy spec (see the module docstring), e.g. ``"glorot"`` or
        ``"normal:std=0.1"``; ``None`` means ``"default"``.
    generator:
        Optional ``torch.Generator``; otherwise the global RNG is used.

    Raises
    ------
    ConfigError
        For an unknown strategy or option, or a layer with parameters that no strategy
        here knows how to initialize (with any strategy other than ``"default"``).
    """
    name, options = parse_init(strategy)
    if name == "tutorial":
        return tutorial_init(module, int(options["seed"]))
    with torch.no_grad():
        for layer_name, layer in module.named_modules():
            if isinstance(layer, _WEIGHT_LAYERS):
                tagged, activation = layer_activation(layer)
                if name == "default":
                    if not tagged:
                        layer.reset_parameters()
                        continue
                    if activation is None:
                        layer_strategy = "zeros"
                    elif activation == "relu":
                        layer_strategy = "he"
                    else:
                        layer_strategy = "glorot"
                else:
                    layer_strategy = name
                _init_weight(
                    layer.weight,
                    layer_strategy,
                    options,
                    activation,
                    layer_pool_area(layer),
                    generator,
                )
                if layer.bias is not None:
                    layer.bias.zero_()
            elif isinstance(layer, _NORM_LAYERS):
                layer.reset_parameters()
            elif name != "default" and any(True for _ in layer.parameters(recurse=False)):
                raise ConfigError(
                    f"init strategy {name!r} cannot initialize layer {layer_name or '<root>'!r} "
                    f"of type {type(layer).__name__}",
                    hint="use init='default' or initialize that layer yourself",
                )
    return module
