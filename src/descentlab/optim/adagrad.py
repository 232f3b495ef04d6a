"""AdaGrad: Algorithm 8.4 (Duchi et al., 2011)."""

from __future__ import annotations

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
    pick,
    sqrt_into,
)


class AdaGrad(BookOptimizer):
    r"""AdaGrad: per-coordinate learning rates shrinking with the accumulated squared gradient.

    Hyperparameters (book symbol in brackets): ``lr`` [ε] = 0.01, ``eps`` [δ] = 1e-7,
    ``weight_decay`` [λ] = 0 (decoupled: θ ← θ − ελθ before the update), ``foreach``.

    Algorithm 8.4 (AdaGrad)::

        Require: global learning rate ε, initial parameter θ
        Require: small constant δ, perhaps 1e-7, for numerical stability
        initialize gradient accumulation variable r = 0
        while stopping criterion not met do
            compute g at θ
            r ← r + g ⊙ g
            Δθ ← −ε / (δ + √r) ⊙ g          (elementwise)
            θ ← θ + Δθ

    State per parameter: ``sum_sq`` (r).

    Because r only grows, the effective learning rate ε/(δ + √r) only shrinks — "premature
    and excessive" on non-convex problems, which RMSProp fixes with a moving average.

    **Differences from torch.optim.Adagrad.** Same rule with δ outside the square root; torch's
    defaults are δ = 1e-10, ``lr_decay=0`` and ``initial_accumulator_value=0`` (ours has no
    lr decay: use a schedule) and its ``weight_decay`` is an L2 term added to g, which then
    also enters r. Keras's Adagrad puts δ inside the square root, ε/√(r + δ), starts r at 0.1
    and defaults to ε = 0.001.
    """

    _checks: ClassVar[dict[str, Callable[..., Any]]] = {
        "lr": check.positive,
        "eps": check.positive,
        "weight_decay": check.nonnegative,
        "foreach": check.boolean,
    }
    _state_keys: ClassVar[frozenset[str]] = frozenset({"sum_sq"})

    def __init__(
        self,
        params: ParamsT,
        lr: float = 0.01,
        eps: float = 1e-7,
        weight_decay: float = 0.0,
        *,
        foreach: bool = True,
    ) -> None:
        defaults = {"lr": lr, "eps": eps, "weight_decay": weight_decay, "foreach": foreach}
        super().__init__(params, defaults)

    def _update_group(self, group: dict[str, Any], *, closure_given: bool) -> None:
        params, grads, states = self._gather(group, zeros=("sum_sq",))
        if not params:
            return
        sums = [state["sum_sq"] for state in states]
        h = _Hyper(**pick(group, *_Hyper._fields))
        if group["foreach"]:
            scratch = self._scratch_like(params)
            for ps, gs, rs, bs in foreach_tiles(params, grads, sums, scratch):
                _adagrad_foreach(ps, gs, rs, bs, h)
        else:
            for p, g, r in zip(params, grads, sums):
                _adagrad_single(p, g, r, h)


class _Hyper(NamedTuple):
    """The hyperparameters one update reads (from a param group)."""

    lr: float
    eps: float
    weight_decay: float


def _adagrad_single(p: Tensor, g: Tensor, r: Tensor, h: _Hyper) -> None:
    """One parameter, line by line as Algorithm 8.4 (the reference for the foreach path)."""
    lr, eps, weight_decay = h
    decay_(p, lr, weight_decay)  # θ ← θ − ελθ
    r.addcmul_(g, g)  # r ← r + g ⊙ g
    denom = r.sqrt().add_(eps)  # δ + √r
    p.addcdiv_(g, denom, value=-lr)  # θ ← θ − ε/(δ + √r) ⊙ g


def _adagrad_foreach(
    params: list[Tensor], grads: list[Tensor], sums: list[Tensor], scratch: list[Tensor], h: _Hyper
) -> None:
    """Same operations as :func:`_adagrad_single`; δ + √r goes into reused scratch buffers."""
    lr, eps, weight_decay = h
    decay_foreach_(params, lr, weight_decay)
    torch._foreach_addcmul_(sums, grads, grads)
    denom = sqrt_into(scratch, sums)
    torch._foreach_add_(denom, eps)
    torch._foreach_addcdiv_(params, grads, denom, value=-lr)
