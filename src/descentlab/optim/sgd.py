"""Stochastic gradient descent with optional (Nesterov) momentum: Algorithms 8.1–8.3.

:func:`sgd_update_` is plain SGD's update (Algorithm 8.1) on one tensor; the optimizer's
per-tensor path and the trainer's dense fast path (which hands it the gradient as the
two factors of a matrix product) both apply it, so the update is written once.
"""

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
    foreach_buckets,
    foreach_tiles,
    option_checks,
    options_of,
    scalar,
    step_along_,
)

__all__ = ["SGD", "sgd_update_"]


class SGD(BookOptimizer):
    r"""Minibatch SGD, with momentum or Nesterov momentum (Goodfellow et al., §8.3).

    Hyperparameters (book symbol in brackets):

    * ``lr`` [ε] — learning rate, **required** (no default: it is the one number you
      must think about). A schedule may change it between steps (ε_k).
    * ``momentum`` [α] — in [0, 1); 0 gives plain SGD (Algorithm 8.1).
    * ``nesterov`` — Nesterov momentum (Algorithm 8.3); needs ``momentum > 0``.
    * ``weight_decay`` [λ] — *decoupled* weight decay θ ← θ − ελθ, applied before the
      update (see docs/optimizers.md for how it relates to an L2 penalty in the loss).
    * ``foreach`` — multi-tensor update (default, also for ``None``: torch's fused SGD
      kernel, one pass over θ, g and v, the same as ``fused=True``) or the plain
      per-tensor reference (``False``).
    * ``maximize`` — ascend instead of descend (g → −g), as torch.
    * ``differentiable`` — record the update in the autograd graph (per-tensor path).

    Algorithm 8.1 (SGD)::

        Require: learning rate ε_k, initial parameter θ
        while stopping criterion not met do
            sample a minibatch, compute g ← (1/m) ∇_θ Σ_i L(f(x⁽ⁱ⁾; θ), y⁽ⁱ⁾)
            θ ← θ − ε g

    Algorithm 8.2 (SGD with momentum)::

        Require: learning rate ε_k, momentum parameter α, initial θ, initial velocity v (= 0)
        while stopping criterion not met do
            compute g at θ
            v ← αv − ε g
            θ ← θ + v

    Algorithm 8.3 (SGD with Nesterov momentum)::

        while stopping criterion not met do
            compute g at the look-ahead point θ + αv
            v ← αv − ε g
            θ ← θ + v

    ``maximize=True`` replaces g by −g in every line (θ ascends the objective).
    ``fused=True`` runs torch's single-pass SGD kernel (see :func:`fused_sgd_`).

    State per parameter, only when ``momentum > 0``: ``velocity`` (v), the same tensor on
    both paths; plain SGD keeps no state. :meth:`velocity` returns a copy of v.

    **Nesterov and the closure.** Given a closure (the trainer always passes one),
    :meth:`step` moves the parameters to θ + αv, calls the closure there, puts θ back and
    applies the two lines above: the loss returned is the loss at the look-ahead point and
    the parameters hold θ between steps. Without a closure the gradient in ``p.grad`` was
    taken at the current parameters, so the parameters are taken to *be* the look-ahead
    point φ = θ + αv, and the equivalent update is ``v ← αv − εg; φ ← φ + αv − εg``
    (PyTorch's formulation): between steps the parameters then hold φ = θ + αv, not θ.
    Do not mix the two forms in one run.

    **Differences from torch.optim.SGD.** PyTorch keeps ``b ← μb + g`` and steps
    ``θ ← θ − lr·b``, i.e. its velocity is ``v = −lr·b`` measured in units of the *current*
    learning rate. With a constant learning rate both give the same iterates (and the same
    Nesterov iterates, PyTorch's parameters holding φ). When ε changes between steps, the
    book's v ← αv − ε_k g keeps the past steps at the learning rates they were taken with,
    while PyTorch rescales all of the accumulated velocity by the new lr: the book's step
    minus PyTorch's at iteration k is ``Σ_{j<k} α^{k−j} (ε_k − ε_j) g_j``. PyTorch's
    ``weight_decay`` adds λθ to the gradient (an L2 penalty) where ours decays θ directly;
    for plain SGD the two agree. Keras's SGD uses the book's form (velocity in parameter
    units) and, for Nesterov, the same reformulation as PyTorch.
    """

    _checks: ClassVar[dict[str, Callable[..., Any]]] = option_checks(
        momentum=check.unit_interval, nesterov=check.boolean
    )
    _state_keys: ClassVar[frozenset[str]] = frozenset({"velocity"})
    _legacy_state_keys: ClassVar[frozenset[str]] = frozenset({"momentum_avg", "velocity_scale"})

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor | None = None,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        *,
        foreach: bool | None = None,
        fused: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
    ) -> None:
        if lr is None:
            raise ConfigError(
                "SGD needs a learning rate: pass lr (the book's ε)",
                hint="e.g. lr=0.1; the tutorial's logistic regression uses 0.13",
            )
        super().__init__(params, options_of(locals()))

    def _check_group(self, group: dict[str, Any]) -> None:
        if group["nesterov"] and group["momentum"] == 0.0:
            raise ConfigError("SGD: nesterov=True needs momentum (α) > 0", hint="e.g. momentum=0.9")

    def _upgrade_state(self, state: dict[str, Any]) -> None:
        # Versions before the one-schema change kept v = c·u on the foreach path.
        if "momentum_avg" in state:
            state["velocity"] = state.pop("momentum_avg").mul_(state.pop("velocity_scale"))

    def _update_group(self, group: dict[str, Any], *, closure_given: bool, path: str) -> None:
        alpha = group["momentum"]
        params, grads, states = self._gather(group, ("velocity",) if alpha else (), path=path)
        if not params:
            return
        kw = {
            "lr": scalar(group["lr"]),
            "momentum": alpha,
            "weight_decay": group["weight_decay"],
            # Parameters hold φ = θ + αv when Nesterov runs without a closure.
            "params_at_lookahead": group["nesterov"] and not closure_given,
        }
        vs = [state["velocity"] for state in states] if alpha else None
        if path == "single":
            for i, (p, g) in enumerate(zip(params, grads)):
                _sgd_single(p, g, None if vs is None else vs[i], **kw)
        else:
            # foreach and fused alike run torch's fused SGD kernel: one pass over θ, g (and
            # v) where the foreach ops make three with momentum, and less dispatch per
            # tensor than _foreach_add_ without (whose result it equals bit for bit).
            # _gather negated g already unless the group is fused.
            maximize = path == "fused" and group["maximize"]
            # One pass needs no cache tiles; the look-ahead form's second pass re-reads g.
            split = foreach_tiles if kw["params_at_lookahead"] else foreach_buckets
            for ps, gs, us in split(params, grads, vs or [None] * len(params)):
                fused_sgd_(ps, gs, us if vs else None, maximize=maximize, **kw)


