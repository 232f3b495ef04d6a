"""Checks for optimizer hyperparameters, in the spirit of scikit-learn's validation.

Every check returns the value converted to the type the optimizer stores (``float``,
``bool`` or a tuple of floats) and raises :class:`~descentlab.errors.ConfigError` (a
``ValueError``) whose message names the hyperparameter, the book's symbol for it, the
offending value and the admissible range, so a typo in a config file reads as one line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real
from typing import Any

import torch

from descentlab.errors import ConfigError

# The book's symbol for each public hyperparameter name, quoted in error messages.
SYMBOLS: dict[str, str] = {
    "lr": "ε",
    "momentum": "α",
    "rho": "ρ",
    "eps": "δ",
    "betas": "(ρ1, ρ2)",
    "weight_decay": "λ",
}


def _label(name: str, owner: str | None) -> str:
    symbol = SYMBOLS.get(name)
    label = f"{name} ({symbol})" if symbol else name
    return f"{owner}: {label}" if owner else label


def _as_float(name: str, value: Any, owner: str | None) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_complex():
        value = value.item()  # torch.optim accepts one-element tensors (e.g. betas)
    # bool is a subclass of int; lr=True is always a mistake.
    if isinstance(value, bool) or not isinstance(value, Real):
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(
                    f"{_label(name, owner)} must be a number, got {value!r}",
                    hint=f"write e.g. {name}=0.01",
                ) from None
        else:
            raise ConfigError(
                f"{_label(name, owner)} must be a number, got {type(value).__name__} {value!r}",
                hint=f"write e.g. {name}=0.01",
            )
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(
            f"{_label(name, owner)} must be finite, got {value!r}",
            hint="check the config for an overflow or a missing value",
        )
    return value


def _at_least(name: str, value: Any, owner: str | None, *, strict: bool, hint: str) -> float:
    """A finite number > 0 (``strict``) or >= 0."""
    x = _as_float(name, value, owner)
    if x < 0.0 or (strict and x == 0.0):
        raise ConfigError(
            f"{_label(name, owner)} must be {'>' if strict else '>='} 0, got {x!r}", hint=hint
        )
    return x


def positive(name: str, value: Any, *, owner: str | None = None) -> float:
    """A finite number > 0 (learning rates, δ)."""
    return _at_least(
        name, value, owner, strict=True, hint="typical values: lr 1e-3..1, eps 1e-8..1e-6"
    )


def nonnegative(name: str, value: Any, *, owner: str | None = None) -> float:
    """A finite number >= 0 (weight decay)."""
    return _at_least(name, value, owner, strict=False, hint="use 0 to disable")


def learning_rate(name: str, value: Any, *, owner: str | None = None) -> float | torch.Tensor:
    """A learning rate: a finite number >= 0, or a one-element tensor holding one (as torch).

    0 is allowed (a schedule may end there, a warm-up start there). A tensor is kept as the
    same tensor object, so a schedule or the user can change it in place (``torch.compile``
    then does not recompile when it changes).
    """
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.is_complex():
            raise ConfigError(
                f"{_label(name, owner)} must be a one-element real tensor, got shape "
                f"{tuple(value.shape)}",
                hint=f"write e.g. {name}=torch.tensor(0.01)",
            )
        nonnegative(name, value.item(), owner=owner)
        return value
    return nonnegative(name, value, owner=owner)


def optional_boolean(name: str, value: Any, *, owner: str | None = None) -> bool | None:
    """``None`` (let the optimizer choose, as torch's ``foreach``/``fused``) or a bool."""
    return None if value is None else boolean(name, value, owner=owner)


def unit_interval(name: str, value: Any, *, owner: str | None = None) -> float:
    """A number in [0, 1) (momentum α, decay rates ρ): 1 would never forget anything."""
    x = _as_float(name, value, owner)
    if not 0.0 <= x < 1.0:
        raise ConfigError(
            f"{_label(name, owner)} must be in [0, 1), got {x!r}",
            hint="typical values are 0.9, 0.95 or 0.99",
        )
    return x


def boolean(name: str, value: Any, *, owner: str | None = None) -> bool:
    """A real ``bool`` (``nesterov``, ``foreach``, ...); 0/1 are accepted, strings are not."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ConfigError(
        f"{_label(name, owner)} must be true or false, got {value!r}",
        hint=f"write {name}=True or {name}=False",
    )


def betas(name: str, value: Any, *, owner: str | None = None) -> tuple[float, float]:
    """A pair (ρ1, ρ2), each in [0, 1); a string ``"0.9,0.999"`` is accepted for CLIs."""
    if isinstance(value, str):
        value = [part.strip() for part in value.strip("()[] ").split(",")]
    if not isinstance(value, Sequence) or len(value) != 2:
        raise ConfigError(
            f"{_label(name, owner)} must be a pair of numbers, got {value!r}",
            hint=f"write e.g. {name}=(0.9, 0.999)",
        )
    b1 = unit_interval(f"{name}[0]", value[0], owner=owner)
    b2 = unit_interval(f"{name}[1]", value[1], owner=owner)
    return (b1, b2)
