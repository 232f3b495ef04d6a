"""AdaGrad: Algorithm 8.4 (Duchi et al., 2011)."""

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


class AdaGrad(BookOptimizer):
    r"""AdaGrad: per-coordinate learning rates shrinking with the accumulated squared gradient.

    Hyperparameters (book symbol in brackets): ``lr`` [ε] = 0.01 (number or one-element
    tensor, ≥ 0), ``eps`` [δ] = 1e-7, ``weight_decay`` [λ] = 0 (decoupled: θ ← θ − ελθ
    before the update), ``initial_accumulator_value`` [r₀] = 0, ``eps_inside_sqrt`` =
    False, ``maximize`` = False,
    ``foreach`` = True, ``fused`` = None, ``differentiable`` = False.

    Algorithm 8.4 (AdaGrad)::

        Require: global learning rate ε, initial parameter θ
        Require: small constant δ, perhaps 1e-7, for numerical stability
        initialize gradient accumulation variable r = 0
        while stopping criterion not met do
            compute g at θ
            r ← r + g ⊙ g
            Δθ ← −ε / (δ + √r) ⊙ g          (elementwise)
            θ ← θ + Δθ

    Where the options enter: ``initial_accumulator_value`` is the r of the ``initialize``
    line (r = r₀ instead of 0; Keras starts at 0.1); ``eps_inside_sqrt=True`` divides by
    √(δ + r) instead of δ + √r (Keras's placement); ``maximize=True`` uses −g for g;
    ``weight_decay`` multiplies θ by (1 − ελ) before the r line.

    State per parameter, the same on every path: ``sum_sq`` (r). ``fused=True`` runs
    torch's single-pass kernel ``torch._fused_adagrad_`` (with ``lr_decay=0`` it evaluates
    exactly this box, δ outside √r; checked in the tests), decoupled decay first.

    Because r only grows, the effective learning rate ε/(δ + √r) only shrinks — "premature
    and excessive" on non-convex problems, which RMSProp fixes with a moving average.

    **Differences from torch.optim.Adagrad.** Same rule with δ outside the square root; torch's
    defaults are δ = 1e-10, ``lr_decay=0`` and ``initial_accumulator_value=0`` (ours has no
    lr decay: use a schedule) and its ``weight_decay`` is an L2 term added to g, which then
    also enters r. Keras's Adagrad puts δ inside the square root, ε/√(r + δ), starts r at 0.1
    and defaults to ε = 0.001.
    """

    _checks: ClassVar[dict[str, Callable[..., Any]]] = option_checks(
        eps=check.positive,
        initial_accumulator_value=check.nonnegative,
        eps_inside_sqrt=check.boolean,
    )
    _state_keys: ClassVar[frozenset[str]] = frozenset({"sum_sq"})

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 0.01,
        eps: float = 1e-7,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        *,
        eps_inside_sqrt: bool = False,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
        differentiable: bool = False,
    ) -> None:
        super().__init__(params, options_of(locals()))

    def _fusable(self, group: dict[str, Any]) -> bool:
        return not group["eps_inside_sqrt"]

    def _check_group(self, group: dict[str, Any]) -> None:
        if group.get("fused") and not self._fusable(group):
            raise ConfigError(
                "AdaGrad: fused=True computes δ + √r, not √(δ + r)",
                hint="drop fused=True or eps_inside_sqrt=True",
            )

    def _update_group(self, group: dict[str, Any], *, closure_given: bool, path: str) -> None:
        params, grads, states = self._gather(
            group, ("sum_sq",), fill=group["initial_accumulator_value"], path=path
        )
        if not params:
            return
        sums = [state["sum_sq"] for state in states]
        h = _Hyper(
            scalar(group["lr"]), group["eps"], group["weight_decay"], group["eps_inside_sqrt"]
        )
        if path == "fused":
            for ps, gs, rs in foreach_buckets(params, grads, sums):
                fused_adagrad_(
                    ps, gs, rs, lr=h.lr, eps=h.eps, weight_decay=h.weight_decay,
                    maximize=group["maximize"],
                )  # fmt: skip
        elif path == "foreach":
            scratch = self._scratch_like(params)
            for ps, gs, rs, bs in foreach_tiles(params, grads, sums, scratch):
                _adagrad_foreach(ps, gs, rs, bs, h)
        else:
            for p, g, r in zip(params, grads, sums):
                _adagrad_single(p, g, r, h)


class _Hyper(NamedTuple):
    """The hyperparameters one update reads (from a param group)."""

    lr: Any  # a float, or a tensor while torch.compile traces
    eps: float
    weight_decay: float
    eps_inside_sqrt: bool


def fused_adagrad_(
    params: list[Tensor],
    grads: list[Tensor],
    sums: list[Tensor],
    *,
    lr: float,
    eps: float,
    weight_decay: float = 0.0,
    maximize: bool = False,
) -> None:
    """Algorithm 8.4 in one pass over θ, g and r with ``torch._fused_adagrad_`` (CPU).

    The kernel's weight decay is an L2 term added to g (which would also enter r), so the
    book's decoupled decay is applied first; its ``lr_decay`` is 0, which makes the step
    counter it reads irrelevant (ε/(1 + (t − 1)·0) = ε). ``sums`` are the r tensors
    (an :class:`AdaGrad`'s ``state[p]["sum_sq"]``).
    """
    decay_foreach_(params, lr, weight_decay)
    ones = [_ONE] * len(params)
    torch._fused_adagrad_(
        params, grads, sums, ones, lr=float(lr), lr_decay=0.0, weight_decay=0.0,
        eps=eps, maximize=maximize,
    )  # fmt: skip


_ONE = torch.ones(())


def _adagrad_single(p: Tensor, g: Tensor, r: Tensor, h: _Hyper) -> None:
    """One parameter, line by line as Algorithm 8.4 (the reference for the foreach path)."""
    lr, eps, weight_decay, eps_inside_sqrt = h
    decay_(p, lr, weight_decay)  # θ ← θ − ελθ
    r.addcmul_(g, g)  # r ← r + g ⊙ g
    denom = r.add(eps).sqrt() if eps_inside_sqrt else r.sqrt().add(eps)  # √(δ+r) | δ+√r
    descend_(p, g, denom, lr)  # θ ← θ − ε/denom ⊙ g


def _adagrad_foreach(
    params: list[Tensor], grads: list[Tensor], sums: list[Tensor], scratch: list[Tensor], h: _Hyper
) -> None:
    """Same operations as :func:`_adagrad_single`; δ + √r goes into reused scratch buffers."""
    lr, eps, weight_decay, eps_inside_sqrt = h
    decay_foreach_(params, lr, weight_decay)
    torch._foreach_addcmul_(sums, grads, grads)
    denom = rms_denom_into(scratch, sums, eps, eps_inside_sqrt)
    torch._foreach_addcdiv_(params, grads, denom, value=-lr)
