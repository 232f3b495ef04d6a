"""Learning-rate schedules (§8.3.1) as ``torch.optim.lr_scheduler.LRScheduler`` objects.

SGD converges when Σ_k ε_k = ∞ and Σ_k ε_k² < ∞; in practice the book decays ε linearly
until iteration τ and then keeps it constant (:class:`LinearDecay`). The other schedules
are the common alternatives. Every scheduler here has

* ``interval`` — ``"step"`` (call ``.step()`` after every optimizer step / iteration) or
  ``"epoch"`` (call it once per epoch), so a training loop knows when to step it;
* ``needs_metric`` — ``True`` only for :class:`ReduceOnPlateau`, whose ``.step(metric)``
  takes the validation metric (lower is better by default).

The learning rates are computed in closed form from the initial ones (ε_k = f(k)·ε_0 with
k = ``last_epoch``, counted from 0), so they do not accumulate rounding errors and a
``state_dict`` round trip restores them exactly. They also overwrite whatever else changed
``group["lr"]`` in between: do not chain two of them on one optimizer.

:func:`build_schedule` parses the short specs used in configs and on the command line.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from descentlab.errors import ConfigError, did_you_mean

INTERVALS = ("step", "epoch")


def _check_interval(interval: Any) -> str:
    if interval not in INTERVALS:
        raise ConfigError(
            f"schedule interval must be 'step' or 'epoch', got {interval!r}",
            hint="'step' = once per iteration, 'epoch' = once per pass over the data",
        )
    return interval


def _whole(what: str, value: Any, hint: str | None = None) -> int:
    """``value`` if it is an integer >= 1 (a count of steps or epochs); ``what`` names it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{what} must be an integer >= 1, got {value!r}", hint=hint)
    return value


def _decay_factor(what: str, gamma: Any) -> float:
    """γ as a float in (0, 1] (a multiplicative decay); ``what`` names the schedule."""
    g = float(gamma)
    if not (0.0 < g <= 1.0):
        raise ConfigError(f"{what} gamma must be in (0, 1], got {gamma!r}")
    return g


def _positive(name: str, value: Any) -> float:
    x = float(value)
    if not (math.isfinite(x) and x > 0):
        raise ConfigError(f"schedule {name} must be a finite number > 0, got {value!r}")
    return x


class _ClosedFormSchedule(LRScheduler):
    """ε_k = factor(k) · ε_0 for each param group, k = ``last_epoch``."""

    needs_metric: ClassVar[bool] = False

    def __init__(self, optimizer: torch.optim.Optimizer, interval: str, last_epoch: int = -1):
        self.interval = _check_interval(interval)
        super().__init__(optimizer, last_epoch)

    def factor(self, k: int) -> float:
        raise NotImplementedError

    def lr_at(self, base_lr: float, k: int) -> float:
        """The learning rate at step/epoch ``k`` for a group whose initial rate is ``base_lr``."""
        return base_lr * self.factor(k)

    def get_lr(self) -> list[float]:  # type: ignore[override]
        return [self.lr_at(float(base), self.last_epoch) for base in self.base_lrs]

    _get_closed_form_lr = get_lr


class Constant(_ClosedFormSchedule):
    """ε_k = ε_0 (no schedule; stepping it is harmless)."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, interval: str = "epoch", last_epoch: int = -1
    ) -> None:
        super().__init__(optimizer, interval, last_epoch)

    def factor(self, k: int) -> float:
        return 1.0


class LinearDecay(_ClosedFormSchedule):
    """The book's linear decay: ε_k = (1 − k/τ) ε_0 + (k/τ) ε_τ for k ≤ τ, then ε_τ.

    ``ε_τ = final_ratio · ε_0`` ("usually 1% of ε_0"). ``k`` counts optimizer steps from 0
    (the first update uses ε_0); the book suggests τ = the number of iterations of a few
    hundred passes through the training set.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        tau: int,
        final_ratio: float = 0.01,
        interval: str = "step",
        last_epoch: int = -1,
    ) -> None:
        _whole("LinearDecay tau (τ)", tau, "e.g. tau=10000, or tau_epochs=... in a schedule spec")
        ratio = float(final_ratio)
        if not (math.isfinite(ratio) and ratio >= 0):
            raise ConfigError(
                f"LinearDecay final_ratio must be a finite number >= 0, got {final_ratio!r}",
                hint="the book uses 0.01 (ε_τ = 1% of ε_0)",
            )
        self.tau = tau
        self.final_ratio = ratio
        super().__init__(optimizer, interval, last_epoch)

    def lr_at(self, base_lr: float, k: int) -> float:
        eps_tau = self.final_ratio * base_lr
        if k >= self.tau:
            return eps_tau
        frac = k / self.tau
        return (1.0 - frac) * base_lr + frac * eps_tau

    def factor(self, k: int) -> float:
        return self.lr_at(1.0, k)


