"""Adam: Algorithm 8.7 (Kingma & Ba, 2014)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor

from descentlab.optim import _validate as check
from descentlab.optim._base import (
    BookOptimizer,
    ParamsT,
    decay_,
    decay_foreach_,
    foreach_tiles,
    sqrt_into,
)


class Adam(BookOptimizer):
    r"""Adam: momentum on the first moment plus RMSProp scaling, both bias-corrected.

    Hyperparameters (book symbol in brackets): ``lr`` [ε] = 0.001,
    ``betas`` [(ρ1, ρ2)] = (0.9, 0.999), ``eps`` [δ] = 1e-8, ``weight_decay`` [λ] = 0
    (decoupled, i.e. AdamW: θ ← θ − ελθ before the update), ``foreach``.

    Algorithm 8.7 (Adam)::

        Require: step size ε; decay rates ρ1, ρ2 in [0, 1) (suggested 0.9 and 0.999)
        Require: small constant δ for numerical stabilization (suggested 1e-8)
        initialize 1st and 2nd moment variables s = 0, r = 0; time step t = 0
        while stopping criterion not met do
            compute g at θ
            t ← t + 1
            s ← ρ1 s + (1 − ρ1) g              (biased first moment)
            r ← ρ2 r + (1 − ρ2) g ⊙ g          (biased second moment)
            ŝ ← s / (1 − ρ1^t)                 (bias corrections)
            r̂ ← r / (1 − ρ2^t)
            Δθ ← −ε ŝ / (√r̂ + δ)              (elementwise)
            θ ← θ + Δθ

    State per parameter: ``step`` (t, a Python int), ``first_moment`` (s),
    ``second_moment`` (r).

    The foreach path computes the same Δθ as ``−(ε√c2/c1) · s / (√r + δ√c2)`` with
    c1 = 1 − ρ1^t, c2 = 1 − ρ2^t, which saves a pass over memory; the iterates agree with
    the per-tensor path (written as the box) to rounding.

    **Differences from torch.optim.Adam / Keras.** torch's Adam is the same rule (δ outside
    the square root of r̂); its ``weight_decay`` adds λθ to g (L2), whereas ours matches
    ``torch.optim.AdamW``. Keras adds its δ (default 1e-7) to √r without the bias
    correction, i.e. its δ equals our δ·√(1 − ρ2^t).
    """

    _checks: ClassVar[dict[str, Callable[..., Any]]] = {
        "lr": check.positive,
        "betas": check.betas,
        "eps": check.positive,
        "weight_decay": check.nonnegative,
        "foreach": check.boolean,
    }
    _state_keys: ClassVar[frozenset[str]] = frozenset({"step", "first_moment", "second_moment"})

    def __init__(
        self,
        params: ParamsT,
        lr: float = 0.001,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        foreach: bool = True,
    ) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, foreach=foreach)
        super().__init__(params, defaults)

    def _update_group(self, group: dict[str, Any], *, closure_given: bool) -> None:
        params, grads, states = self._gather(group, zeros=("first_moment", "second_moment"))
        if not params:
            return
        for state in states:
            state["step"] = int(state.get("step", 0)) + 1  # t ← t + 1
        firsts = [state["first_moment"] for state in states]
        seconds = [state["second_moment"] for state in states]
        steps = [state["step"] for state in states]
        beta1, beta2 = group["betas"]
        h = _Hyper(group["lr"], beta1, beta2, group["eps"], group["weight_decay"])
        if group["foreach"]:
            scratch = self._scratch_like(params)
            for ps, gs, ss, rs, bs, ts in foreach_tiles(
                params, grads, firsts, seconds, scratch, steps
            ):
                _adam_foreach(ps, gs, ss, rs, ts, bs, h)
        else:
            for p, g, s, r, t in zip(params, grads, firsts, seconds, steps):
                _adam_single(p, g, s, r, t, h)


class _Hyper(NamedTuple):
    """The hyperparameters one update reads (from a param group)."""

    lr: float
    beta1: float
    beta2: float
    eps: float
    weight_decay: float


def _adam_single(p: Tensor, g: Tensor, s: Tensor, r: Tensor, t: int, h: _Hyper) -> None:
    """One parameter, line by line as Algorithm 8.7 (the reference for the foreach path)."""
    lr, beta1, beta2, eps, weight_decay = h
    decay_(p, lr, weight_decay)  # θ ← θ − ελθ
    s.mul_(beta1).add_(g, alpha=1.0 - beta1)  # s ← ρ1 s + (1 − ρ1) g
    r.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)  # r ← ρ2 r + (1 − ρ2) g ⊙ g
    s_hat = s / (1.0 - beta1**t)  # ŝ ← s / (1 − ρ1^t)
    r_hat = r / (1.0 - beta2**t)  # r̂ ← r / (1 − ρ2^t)
    p.addcdiv_(s_hat, r_hat.sqrt_().add_(eps), value=-lr)  # θ ← θ − ε ŝ / (√r̂ + δ)


def _adam_foreach(
    params: list[Tensor],
    grads: list[Tensor],
    firsts: list[Tensor],
    seconds: list[Tensor],
    steps: list[int],
    scratch: list[Tensor],
    h: _Hyper,
) -> None:
    """Algorithm 8.7 over all tensors at once, rearranged to touch memory fewer times.

    ε ŝ/(√r̂ + δ) = (ε√c2/c1) · s/(√r + δ√c2) with c1 = 1 − ρ1^t, c2 = 1 − ρ2^t: the bias
    corrections become two Python scalars instead of two passes over s and r.
    """
    lr, beta1, beta2, eps, weight_decay = h
    decay_foreach_(params, lr, weight_decay)
    torch._foreach_lerp_(firsts, grads, 1.0 - beta1)  # s + (1−ρ1)(g − s) = ρ1 s + (1−ρ1) g
    torch._foreach_mul_(seconds, beta2)
    torch._foreach_addcmul_(seconds, grads, grads, value=1.0 - beta2)
    denom = sqrt_into(scratch, seconds)
    if all(t == steps[0] for t in steps):
        c2_sqrt = math.sqrt(1.0 - beta2 ** steps[0])
        torch._foreach_add_(denom, eps * c2_sqrt)
        step_size = -lr * c2_sqrt / (1.0 - beta1 ** steps[0])
        torch._foreach_addcdiv_(params, firsts, denom, value=step_size)
    else:  # parameters that missed some steps (no gradient) have their own t
        c2_sqrts = [math.sqrt(1.0 - beta2**t) for t in steps]
        torch._foreach_add_(denom, [eps * c for c in c2_sqrts])
        step_sizes = [-lr * c / (1.0 - beta1**t) for c, t in zip(c2_sqrts, steps)]
        torch._foreach_addcdiv_(params, firsts, denom, step_sizes)
