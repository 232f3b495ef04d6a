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
    descend_,
    foreach_buckets,
    foreach_tiles,
    option_checks,
    options_of,
    scalar,
    sqrt_into,
    step_counter,
)


class Adam(BookOptimizer):
    r"""Adam: momentum on the first moment plus RMSProp scaling, both bias-corrected.

    Hyperparameters (book symbol in brackets): ``lr`` [ε] = 0.001 (a number or a
    one-element tensor, ≥ 0), ``betas`` [(ρ1, ρ2)] = (0.9, 0.999), ``eps`` [δ] = 1e-8,
    ``weight_decay`` [λ] = 0 (decoupled, i.e. AdamW: θ ← θ − ελθ before the update),
    ``amsgrad`` = False, ``maximize`` = False, ``foreach`` = True, ``fused`` = None,
    ``differentiable`` = False. The defaults give the book's rule.

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

    Where the options enter: ``maximize=True`` uses −g for g in every line;
    ``weight_decay`` multiplies θ by (1 − ελ) before the s line; ``amsgrad=True``
    (Reddi et al., 2018) keeps the running maximum r_max ← max(r_max, r) after the r line
    and uses r̂ ← r_max / (1 − ρ2^t) in place of r / (1 − ρ2^t).

    State per parameter, the same on every path: ``step`` (t, a float32 scalar tensor as
    in torch.optim, so ``torch.compile`` does not specialize on it), ``first_moment`` (s),
    ``second_moment`` (r) and, with ``amsgrad``, ``max_second_moment`` (r_max).

    Three update paths compute this rule. ``foreach=False``: the per-tensor update, line by
    line as the box (the reference; also used with ``differentiable=True`` and under
    ``torch.compile``). ``foreach`` (default): multi-tensor ops computing the same Δθ as
    ``−(ε√c2/c1) · s / (√r + δ√c2)`` with c1 = 1 − ρ1^t, c2 = 1 − ρ2^t, which saves a pass
    over memory. ``fused=True``: torch's single-pass kernel (``torch._fused_adamw_``), which
    evaluates exactly this box (δ outside √r̂, decoupled decay; checked in the tests against
    the per-tensor path) in one sweep over θ, g, s and r. All agree to rounding.

    **Differences from torch.optim.Adam / Keras.** torch's Adam is the same rule (δ outside
    the square root of r̂); its ``weight_decay`` adds λθ to g (L2), whereas ours matches
    ``torch.optim.AdamW``. Keras adds its δ (default 1e-7) to √r without the bias
    correction, i.e. its δ equals our δ·√(1 − ρ2^t).
    """

    _checks: ClassVar[dict[str, Callable[..., Any]]] = option_checks(
        betas=check.betas, eps=check.positive, amsgrad=check.boolean
    )
    _state_keys: ClassVar[frozenset[str]] = frozenset(
        {"step", "first_moment", "second_moment", "max_second_moment"}
    )

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 0.001,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
        differentiable: bool = False,
    ) -> None:
        super().__init__(params, options_of(locals()))

    def _fusable(self, group: dict[str, Any]) -> bool:
        return True  # the kernel covers weight decay, amsgrad and maximize

    def _upgrade_state(self, state: dict[str, Any]) -> None:
        # Older versions (and torch's own tests) may hold t as a Python number.
        if "step" in state and not isinstance(state["step"], Tensor):
            state["step"] = torch.tensor(float(state["step"]), dtype=torch.float32)

    def _update_group(self, group: dict[str, Any], *, closure_given: bool, path: str) -> None:
        zeros = ["first_moment", "second_moment"]
        if group["amsgrad"]:
            zeros.append("max_second_moment")
        params, grads, states = self._gather(group, tuple(zeros), path=path)
        if not params:
            return
        firsts = [state["first_moment"] for state in states]
        seconds = [state["second_moment"] for state in states]
        maxes = [state["max_second_moment"] for state in states] if group["amsgrad"] else None
        beta1, beta2 = group["betas"]
        h = _Hyper(scalar(group["lr"]), beta1, beta2, group["eps"], group["weight_decay"])
        if path == "single":  # also under torch.compile: t stays a tensor in the graph
            for state in states:
                self._upgrade_state(state)
                if "step" not in state:
                    state["step"] = step_counter()
            steps = [state["step"] for state in states]
            for t in steps:
                t.add_(1.0)  # t ← t + 1
            counts: list[Any] = [scalar(t) for t in steps]
        else:
            steps, counts = self._advance_steps(group, states)  # t ← t + 1
        if path == "fused":  # the kernel reads t from the step tensors
            for ps, gs, ss, rs, ts, ms in foreach_buckets(
                params, grads, firsts, seconds, steps, maxes or [None] * len(params)
            ):
                fused_adam_(
                    ps, gs, ss, rs, ts, lr=h.lr, betas=(beta1, beta2), eps=h.eps,
                    weight_decay=h.weight_decay, maxes=ms if maxes else None,
                    maximize=group["maximize"],
                )  # fmt: skip
            return
        if path == "single":
            for i, (p, g, s, r, t) in enumerate(zip(params, grads, firsts, seconds, counts)):
                _adam_single(p, g, s, r, None if maxes is None else maxes[i], t, h)
            return
        scratch = self._scratch_like(params)
        if maxes is None:
            for ps, gs, ss, rs, bs, ts in foreach_tiles(
                params, grads, firsts, seconds, scratch, counts
            ):
                _adam_foreach(ps, gs, ss, rs, None, ts, bs, h)
        else:
            for ps, gs, ss, rs, bs, ts, ms in foreach_tiles(
                params, grads, firsts, seconds, scratch, counts, maxes
            ):
                _adam_foreach(ps, gs, ss, rs, ms, ts, bs, h)