class ExponentialDecay(_ClosedFormSchedule):
    """ε_k = ε_0 · γ^k."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        gamma: float,
        interval: str = "epoch",
        last_epoch: int = -1,
    ) -> None:
        self.gamma = _decay_factor("exponential decay", gamma)
        super().__init__(optimizer, interval, last_epoch)

    def factor(self, k: int) -> float:
        return self.gamma**k


class StepDecay(_ClosedFormSchedule):
    """ε_k = ε_0 · γ^⌊k / step_size⌋ (multiply by γ every ``step_size`` epochs)."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        step_size: int,
        gamma: float = 0.1,
        interval: str = "epoch",
        last_epoch: int = -1,
    ) -> None:
        self.step_size = _whole("step decay step_size", step_size)
        self.gamma = _decay_factor("step decay", gamma)
        super().__init__(optimizer, interval, last_epoch)

    def factor(self, k: int) -> float:
        return self.gamma ** (k // self.step_size)


class InverseTimeDecay(_ClosedFormSchedule):
    """ε_k = ε_0 / (1 + k/t0): Σ ε_k = ∞ and Σ ε_k² < ∞, the classical SGD conditions."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        t0: float,
        interval: str = "step",
        last_epoch: int = -1,
    ) -> None:
        self.t0 = _positive("t0", t0)
        super().__init__(optimizer, interval, last_epoch)

    def factor(self, k: int) -> float:
        return 1.0 / (1.0 + k / self.t0)


class ReduceOnPlateau(ReduceLROnPlateau):
    """Multiply ε by ``factor`` when the validation metric stopped improving.

    torch's ``ReduceLROnPlateau`` with ``interval = "epoch"``: call ``.step(metric)`` after
    each validation (``mode="min"`` for losses and error rates, ``"max"`` for accuracies).
    """

    needs_metric: ClassVar[bool] = True

    def __init__(self, optimizer: torch.optim.Optimizer, **kwargs: Any) -> None:
        self.interval = "epoch"
        factor = float(kwargs.get("factor", 0.1))
        if not 0.0 < factor < 1.0:
            raise ConfigError(f"plateau factor must be in (0, 1), got {factor!r}", hint="e.g. 0.5")
        for key in ("patience", "cooldown"):
            if int(kwargs.get(key, 0)) < 0:
                raise ConfigError(f"plateau {key} must be >= 0, got {kwargs[key]!r}")
        try:
            super().__init__(optimizer, **kwargs)
        except ValueError as exc:
            raise ConfigError(f"invalid plateau schedule: {exc}") from exc


# ---------------------------------------------------------------------------- spec parsing
def _int(key: str, text: str) -> int:
    value = float(text)
    if not value.is_integer():
        raise ValueError(f"{key} must be a whole number")
    return int(value)


def _float(key: str, text: str) -> float:
    return float(text)


def _str(key: str, text: str) -> str:
    return text


_SPEC_KEYS: dict[str, dict[str, Any]] = {
    # schedule name -> {key: converter}
    "constant": {},
    "linear": {
        "tau": _int,
        "tau_epochs": _float,
        "final_ratio": _float,
        "interval": _str,
    },
    "exp": {"gamma": _float, "interval": _str},
    "step": {
        "step_size": _int,
        "gamma": _float,
        "interval": _str,
    },
    "inv": {"t0": _float, "interval": _str},
    "plateau": {
        "factor": _float,
        "patience": _int,
        "threshold": _float,
        "cooldown": _int,
        "min_lr": _float,
        "mode": _str,
    },
}
_ALIASES = {"exponential": "exp", "inverse": "inv", "1/t": "inv", "none": "constant"}
_REQUIRED = {"exp": ("gamma",), "step": ("step_size",), "inv": ("t0",)}
_EXAMPLES = {"gamma": "0.99", "step_size": "10", "t0": "1000"}

#: The schedule names :func:`build_schedule` understands.
SCHEDULE_NAMES: tuple[str, ...] = tuple(_SPEC_KEYS)


def describe_schedules() -> str:
    """Help text: one line per schedule spec."""
    return "\n".join(
        [
            "constant                                 ε_k = ε_0 (default)",
            "linear:tau=N[,final_ratio=0.01]          book §8.3.1: linear to ε_τ at step τ, "
            "then constant (or tau_epochs=E)",
            "exp:gamma=G[,interval=epoch]             ε_k = ε_0 γ^k",
            "step:step_size=S[,gamma=0.1]             ε_k = ε_0 γ^⌊k/S⌋ (per epoch)",
            "inv:t0=T[,interval=step]                 ε_k = ε_0 / (1 + k/T)",
            "plateau:factor=0.1,patience=10           ×factor when validation stalls",
        ]
    )


def parse_schedule_spec(spec: str | None) -> tuple[str, dict[str, Any]]:
    """Split ``"name:key=value,..."`` into the canonical name and converted options."""
    if spec is None or not str(spec).strip():
        return "constant", {}
    text = str(spec).strip()
    name, _, rest = text.partition(":")
    name = name.strip().lower()
    name = _ALIASES.get(name, name)
    if name not in _SPEC_KEYS:
        raise ConfigError(
            f"unknown learning-rate schedule {name!r} in {text!r}",
            hint=did_you_mean(name, list(SCHEDULE_NAMES)),
        )
    keys = _SPEC_KEYS[name]
    options: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        valid = ", ".join(keys) if keys else "none"
        if not sep or not value:
            raise ConfigError(
                f"schedule option {item!r} in {text!r} is not key=value",
                hint=f"valid keys for {name!r}: {valid}",
            )
        if key not in keys:
            hint = did_you_mean(key, list(keys)) if keys else f"{name!r} takes no options"
            raise ConfigError(
                f"unknown key {key!r} for schedule {name!r} in {text!r}",
                hint=f"{hint}; valid keys: {valid}",
            )
        if key in options:
            raise ConfigError(f"schedule key {key!r} given twice in {text!r}")
        try:
            options[key] = keys[key](key, value)
        except ValueError as exc:
            raise ConfigError(
                f"bad value {value!r} for schedule key {key!r} in {text!r}", hint=str(exc)
            ) from None
    for key in _REQUIRED.get(name, ()):
        if key not in options:
            raise ConfigError(
                f"schedule {name!r} needs {key}=... in {text!r}",
                hint=f"e.g. {name}:{key}={_EXAMPLES[key]}",
            )
    if name == "linear" and ("tau" in options) == ("tau_epochs" in options):
        raise ConfigError(
            f"schedule 'linear' needs exactly one of tau=STEPS or tau_epochs=EPOCHS in {text!r}",
            hint="e.g. linear:tau=10000,final_ratio=0.01",
        )
    return name, options


def build_schedule(
    spec: str | None, optimizer: torch.optim.Optimizer, *, steps_per_epoch: int
) -> LRScheduler:
    """Build a scheduler from a spec such as ``"linear:tau=1000,final_ratio=0.01"``.

    Specs: ``constant`` (also ``None``), ``linear:tau=...|tau_epochs=...[,final_ratio=]``,
    ``exp:gamma=...``, ``step:step_size=...[,gamma=]``, ``inv:t0=...``,
    ``plateau:factor=...,patience=...``; ``interval=step|epoch`` overrides when the
    schedule advances (defaults: linear and inv per step, exp and step per epoch, plateau
    per validation). ``steps_per_epoch`` converts ``tau_epochs`` into iterations. The
    result has ``.interval`` and ``.needs_metric``.
    """
    _whole("steps_per_epoch", steps_per_epoch)
    name, opts = parse_schedule_spec(spec)
    if name == "constant":
        return Constant(optimizer)
    if name == "linear":
        interval = _check_interval(opts.get("interval", "step"))
        if "tau_epochs" in opts:
            epochs = _positive("tau_epochs", opts["tau_epochs"])
            per = steps_per_epoch if interval == "step" else 1
            tau = max(1, round(epochs * per))
        else:
            tau = opts["tau"]
        return LinearDecay(optimizer, tau, opts.get("final_ratio", 0.01), interval=interval)
    if name == "exp":
        return ExponentialDecay(optimizer, opts["gamma"], interval=opts.get("interval", "epoch"))
    if name == "step":
        return StepDecay(
            optimizer,
            opts["step_size"],
            opts.get("gamma", 0.1),
            interval=opts.get("interval", "epoch"),
        )
    if name == "inv":
        return InverseTimeDecay(optimizer, opts["t0"], interval=opts.get("interval", "step"))
    return ReduceOnPlateau(optimizer, **opts)
