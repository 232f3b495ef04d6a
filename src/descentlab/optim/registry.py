"""Optimizers by name, for config files and the command line.

``build_optimizer("momentum", model.parameters(), lr=0.01)`` builds
``SGD(lr=0.01, momentum=0.9)``; ``build_optimizer("torch.AdamW", ...)`` builds PyTorch's own
class so the two can be compared in the same harness.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from typing import Any

import torch

from descentlab.errors import ConfigError, did_you_mean
from descentlab.optim._base import ParamsT
from descentlab.optim.adadelta import AdaDelta
from descentlab.optim.adagrad import AdaGrad
from descentlab.optim.adam import Adam
from descentlab.optim.rmsprop import RMSProp
from descentlab.optim.sgd import SGD

#: The tutorial's ``logistic_sgd.py`` learning rate (``learning_rate=0.13``).
TUTORIAL_SGD_LR = 0.13
#: 0.13 · (1 − 0.9): with momentum α the steady step is ε/(1 − α) times the gradient
#: (Goodfellow et al. §8.3.2), so this keeps the tutorial's step size at α = 0.9.
MOMENTUM_LR = 0.013


@dataclass(frozen=True)
class _Entry:
    cls: type[torch.optim.Optimizer]
    summary: str
    # Defaults this name sets on top of the class's own (the user may override them) ...
    presets: dict[str, Any] = field(default_factory=dict)
    # ... and values it fixes (overriding them would make the name a lie).
    fixed: dict[str, Any] = field(default_factory=dict)
    # The learning rate a run uses when none is given, where the class has none.
    default_lr: float | None = None


_REGISTRY: dict[str, _Entry] = {
    "sgd": _Entry(SGD, "minibatch SGD, Algorithm 8.1 (lr required)", default_lr=TUTORIAL_SGD_LR),
    "momentum": _Entry(
        SGD,
        "SGD with momentum, Algorithm 8.2 (lr required)",
        presets={"momentum": 0.9},
        default_lr=MOMENTUM_LR,
    ),
    "nesterov": _Entry(
        SGD,
        "SGD with Nesterov momentum, Algorithm 8.3 (lr required)",
        presets={"momentum": 0.9},
        fixed={"nesterov": True},
        default_lr=MOMENTUM_LR,
    ),
    "adagrad": _Entry(AdaGrad, "AdaGrad, Algorithm 8.4"),
    "rmsprop": _Entry(RMSProp, "RMSProp, Algorithm 8.5"),
    "rmsprop-nesterov": _Entry(
        RMSProp,
        "RMSProp with Nesterov momentum, Algorithm 8.6",
        presets={"momentum": 0.9},
        fixed={"nesterov": True},
    ),
    "adam": _Entry(Adam, "Adam, Algorithm 8.7"),
    "adadelta": _Entry(AdaDelta, "AdaDelta (Zeiler 2012)"),
}

#: The names :func:`build_optimizer` accepts besides ``torch.<ClassName>``.
OPTIMIZER_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def _torch_optimizers() -> dict[str, type[torch.optim.Optimizer]]:
    return {
        name: obj
        for name, obj in vars(torch.optim).items()
        if isinstance(obj, type)
        and issubclass(obj, torch.optim.Optimizer)
        and obj is not torch.optim.Optimizer
    }


def _hyperparameters(cls: type) -> dict[str, Any]:
    """Keyword parameters of ``cls.__init__`` (besides ``params``) with their defaults."""
    sig = inspect.signature(cls)
    return {
        name: (None if p.default is inspect.Parameter.empty else p.default)
        for name, p in sig.parameters.items()
        if name not in ("self", "params")
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    }


def _resolve(name: str) -> tuple[str, type[torch.optim.Optimizer], _Entry | None]:
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(
            f"optimizer name must be a non-empty string, got {name!r}",
            hint="valid choices: " + ", ".join(OPTIMIZER_NAMES),
        )
    key = name.strip()
    if key.lower().startswith("torch."):
        wanted = key[len("torch.") :]
        classes = _torch_optimizers()
        by_lower = {n.lower(): n for n in classes}
        if wanted.lower() not in by_lower:
            raise ConfigError(
                f"unknown PyTorch optimizer {key!r}",
                hint=did_you_mean(f"torch.{wanted}", [f"torch.{n}" for n in classes]),
            )
        canonical = by_lower[wanted.lower()]
        _check_dense_step(f"torch.{canonical}", classes[canonical])
        return f"torch.{canonical}", classes[canonical], None
    lowered = key.lower().replace("_", "-")
    if lowered not in _REGISTRY:
        raise ConfigError(
            f"unknown optimizer {name!r}",
            hint=did_you_mean(lowered, [*OPTIMIZER_NAMES, "torch.<ClassName>"]),
        )
    entry = _REGISTRY[lowered]
    return lowered, entry.cls, entry


@functools.cache
def _dense_step_error(name: str) -> str | None:
    """Why ``torch.optim.<name>`` cannot take one step on a dense gradient (None: it can)."""
    cls: Any = _torch_optimizers()[name]
    weight = torch.zeros(2, requires_grad=True)
    weight.grad = torch.ones(2)
    try:
        opt = cls([weight], lr=0.01) if "lr" in _hyperparameters(cls) else cls([weight])
        opt.step(lambda: 0.0)
    except Exception as exc:  # a third-party class may fail in any way: report it
        return " ".join(f"{type(exc).__name__}: {exc}".split())[:160]
    return None


def _check_dense_step(name: str, cls: type[torch.optim.Optimizer]) -> None:
    """Refuse, before training, a torch optimizer that cannot update descentlab's models.

    Every model here has dense gradients; a class such as ``torch.SparseAdam`` fails
    only at its first step.  One step on a two-element parameter (cached per class)
    finds that out up front.
    """
    error = _dense_step_error(cls.__name__)
    if error is not None:
        raise ConfigError(
            f"optimizer {name!r} cannot train these models ({error})",
            hint="choose another, e.g. adam or torch.AdamW",
        )


def optimizer_hyperparameters(name: str) -> dict[str, Any]:
    """The hyperparameters ``name`` accepts, with the defaults it uses (``None`` = required)."""
    _, cls, entry = _resolve(name)
    hparams = _hyperparameters(cls)
    if entry is not None:
        hparams.update(entry.presets)
        hparams.update(entry.fixed)
    return hparams


def default_lr(name: str) -> float:
    """The learning rate a run of optimizer ``name`` uses when none is given.

    The class's own default where it has one -- Adam 0.001 (Kingma & Ba; the book's
    Algorithm 8.7 suggests 0.001), RMSProp 0.001, AdaGrad 0.01 (torch's), AdaDelta 1.0
    (torch's; Zeiler's rule has no ε) -- else the tutorial's 0.13 for plain SGD and
    0.013 for momentum and Nesterov (:data:`MOMENTUM_LR`); a ``torch.<Name>`` class
    without a default lr gets the tutorial's 0.13.
    """
    _, cls, entry = _resolve(name)
    if entry is not None and entry.default_lr is not None:
        return entry.default_lr
    lr = _hyperparameters(cls).get("lr")
    return float(lr) if isinstance(lr, int | float) else TUTORIAL_SGD_LR


def default_lr_text() -> str:
    """The per-optimizer default learning rates in one phrase (for help texts)."""
    return ", ".join(f"{name} {default_lr(name):g}" for name in OPTIMIZER_NAMES)


def build_optimizer(name: str, params: ParamsT, **hparams: Any) -> torch.optim.Optimizer:
    """Build an optimizer by name.

    ``name`` is one of :data:`OPTIMIZER_NAMES` (``sgd, momentum, nesterov, adagrad, rmsprop,
    rmsprop-nesterov, adam, adadelta``; case and ``_``/``-`` do not matter) or
    ``torch.<ClassName>`` for any ``torch.optim`` class (e.g. ``torch.AdamW``).
    Hyperparameters use the classes' public names (``lr, momentum, nesterov, rho, betas,
    eps, weight_decay, ...``); those passed as ``None`` are ignored, so a CLI can forward
    every flag. Unknown names and invalid values raise :class:`ConfigError`.
    """
    canonical, cls, entry = _resolve(name)
    given = {k: v for k, v in hparams.items() if v is not None}
    valid = _hyperparameters(cls)
    for key in given:
        if key not in valid:
            raise ConfigError(
                f"optimizer {canonical!r} has no hyperparameter {key!r}",
                hint=did_you_mean(key, list(valid)),
            )
    kwargs: dict[str, Any] = {}
    if entry is not None:
        for key, value in entry.fixed.items():
            if key in given and given[key] != value:
                raise ConfigError(
                    f"optimizer {canonical!r} always uses {key}={value!r}, got {given[key]!r}",
                    hint="use 'momentum' for classical momentum"
                    if canonical == "nesterov"
                    else "use 'rmsprop' with momentum for classical momentum",
                )
        kwargs.update(entry.presets)
        kwargs.update(entry.fixed)
    kwargs.update(given)
    try:
        return cls(params, **kwargs)
    except ConfigError:
        raise
    except ValueError as exc:
        # torch.optim classes validate with bare ValueErrors ("Invalid learning rate: -1").
        raise ConfigError(
            f"cannot build optimizer {canonical!r}: {exc}",
            hint="check its hyperparameters: " + ", ".join(valid),
        ) from exc


def describe_optimizers() -> str:
    """One line per optimizer name with its hyperparameters and defaults (for --help)."""
    lines = []
    width = max(len(n) for n in OPTIMIZER_NAMES)
    for name in OPTIMIZER_NAMES:
        entry = _REGISTRY[name]
        hparams = optimizer_hyperparameters(name)
        shown = ", ".join(
            f"{k}=<required>" if v is None else f"{k}={v!r}"
            for k, v in hparams.items()
            if k != "foreach"
        )
        lines.append(f"{name:<{width}}  {entry.summary}; {shown}")
    lines.append(f"{'torch.<Name>':<{width}}  any torch.optim class, e.g. torch.AdamW")
    return "\n".join(lines)