class _Hyper(NamedTuple):
    """The hyperparameters one update reads (from a param group)."""

    lr: Any  # a float, or a tensor while torch.compile traces
    beta1: float
    beta2: float
    eps: float
    weight_decay: float


def fused_adam_(
    params: list[Tensor],
    grads: list[Tensor],
    firsts: list[Tensor],
    seconds: list[Tensor],
    steps: list[Tensor],
    *,
    lr: float,
    betas: tuple[float, float],
    eps: float,
    weight_decay: float = 0.0,
    maxes: list[Tensor] | None = None,
    maximize: bool = False,
) -> None:
    """Algorithm 8.7 in one pass over memory, with torch's fused kernel.

    All lists on one device with one dtype; ``steps`` already hold the new t (float32
    scalar tensors, e.g. ``state["step"]`` after ``+= 1``). ``torch._fused_adamw_``
    evaluates exactly the box (δ outside √r̂, weight decay θ ← (1 − ελ)θ first) element by
    element; the tests check it against the per-tensor update. Callers that keep the
    state themselves (the trainer's dense fast path) pass an :class:`Adam`'s state
    tensors, so checkpoints stay in the one schema::

        st = [opt.state[p] for p in ps]  # after one opt.step(), or filled like it
        for s in st: s["step"] += 1
        fused_adam_(ps, gs, [s["first_moment"] for s in st], [s["second_moment"] for s in st],
                    [s["step"] for s in st], lr=..., betas=..., eps=..., weight_decay=...)
    """
    torch._fused_adamw_(
        params,
        grads,
        firsts,
        seconds,
        maxes if maxes is not None else [],
        steps,
        lr=float(lr),
        beta1=betas[0],
        beta2=betas[1],
        weight_decay=weight_decay,
        eps=eps,
        amsgrad=maxes is not None,
        maximize=maximize,
    )


def _adam_single(
    p: Tensor, g: Tensor, s: Tensor, r: Tensor, r_max: Tensor | None, t: Any, h: _Hyper
) -> None:
    """One parameter, line by line as Algorithm 8.7 (the reference for the other paths)."""
    lr, beta1, beta2, eps, weight_decay = h
    decay_(p, lr, weight_decay)  # θ ← θ − ελθ
    s.mul_(beta1).add_(g, alpha=1.0 - beta1)  # s ← ρ1 s + (1 − ρ1) g
    r.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)  # r ← ρ2 r + (1 − ρ2) g ⊙ g
    if r_max is not None:
        # r_max ← max(r_max, r)   (amsgrad; torch.where keeps only the mask for autograd)
        r = r_max.copy_(torch.where(r > r_max, r, r_max))
    s_hat = s / (1.0 - beta1**t)  # ŝ ← s / (1 − ρ1^t)
    r_hat = r / (1.0 - beta2**t)  # r̂ ← r / (1 − ρ2^t)
    descend_(p, s_hat, r_hat.sqrt().add(eps), lr)  # θ ← θ − ε ŝ / (√r̂ + δ)


def _adam_foreach(
    params: list[Tensor],
    grads: list[Tensor],
    firsts: list[Tensor],
    seconds: list[Tensor],
    maxes: list[Tensor] | None,
    steps: list[float],
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
    if maxes is not None:  # r_max ← max(r_max, r)
        torch._foreach_maximum_(maxes, seconds)
    denom = sqrt_into(scratch, seconds if maxes is None else maxes)
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
