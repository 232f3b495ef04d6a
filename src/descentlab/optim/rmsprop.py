"""RMSProp, alone (Algorithm 8.5) or with momentum / Nesterov momentum (Algorithm 8.6)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor

from descentlab.errors import ConfigError
from descentlab.optim import _validate as check
from descentlab.optim._base import (
    BookOptimizer,
    ParamsT,
    add_scalar_into,
    foreach_tiles,
    sqrt_into,
)


class RMSProp(BookOptimizer):
    r"""RMSProp (Hinton, 2012): AdaGrad with an exponentially decaying average of g².

    Hyperparameters (book symbol in brackets): ``lr`` [ε] = 0.001, ``rho`` [ρ] = 0.9,
    ``eps`` [δ] = 1e-6, ``momentum`` [α] = 0, ``nesterov`` = False,
    ``eps_inside_sqrt`` = False, ``weight_decay`` [λ] = 0 (decoupled), ``foreach``.

    Algorithm 8.5 (RMSProp), as the seed slides write it::

        Require: global learning rate ε, decay rate ρ, initial parameter θ
        Require: small constant δ, usually 1e-6, for numerical stability
        initialize accumulation variable r = 0
        while stopping criterion not met do
            compute g at θ
            r ← ρr + (1 − ρ) g ⊙ g
            Δθ ← −ε / (δ + √r) ⊙ g          (elementwise)
            θ ← θ + Δθ

    The book's box (and Keras) divide by √(δ + r) instead: pass ``eps_inside_sqrt=True``.
    Both denominators tend to √r once r ≫ δ; they differ while r is not much larger than δ
    (gradients with RMS below about √δ = 0.001): δ outside caps a step at ε·|g|/δ, δ
    inside at ε·|g|/√δ, so δ inside damps tiny-gradient coordinates far more.

    Algorithm 8.6 (RMSProp with Nesterov momentum), ``momentum=α > 0, nesterov=True``::

        Require: ε, ρ, momentum parameter α, initial θ, initial velocity v (= 0)
        initialize accumulation variable r = 0
        while stopping criterion not met do
            compute g at the look-ahead point θ + αv
            r ← ρr + (1 − ρ) g ⊙ g
            v ← αv − ε / √r ⊙ g             (here with δ added as above, for safety)
            θ ← θ + v

    ``momentum > 0, nesterov=False`` is classical momentum on the RMSProp-scaled step
    (what torch and Keras call RMSprop with momentum): g at θ, the same r and v updates,
    θ ← θ + v. The Nesterov look-ahead works as in :class:`~descentlab.optim.SGD`: with a
    closure the gradient is taken at θ + αv and the parameters hold θ; without one the
    parameters hold φ = θ + αv and the update is ``φ ← φ + αv_new − ε g/(δ + √r)``.

    State per parameter: ``square_avg`` (r) and, with momentum, ``velocity`` (v).

    **Differences from torch.optim.RMSprop.** torch's ``alpha`` is our ρ (default 0.99), its
    δ defaults to 1e-8 and sits outside the square root like ours by default; its momentum
    buffer is b ← μb + g/(√r + δ) with θ ← θ − lr·b, identical to ours for a constant
    learning rate (with a schedule, as for SGD, torch rescales the old velocity by the new
    lr). It has no Nesterov option and its ``weight_decay`` is an L2 term added to g. Keras
    puts δ inside the square root (default 1e-7) and keeps the book's velocity form.
    """

    _checks: ClassVar[dict[str, Callable[..., Any]]] = {
        "lr": check.positive,
        "rho": check.unit_interval,
        "eps": check.positive,
        "momentum": check.unit_interval,
        "nesterov": check.boolean,
        "eps_inside_sqrt": check.boolean,
        "weight_decay": check.nonnegative,
        "foreach": check.boolean,
    }
    _state_keys: ClassVar[frozenset[str]] = frozenset({"square_avg", "velocity"})

    def __init__(
        self,
        params: ParamsT,
        lr: float = 0.001,
        rho: float = 0.9,
        eps: float = 1e-6,
        momentum: float = 0.0,
        nesterov: bool = False,
        eps_inside_sqrt: bool = False,
        weight_decay: float = 0.0,
        *,
        foreach: bool = True,
    ) -> None:
        defaults = {
            "lr": lr,
            "rho": rho,
            "eps": eps,
            "momentum": momentum,
            "nesterov": nesterov,
            "eps_inside_sqrt": eps_inside_sqrt,
            "weight_decay": weight_decay,
            "foreach": foreach,
        }
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        if group["nesterov"] and group["momentum"] == 0.0:
            raise ConfigError(
                "RMSProp: nesterov=True needs momentum (α) > 0", hint="e.g. momentum=0.9"
            )

    def _update_group(self, group: dict[str, Any], *, closure_given: bool) -> None:
        params, grads, states = self._gather(group)
        if not params:
            return
        use_momentum = group["momentum"] != 0.0
        for p, state in zip(params, states):
            if "square_avg" not in state:
                state["square_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if use_momentum and "velocity" not in state:
                state["velocity"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        squares = [state["square_avg"] for state in states]
        velocities = [state["velocity"] for state in states] if use_momentum else None
        kw = {
            "lr": group["lr"],
            "rho": group["rho"],
            "eps": group["eps"],
            "momentum": group["momentum"],
            "eps_inside_sqrt": group["eps_inside_sqrt"],
            "weight_decay": group["weight_decay"],
            "params_at_lookahead": group["nesterov"] and not closure_given,
        }
        if group["foreach"]:
            scratch = self._scratch_like(params)
            if velocities is None:
                for ps, gs, rs, bs in foreach_tiles(params, grads, squares, scratch):
                    _rmsprop_foreach(ps, gs, rs, None, bs, **kw)
            else:
                for ps, gs, rs, bs, vs in foreach_tiles(
                    params, grads, squares, scratch, velocities
                ):
                    _rmsprop_foreach(ps, gs, rs, vs, bs, **kw)
        else:
            for i, (p, g, r) in enumerate(zip(params, grads, squares)):
                v = None if velocities is None else velocities[i]
                _rmsprop_single(p, g, r, v, **kw)


def _rmsprop_single(
    p: Tensor,
    g: Tensor,
    r: Tensor,
    v: Tensor | None,
    *,
    lr: float,
    rho: float,
    eps: float,
    momentum: float,
    eps_inside_sqrt: bool,
    weight_decay: float,
    params_at_lookahead: bool,
) -> None:
    """One parameter, line by line as Algorithms 8.5/8.6 (the reference for foreach)."""
    if weight_decay != 0.0:
        p.mul_(1.0 - lr * weight_decay)  # θ ← θ − ελθ
    r.mul_(rho).addcmul_(g, g, value=1.0 - rho)  # r ← ρr + (1 − ρ) g ⊙ g
    denom = r.add(eps).sqrt_() if eps_inside_sqrt else r.sqrt().add_(eps)  # √(δ+r) | δ+√r
    if v is None:
        p.addcdiv_(g, denom, value=-lr)  # θ ← θ − ε/denom ⊙ g
        return
    v.mul_(momentum).addcdiv_(g, denom, value=-lr)  # v ← αv − ε/denom ⊙ g
    if params_at_lookahead:
        # p holds φ = θ + αv: φ ← φ + αv_new − ε/denom ⊙ g (see SGD for the derivation).
        p.add_(v, alpha=momentum).addcdiv_(g, denom, value=-lr)
    else:
        p.add_(v)  # θ ← θ + v


def _rmsprop_foreach(
    params: list[Tensor],
    grads: list[Tensor],
    squares: list[Tensor],
    velocities: list[Tensor] | None,
    scratch: list[Tensor],
    *,
    lr: float,
    rho: float,
    eps: float,
    momentum: float,
    eps_inside_sqrt: bool,
    weight_decay: float,
    params_at_lookahead: bool,
) -> None:
    """Same operations as :func:`_rmsprop_single`; the denominator goes into scratch."""
    if weight_decay != 0.0:
        torch._foreach_mul_(params, 1.0 - lr * weight_decay)
    torch._foreach_mul_(squares, rho)
    torch._foreach_addcmul_(squares, grads, grads, value=1.0 - rho)
    if eps_inside_sqrt:
        denom = add_scalar_into(scratch, squares, eps)
        torch._foreach_sqrt_(denom)
    else:
        denom = sqrt_into(scratch, squares)
        torch._foreach_add_(denom, eps)
    if velocities is None:
        torch._foreach_addcdiv_(params, grads, denom, value=-lr)
        return
    torch._foreach_mul_(velocities, momentum)
    torch._foreach_addcdiv_(velocities, grads, denom, value=-lr)
    if params_at_lookahead:
        torch._foreach_add_(params, velocities, alpha=momentum)
        torch._foreach_addcdiv_(params, grads, denom, value=-lr)
    else:
        torch._foreach_add_(params, velocities)
