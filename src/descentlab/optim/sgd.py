"""Stochastic gradient descent with optional (Nesterov) momentum: Algorithms 8.1–8.3."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor

from descentlab.errors import ConfigError
from descentlab.optim import _validate as check
from descentlab.optim._base import BookOptimizer, ParamsT, foreach_buckets, foreach_tiles


class SGD(BookOptimizer):
    r"""Minibatch SGD, with momentum or Nesterov momentum (Goodfellow et al., §8.3).

    Hyperparameters (book symbol in brackets):

    * ``lr`` [ε] — learning rate, **required** (no default: it is the one number you
      must think about). A schedule may change it between steps (ε_k).
    * ``momentum`` [α] — in [0, 1); 0 gives plain SGD (Algorithm 8.1).
    * ``nesterov`` — Nesterov momentum (Algorithm 8.3); needs ``momentum > 0``.
    * ``weight_decay`` [λ] — *decoupled* weight decay θ ← θ − ελθ, applied before the
      update (see docs/optimizers.md for how it relates to an L2 penalty in the loss).
    * ``foreach`` — multi-tensor update (default) or the plain per-tensor reference.

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

    State per parameter: ``velocity`` (v), only when ``momentum > 0``.

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

    _checks: ClassVar[dict[str, Callable[..., Any]]] = {
        "lr": check.positive,
        "momentum": check.unit_interval,
        "nesterov": check.boolean,
        "weight_decay": check.nonnegative,
        "foreach": check.boolean,
    }
    _state_keys: ClassVar[frozenset[str]] = frozenset({"velocity"})

    def __init__(
        self,
        params: ParamsT,
        lr: float | None = None,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        *,
        foreach: bool = True,
    ) -> None:
        if lr is None:
            raise ConfigError(
                "SGD needs a learning rate: pass lr (the book's ε)",
                hint="e.g. lr=0.1; the tutorial's logistic regression uses 0.13",
            )
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "nesterov": nesterov,
            "weight_decay": weight_decay,
            "foreach": foreach,
        }
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        if group["nesterov"] and group["momentum"] == 0.0:
            raise ConfigError("SGD: nesterov=True needs momentum (α) > 0", hint="e.g. momentum=0.9")

    def _update_group(self, group: dict[str, Any], *, closure_given: bool) -> None:
        params, grads, states = self._gather(group)
        if not params:
            return
        lr, alpha, wd = group["lr"], group["momentum"], group["weight_decay"]
        kw = {
            "lr": lr,
            "momentum": alpha,
            "weight_decay": wd,
            # Parameters hold φ = θ + αv when Nesterov runs without a closure.
            "params_at_lookahead": group["nesterov"] and not closure_given,
        }
        if alpha == 0.0:
            velocities: list[Tensor] | None = None
        else:
            for p, state in zip(params, states):
                if "velocity" not in state:
                    state["velocity"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            velocities = [state["velocity"] for state in states]
        if group["foreach"]:
            if velocities is None:
                # One pass over θ (two with weight decay): nothing to gain from cache tiles.
                for ps, gs in foreach_buckets(params, grads):
                    _sgd_foreach(ps, gs, None, **kw)
            else:
                for ps, gs, vs in foreach_tiles(params, grads, velocities):
                    _sgd_foreach(ps, gs, vs, **kw)
        else:
            for i, (p, g) in enumerate(zip(params, grads)):
                _sgd_single(p, g, None if velocities is None else velocities[i], **kw)


def _sgd_single(
    p: Tensor,
    g: Tensor,
    v: Tensor | None,
    *,
    lr: float,
    momentum: float,
    weight_decay: float,
    params_at_lookahead: bool,
) -> None:
    """One parameter, written as the algorithm box (the reference for the foreach path)."""
    if weight_decay != 0.0:
        p.mul_(1.0 - lr * weight_decay)  # θ ← θ − ελθ
    if v is None:
        p.add_(g, alpha=-lr)  # θ ← θ − εg
        return
    v.mul_(momentum).add_(g, alpha=-lr)  # v ← αv − εg
    if params_at_lookahead:
        # p holds φ = θ + αv; θ_new + αv_new = φ − αv_old + v_new + αv_new = φ + αv_new − εg.
        p.add_(v, alpha=momentum).add_(g, alpha=-lr)
    else:
        p.add_(v)  # θ ← θ + v


def _sgd_foreach(
    params: list[Tensor],
    grads: list[Tensor],
    velocities: list[Tensor] | None,
    *,
    lr: float,
    momentum: float,
    weight_decay: float,
    params_at_lookahead: bool,
) -> None:
    """Same operations as :func:`_sgd_single`, each over all tensors at once."""
    if weight_decay != 0.0:
        torch._foreach_mul_(params, 1.0 - lr * weight_decay)
    if velocities is None:
        torch._foreach_add_(params, grads, alpha=-lr)
        return
    torch._foreach_mul_(velocities, momentum)
    torch._foreach_add_(velocities, grads, alpha=-lr)
    if params_at_lookahead:
        torch._foreach_add_(params, velocities, alpha=momentum)
        torch._foreach_add_(params, grads, alpha=-lr)
    else:
        torch._foreach_add_(params, velocities)