def _sgd_single(
    p: Tensor,
    g: Tensor,
    v: Tensor | None,
    *,
    lr: float | Tensor,
    momentum: float,
    weight_decay: float,
    params_at_lookahead: bool,
) -> None:
    """One parameter, written as the algorithm box (the reference for the foreach path)."""
    if v is None:
        sgd_update_(p, g, lr=lr, weight_decay=weight_decay)
        return
    if weight_decay != 0.0:
        p.mul_(1.0 - lr * weight_decay)  # θ ← θ − ελθ
    step_along_(v.mul_(momentum), g, lr)  # v ← αv − εg
    if params_at_lookahead:
        # p holds φ = θ + αv; θ_new + αv_new = φ − αv_old + v_new + αv_new = φ + αv_new − εg.
        step_along_(p.add_(v, alpha=momentum), g, lr)
    else:
        p.add_(v)  # θ ← θ + v


def sgd_update_(
    param: Tensor,
    grad: Tensor | tuple[Tensor, Tensor],
    *,
    lr: float | Tensor,
    weight_decay: float = 0.0,
    l2: float = 0.0,
    l1: float = 0.0,
) -> None:
    r"""Plain SGD (Algorithm 8.1) on one tensor, in place: ``θ ← θ − ε g − ελ_wd θ``.

    ``grad`` is g itself, or the pair ``(A, B)`` of a matrix product ``g = A B`` (the
    dense fast path's weight gradient ``δᵀh``): then the update is one ``addmm`` and g is
    never materialized.  ``l2`` and ``l1`` add the gradient of the weight penalty
    ``λ1 Σ|θ| + λ2 Σθ²`` when g does not hold it yet (``sign θ`` taken before the step)::

        θ ← (1 − ελ_wd − 2ελ2) θ − ε g − ελ1 sign θ

    The optimizer passes a complete g (``l1 = l2 = 0``): ``θ ← (1 − ελ_wd) θ − ε g``.
    Call under ``torch.no_grad()`` for leaf tensors that require gradients.
    """
    sign = torch.sign(param) if l1 else None
    keep = 1.0 - lr * weight_decay - 2.0 * lr * l2
    if isinstance(grad, tuple):
        param.addmm_(grad[0], grad[1], beta=float(keep), alpha=-float(lr))
    else:
        if weight_decay or l2:
            param.mul_(keep)  # θ ← θ − ελθ
        step_along_(param, grad, lr)  # θ ← θ − εg
    if sign is not None:
        step_along_(param, sign, lr * l1)


def fused_sgd_(
    params: list[Tensor],
    grads: list[Tensor],
    velocities: list[Tensor] | None,
    *,
    lr: float,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    maximize: bool = False,
    params_at_lookahead: bool = False,
) -> None:
    """Algorithms 8.1–8.3 in one pass over θ, g and v with torch's fused SGD kernel.

    The kernel computes ``b ← μb + (1 − d)g; θ ← θ − lr·b``. With μ = α, d = 1 + ε and
    lr = −1 that is exactly the book's ``v ← αv − εg; θ ← θ + v`` on the stored v (checked
    in the tests against the per-tensor update). Its weight decay would be an L2 term
    entering v, so the decoupled decay is applied first. ``velocities`` are the v tensors
    (``state[p]["velocity"]``), or ``None`` for plain SGD. Nesterov's closure-less
    look-ahead form ``φ ← φ + αv_new − εg`` (``params_at_lookahead``) is the kernel with
    lr = −α followed by one more pass, φ ← φ − εg. All lists on one device, one dtype.
    """
    if weight_decay != 0.0:
        torch._foreach_mul_(params, 1.0 - lr * weight_decay)  # θ ← θ − ελθ
    if velocities is None:
        torch._fused_sgd_(
            params, grads, [], weight_decay=0.0, momentum=0.0, lr=lr, dampening=0.0,
            nesterov=False, maximize=maximize, is_first_step=False,
        )  # fmt: skip
        return
    step = -momentum if params_at_lookahead else -1.0  # θ ← θ + v  |  φ ← φ + αv
    torch._fused_sgd_(
        params, grads, velocities, weight_decay=0.0, momentum=momentum, lr=step,
        dampening=1.0 + lr, nesterov=False, maximize=maximize, is_first_step=False,
    )  # fmt: skip
    if params_at_lookahead:
        torch._foreach_add_(params, grads, alpha=lr if maximize else -lr)  # φ ← φ − εg
