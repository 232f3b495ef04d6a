"""AdaDelta (Zeiler, 2012, Algorithm 1)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor

from descentlab.optim import _validate as check
from descentlab.optim._base import (
    BookOptimizer,
    ParamsT,
    add_scalar_into,
    decay_,
    decay_foreach_,
    foreach_tiles,
    option_checks,
    options_of,
    scalar,
)


class AdaDelta(BookOptimizer):
    r"""AdaDelta: RMSProp whose step is rescaled by the RMS of the previous steps.

    Mentioned in §8.5.4 of the book among the popular choices; the algorithm is Zeiler's
    (2012, "ADADELTA: an adaptive learning rate method", Algorithm 1). The ratio
    RMS[Δθ]/RMS[g] gives the step the units of θ, so no global learning rate is needed;
    ``lr`` (default 1.0 = Zeiler's method) only scales the step that is *applied*.

    Hyperparameters: ``lr`` = 1.0 (number or one-element tensor, ≥ 0), ``rho`` [ρ] = 0.95,
    ``eps`` [ε in the paper] = 1e-6, ``weight_decay`` [λ] = 0 (decoupled: θ ← θ − lr·λθ
    before the update), ``maximize`` = False (−g for g in every line), ``foreach`` = True,
    ``differentiable`` = False.

    Algorithm (Zeiler, Algorithm 1), with RMS[y] = √(E[y²] + ε)::

        Require: decay rate ρ, constant ε, initial parameter θ
        initialize accumulation variables E[g²] = 0, E[Δθ²] = 0
        for t = 1, 2, ... do
            compute g at θ
            E[g²] ← ρ E[g²] + (1 − ρ) g²
            Δθ ← −(RMS[Δθ]_{t−1} / RMS[g]_t) g
            E[Δθ²] ← ρ E[Δθ²] + (1 − ρ) Δθ²
            θ ← θ + lr·Δθ

    State per parameter: ``square_avg`` (E[g²]) and ``acc_delta`` (E[Δθ²]); both
    accumulate the unscaled Δθ, so ``lr`` does not feed back into the step sizes.

    **Differences from torch.optim.Adadelta / Keras.** torch is the same rule, with the same
    defaults except ρ = 0.9; its ``weight_decay`` is an L2 term added to g. Keras uses
    ρ = 0.95, ε = 1e-7 and lr = 0.001 by default.
    """

    _checks: ClassVar[dict[str, Callable[..., Any]]] = option_checks(
        rho=check.unit_interval, eps=check.positive
    )
    _state_keys: ClassVar[frozenset[str]] = frozenset({"square_avg", "acc_delta"})

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 1.0,
        rho: float = 0.95,
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        differentiable: bool = False,
    ) -> None:
        super().__init__(params, options_of(locals()))

    def _update_group(self, group: dict[str, Any], *, closure_given: bool, path: str) -> None:
        params, grads, states = self._gather(group, ("square_avg", "acc_delta"), path=path)
        if not params:
            return
        squares = [state["square_avg"] for state in states]
        deltas = [state["acc_delta"] for state in states]
        h = _Hyper(scalar(group["lr"]), group["rho"], group["eps"], group["weight_decay"])
        if path == "foreach":
            scratch0, scratch1 = self._scratch_like(params, 0), self._scratch_like(params, 1)
            for ps, gs, sq, ad, b0, b1 in foreach_tiles(
                params, grads, squares, deltas, scratch0, scratch1
            ):
                adadelta_foreach_(ps, gs, sq, ad, (b0, b1), **h._asdict())
        else:
            for p, g, sq, ad in zip(params, grads, squares, deltas):
                _adadelta_single(p, g, sq, ad, h)


class _Hyper(NamedTuple):
    """The hyperparameters one update reads (from a param group)."""

    lr: Any  # a float, or a tensor while torch.compile traces
    rho: float
    eps: float
    weight_decay: float


def _adadelta_single(
    p: Tensor, g: Tensor, square_avg: Tensor, acc_delta: Tensor, h: _Hyper
) -> None:
    """One parameter, line by line as Zeiler's Algorithm 1 (the reference for foreach)."""
    lr, rho, eps, weight_decay = h
    decay_(p, lr, weight_decay)  # θ ← θ − lr·λθ
    square_avg.mul_(rho).addcmul_(g, g, value=1.0 - rho)  # E[g²] ← ρE[g²] + (1−ρ)g²
    rms_delta = acc_delta.add(eps).sqrt()  # RMS[Δθ]_{t−1}
    rms_grad = square_avg.add(eps).sqrt()  # RMS[g]_t
    minus_delta = rms_delta.div(rms_grad).mul(g)  # −Δθ = RMS[Δθ]/RMS[g] · g
    acc_delta.mul_(rho).addcmul_(minus_delta, minus_delta, value=1.0 - rho)  # E[Δθ²]
    if isinstance(lr, Tensor):
        p.sub_(lr * minus_delta)  # θ ← θ + lr·Δθ
    else:
        p.add_(minus_delta, alpha=-lr)


def adadelta_foreach_(
    params: list[Tensor],
    grads: list[Tensor],
    square_avgs: list[Tensor],
    acc_deltas: list[Tensor],
    scratch: tuple[list[Tensor], list[Tensor]],
    *,
    lr: Any,
    rho: float,
    eps: float,
    weight_decay: float,
) -> None:
    """Same operations as :func:`_adadelta_single` on lists of tensors; the two RMS go into
    ``scratch`` (two lists shaped like ``params``). The update of :class:`AdaDelta`'s
    default path, also applied member by member by the fused trainer."""
    decay_foreach_(params, lr, weight_decay)
    torch._foreach_mul_(square_avgs, rho)
    torch._foreach_addcmul_(square_avgs, grads, grads, value=1.0 - rho)
    rms_delta = add_scalar_into(scratch[0], acc_deltas, eps)
    torch._foreach_sqrt_(rms_delta)
    rms_grad = add_scalar_into(scratch[1], square_avgs, eps)
    torch._foreach_sqrt_(rms_grad)
    torch._foreach_div_(rms_delta, rms_grad)
    minus_delta = rms_delta
    torch._foreach_mul_(minus_delta, grads)
    torch._foreach_mul_(acc_deltas, rho)
    torch._foreach_addcmul_(acc_deltas, minus_delta, minus_delta, value=1.0 - rho)
    torch._foreach_add_(params, minus_delta, alpha=-lr)
