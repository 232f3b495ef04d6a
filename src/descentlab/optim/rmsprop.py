"""RMSProp, alone (Algorithm 8.5) or with momentum / Nesterov momentum (Algorithm 8.6)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor

from descentlab.errors import ConfigError
from descentlab.optim import _validate as check
from descentlab.optim._base import (
    BookOptimizer,
    ParamsT,
    add_scalar_into,
    decay_,
    decay_foreach_,
    foreach_tiles,
    pick,
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

    State per parameter: ``square_avg`` (r) and, with momentum, ``velocity`` (v). The foreach
    path stores r as ``square_avg_scale`` (a float s) times ``square_avg``, which saves a
    pass over memory per step (see :func:`_rmsprop_foreach`); the per-tensor path folds s
    back in, so states move freely between the two.

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
    _state_keys: ClassVar[frozenset[str]] = frozenset(
        {"square_avg", "square_avg_scale", "velocity"}
    )

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
        defaults = dict(lr=lr, rho=rho, eps=eps, momentum=momentum, nesterov=nesterov)
        defaults.update(eps_inside_sqrt=eps_inside_sqrt, weight_decay=weight_decay, foreach=foreach)
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        if group["nesterov"] and group["momentum"] == 0.0:
            raise ConfigError(
                "RMSProp: nesterov=True needs momentum (α) > 0", hint="e.g. momentum=0.9"
            )

    def _update_group(self, group: dict[str, Any], *, closure_given: bool) -> None:
        use_momentum = group["momentum"] != 0.0
        zeros = ("square_avg", "velocity") if use_momentum else ("square_avg",)
        params, grads, states = self._gather(group, zeros)
        if not params:
            return
        squares = [state["square_avg"] for state in states]
        velocities = [state["velocity"] for state in states] if use_momentum else None
        # Parameters hold φ = θ + αv when Nesterov runs without a closure.
        lookahead = group["nesterov"] and not closure_given
        h = _Hyper(**pick(group, *_Hyper._fields[:-1]), params_at_lookahead=lookahead)
        if group["foreach"]:
            scratch = self._scratch_like(params)
            # r = s·square_avg with a float s per parameter (1 if absent; see _rmsprop_foreach).
            old = [state.get("square_avg_scale", 1.0) for state in states]
            new = [_next_scale(s, group["rho"], p.dtype) for s, p in zip(old, params)]
            lists = [params, grads, squares, scratch, old, new]
            if velocities is None:
                for ps, gs, rs, bs, ss, ns in foreach_tiles(*lists):
                    _rmsprop_foreach(ps, gs, rs, None, bs, ss, ns, h)
            else:
                for ps, gs, rs, bs, ss, ns, vs in foreach_tiles(*lists, velocities):
                    _rmsprop_foreach(ps, gs, rs, vs, bs, ss, ns, h)
            for state, s in zip(states, new):
                state["square_avg_scale"] = s
        else:
            for i, (p, g, r, state) in enumerate(zip(params, grads, squares, states)):
                scale = state.pop("square_avg_scale", 1.0)  # written by the foreach path
                if scale != 1.0:
                    r.mul_(scale)
                v = None if velocities is None else velocities[i]
                _rmsprop_single(p, g, r, v, h)


class _Hyper(NamedTuple):
    """The hyperparameters one update reads (from a param group)."""

    lr: float
    rho: float
    eps: float
    momentum: float
    eps_inside_sqrt: bool
    weight_decay: float
    params_at_lookahead: bool


def _rmsprop_single(p: Tensor, g: Tensor, r: Tensor, v: Tensor | None, h: _Hyper) -> None:
    """One parameter, line by line as Algorithms 8.5/8.6 (the reference for foreach)."""
    lr, rho, eps, momentum, eps_inside_sqrt, weight_decay, params_at_lookahead = h
    decay_(p, lr, weight_decay)  # θ ← θ − ελθ
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


# The foreach path stores r = s·r̃ (``square_avg`` holds r̃, ``square_avg_scale`` the float s)
# and replaces r ← ρr + (1 − ρ)g² by s ← ρs; r̃ ← r̃ + ((1 − ρ)/s)·g²: one addcmul instead of
# a multiply and an addcmul. When s would fall below _MIN_SCALE, r̃ is rescaled to s = 1 in
# the multiply the plain update does every step, so |r̃| ≤ |r|/_MIN_SCALE. Half precision
# has too little range for that: there s stays 1.
_MIN_SCALE = 1e-4


def _next_scale(s: float, rho: float, dtype: torch.dtype) -> float:
    """The scale s of r = s·r̃ after this step."""
    if dtype in (torch.float32, torch.float64) and rho * s >= _MIN_SCALE:
        return rho * s
    return 1.0


def _rmsprop_foreach(
    params: list[Tensor],
    grads: list[Tensor],
    squares: list[Tensor],
    velocities: list[Tensor] | None,
    scratch: list[Tensor],
    old_scales: list[float],
    new_scales: list[float],
    h: _Hyper,
) -> None:
    """Algorithms 8.5/8.6 over all tensors at once, r stored as s·r̃ (see _MIN_SCALE).

    With r = s·r̃: δ + √r = √s (√r̃ + δ/√s) and √(δ + r) = √s √(r̃ + δ/s), so the step
    −ε/denom ⊙ g is −(ε/√s)/(√r̃ + δ/√s) ⊙ g: only Python scalars change. The
    denominator goes into reused scratch buffers.
    """
    lr, rho, eps, momentum, eps_inside_sqrt, weight_decay, params_at_lookahead = h
    decay_foreach_(params, lr, weight_decay)
    # Parameters that missed steps (no gradient) have their own s; usually there is one run.
    runs: dict[tuple[float, float], list[int]] = {}
    for i, key in enumerate(zip(old_scales, new_scales)):
        runs.setdefault(key, []).append(i)
    for (s_old, s_new), idx in runs.items():
        if len(runs) == 1:
            ps, gs, rs, bs = params, grads, squares, scratch
            vs = velocities
        else:
            ps, gs = [params[i] for i in idx], [grads[i] for i in idx]
            rs, bs = [squares[i] for i in idx], [scratch[i] for i in idx]
            vs = None if velocities is None else [velocities[i] for i in idx]
        if s_new == rho * s_old:  # s ← ρs, r̃ ← r̃ + ((1 − ρ)/s) g²
            torch._foreach_addcmul_(rs, gs, gs, value=(1.0 - rho) / s_new)
        else:  # renormalize to s = 1 while decaying: r̃ ← ρ s r̃ + (1 − ρ) g²
            torch._foreach_mul_(rs, rho * s_old)
            torch._foreach_addcmul_(rs, gs, gs, value=1.0 - rho)
        root = math.sqrt(s_new)
        if eps_inside_sqrt:
            denom = add_scalar_into(bs, rs, eps / s_new)
            torch._foreach_sqrt_(denom)
        else:
            denom = sqrt_into(bs, rs)
            torch._foreach_add_(denom, eps / root)
        step = lr / root
        if vs is None:
            torch._foreach_addcdiv_(ps, gs, denom, value=-step)
            continue
        torch._foreach_mul_(vs, momentum)
        torch._foreach_addcdiv_(vs, gs, denom, value=-step)
        if params_at_lookahead:
            torch._foreach_add_(ps, vs, alpha=momentum)
            torch._foreach_addcdiv_(ps, gs, denom, value=-step)
        else:
            torch._foreach_add_(ps, vs)
