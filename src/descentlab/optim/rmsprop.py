"""RMSProp, alone (Algorithm 8.5) or with momentum / Nesterov momentum (Algorithm 8.6)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor

from descentlab.errors import ConfigError
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
    rms_denom_into,
    scalar,
)


class RMSProp(BookOptimizer):
    r"""RMSProp (Hinton, 2012): AdaGrad with an exponentially decaying average of g².

    Hyperparameters (book symbol in brackets): ``lr`` [ε] = 0.001 (number or one-element
    tensor, ≥ 0), ``rho`` [ρ] = 0.9 (torch calls it ``alpha``; here α is the momentum, as
    in the book), ``eps`` [δ] = 1e-6, ``momentum`` [α] = 0, ``nesterov`` = False,
    ``eps_inside_sqrt`` = False, ``centered`` = False, ``weight_decay`` [λ] = 0
    (decoupled), ``maximize`` = False, ``foreach`` = True, ``fused`` = None,
    ``differentiable`` = False. The defaults give the book's rule.

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

    Where the options enter: ``maximize=True`` uses −g for g; ``weight_decay`` multiplies
    θ by (1 − ελ) before the r line; ``centered=True`` (Graves, 2013) also keeps the
    average gradient ḡ ← ρḡ + (1 − ρ) g and divides by δ + √(r − ḡ ⊙ ḡ) (or
    √(δ + r − ḡ ⊙ ḡ)), i.e. by an estimate of the gradient's standard deviation instead
    of its RMS.

    State per parameter, the same on every path: ``square_avg`` (r), with momentum
    ``velocity`` (v), with ``centered`` ``grad_avg`` (ḡ). ``fused=True`` (plain RMSProp
    only: no momentum, not centered, δ outside the root) runs the whole step in one pass
    over θ, g and r: RMSProp is Adam with ρ1 = 0 and without bias corrections, so torch's
    fused Adam kernel evaluates it when given ρ1 = 0 and a step count t so large that
    ρ^t = 0 (then 1 − ρ1^t = 1 − ρ^t = 1 exactly); it writes g into a scratch "first
    moment". The tests check it against the per-tensor update.

    **Differences from torch.optim.RMSprop.** torch's ``alpha`` is our ρ (default 0.99), its
    δ defaults to 1e-8 and sits outside the square root like ours by default; its momentum
    buffer is b ← μb + g/(√r + δ) with θ ← θ − lr·b, identical to ours for a constant
    learning rate (with a schedule, as for SGD, torch rescales the old velocity by the new
    lr). It has no Nesterov option and its ``weight_decay`` is an L2 term added to g. Keras
    puts δ inside the square root (default 1e-7) and keeps the book's velocity form.
    """

    _checks: ClassVar[dict[str, Callable[..., Any]]] = option_checks(
        rho=check.unit_interval,
        eps=check.positive,
        momentum=check.unit_interval,
        nesterov=check.boolean,
        eps_inside_sqrt=check.boolean,
        centered=check.boolean,
    )
    _state_keys: ClassVar[frozenset[str]] = frozenset({"square_avg", "velocity", "grad_avg"})
    _legacy_state_keys: ClassVar[frozenset[str]] = frozenset({"square_avg_scale"})

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 0.001,
        rho: float = 0.9,
        eps: float = 1e-6,
        momentum: float = 0.0,
        nesterov: bool = False,
        eps_inside_sqrt: bool = False,
        weight_decay: float = 0.0,
        *,
        centered: bool = False,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
        differentiable: bool = False,
    ) -> None:
        super().__init__(params, options_of(locals()))

    def _fusable(self, group: dict[str, Any]) -> bool:
        return not (group["momentum"] or group.get("centered") or group["eps_inside_sqrt"])

    def _check_group(self, group: dict[str, Any]) -> None:
        if group["nesterov"] and group["momentum"] == 0.0:
            raise ConfigError(
                "RMSProp: nesterov=True needs momentum (α) > 0", hint="e.g. momentum=0.9"
            )
        if group.get("fused") and not self._fusable(group):
            raise ConfigError(
                "RMSProp: fused=True covers plain RMSProp only (no momentum, centered or "
                "eps_inside_sqrt)",
                hint="drop fused=True (the foreach update handles every variant)",
            )

    def _upgrade_state(self, state: dict[str, Any]) -> None:
        # Versions before the one-schema change kept r = s·r̃ on the foreach path.
        if "square_avg_scale" in state:
            state["square_avg"].mul_(state.pop("square_avg_scale"))

    def _update_group(self, group: dict[str, Any], *, closure_given: bool, path: str) -> None:
        use_momentum = group["momentum"] != 0.0
        zeros = ["square_avg"]
        if use_momentum:
            zeros.append("velocity")
        if group["centered"]:
            zeros.append("grad_avg")
        params, grads, states = self._gather(group, tuple(zeros), path=path)
        if not params:
            return
        squares = [state["square_avg"] for state in states]
        velocities = [state["velocity"] for state in states] if use_momentum else None
        centers = [state["grad_avg"] for state in states] if group["centered"] else None
        # Parameters hold φ = θ + αv when Nesterov runs without a closure.
        lookahead = group["nesterov"] and not closure_given
        h = _Hyper(
            scalar(group["lr"]),
            group["rho"],
            group["eps"],
            group["momentum"],
            group["eps_inside_sqrt"],
            group["centered"],
            group["weight_decay"],
            lookahead,
        )
        if path == "fused":
            firsts = self._scratch_like(params, slot=1, zeros=True)
            for ps, gs, rs, ss in foreach_buckets(params, grads, squares, firsts):
                fused_rmsprop_(
                    ps, gs, rs, ss, lr=h.lr, rho=h.rho, eps=h.eps,
                    weight_decay=h.weight_decay, maximize=group["maximize"],
                )  # fmt: skip
        elif path == "foreach":
            scratch = self._scratch_like(params)
            lists: list[list[Any]] = [params, grads, squares, scratch]
            lists += [velocities or [None] * len(params), centers or [None] * len(params)]
            for ps, gs, rs, bs, vs, cs in foreach_tiles(*lists):
                _rmsprop_foreach(
                    ps, gs, rs, vs if velocities else None, cs if centers else None, bs, h
                )
        else:
            for i, (p, g, r) in enumerate(zip(params, grads, squares)):
                v = None if velocities is None else velocities[i]
                c = None if centers is None else centers[i]
                _rmsprop_single(p, g, r, v, c, h)


class _Hyper(NamedTuple):
    """The hyperparameters one update reads (from a param group)."""

    lr: Any  # a float, or a tensor while torch.compile traces
    rho: float
    eps: float
    momentum: float
    eps_inside_sqrt: bool
    centered: bool
    weight_decay: float
    params_at_lookahead: bool


def _rmsprop_single(
    p: Tensor, g: Tensor, r: Tensor, v: Tensor | None, gbar: Tensor | None, h: _Hyper
) -> None:
    """One parameter, line by line as Algorithms 8.5/8.6 (the reference for foreach)."""
    lr, rho, eps, momentum, eps_inside_sqrt, _centered, weight_decay, params_at_lookahead = h
    decay_(p, lr, weight_decay)  # θ ← θ − ελθ
    r.mul_(rho).addcmul_(g, g, value=1.0 - rho)  # r ← ρr + (1 − ρ) g ⊙ g
    var = r
    if gbar is not None:  # centered: ḡ ← ρḡ + (1 − ρ) g;  r − ḡ ⊙ ḡ
        gbar.mul_(rho).add_(g, alpha=1.0 - rho)
        # (a copy: with differentiable=True the graph must not see ḡ change next step)
        gb = gbar.clone() if gbar.requires_grad else gbar
        var = r.addcmul(gb, gb, value=-1.0)
    denom = var.add(eps).sqrt() if eps_inside_sqrt else var.sqrt().add(eps)  # √(δ+r) | δ+√r
    if v is None:
        descend_(p, g, denom, lr)  # θ ← θ − ε/denom ⊙ g
        return
    v.mul_(momentum)  # v ← αv − ε/denom ⊙ g
    descend_(v, g, denom, lr)
    if params_at_lookahead:
        # p holds φ = θ + αv: φ ← φ + αv_new − ε/denom ⊙ g (see SGD for the derivation).
        p.add_(v, alpha=momentum)
        descend_(p, g, denom, lr)
    else:
        p.add_(v)  # θ ← θ + v


# t for the fused kernel: ρ^t underflows to exactly 0 for every ρ < 1 − 1e-20.
_HUGE_STEP = torch.tensor(2.0**100)


def fused_rmsprop_(
    params: list[Tensor],
    grads: list[Tensor],
    squares: list[Tensor],
    scratch: list[Tensor],
    *,
    lr: float,
    rho: float,
    eps: float,
    weight_decay: float = 0.0,
    maximize: bool = False,
) -> None:
    """Algorithm 8.5 in one pass, with torch's fused Adam kernel (see :class:`RMSProp`).

    With ρ1 = 0 and t = 2¹⁰⁰ the kernel's first moment is g itself, its bias corrections
    are 1 and its second moment is r ← ρr + (1 − ρ)g ⊙ g, so it computes
    θ ← (1 − ελ)θ − ε g/(√r + δ). ``squares`` are the r tensors (``state[p]["square_avg"]``);
    ``scratch`` (tensors shaped like the parameters) receives g; it must hold finite
    numbers (the kernel computes s + 1·(g − s), which is g only for a finite s).
    """
    torch._fused_adamw_(
        params,
        grads,
        scratch,
        squares,
        [],
        [_HUGE_STEP] * len(params),
        lr=float(lr),
        beta1=0.0,
        beta2=rho,
        weight_decay=weight_decay,
        eps=eps,
        amsgrad=False,
        maximize=maximize,
    )


def _rmsprop_foreach(
    params: list[Tensor],
    grads: list[Tensor],
    squares: list[Tensor],
    velocities: list[Tensor] | None,
    centers: list[Tensor] | None,
    scratch: list[Tensor],
    h: _Hyper,
) -> None:
    """Algorithms 8.5/8.6 over all tensors at once: the lines of :func:`_rmsprop_single`,
    the denominator in reused scratch buffers."""
    lr, rho, eps, momentum, eps_inside_sqrt, _centered, weight_decay, params_at_lookahead = h
    decay_foreach_(params, lr, weight_decay)
    torch._foreach_mul_(squares, rho)
    torch._foreach_addcmul_(squares, grads, grads, value=1.0 - rho)
    if centers is not None:
        torch._foreach_lerp_(centers, grads, 1.0 - rho)
        for o, r, c in zip(scratch, squares, centers):
            torch.addcmul(r, c, c, value=-1.0, out=o)
        var = scratch
    else:
        var = squares
    denom = rms_denom_into(scratch, var, eps, eps_inside_sqrt)
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
