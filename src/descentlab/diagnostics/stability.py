"""What curvature allows a learning rate to do: the stability bound and the §8.2.1 test.

**Stability bound.**  Near a minimum the cost is a quadratic with Hessian ``H``; along an
eigenvector of eigenvalue λ, gradient descent with step ε multiplies the error by
``1 − ελ`` each step, so it converges iff ``0 < ελ < 2`` (LeCun, Bottou, Orr & Müller,
"Efficient BackProp", 1998, §5; Goodfellow et al. §4.3.1) and the largest stable step is
``2/λmax``.  For the momentum methods of Algorithms 8.2–8.3 the same 1-d recursion is a
two-term one, ``θ_{t+1} = (1 + α − ελ)θ_t − αθ_{t−1}`` for heavy ball (Polyak 1964),
whose characteristic polynomial ``z² − Tz + D`` is stable iff ``|D| < 1`` and
``|T| < 1 + D`` (Jury's criterion).  That gives:

========================  ===============================  ===========================
rule                      T, D                             largest stable ε
========================  ===============================  ===========================
GD / SGD (8.1)            1 − ελ, 0                        ``2 / λmax``
heavy ball α (8.2)        1 + α − ελ, α                    ``2(1 + α) / λmax``
Nesterov α (8.3)          (1 + α)(1 − ελ), α(1 − ελ)       ``2(1 + α) / ((1 + 2α) λmax)``
========================  ===============================  ===========================

The heavy-ball threshold is the one in Goh, "Why Momentum Really Works" (Distill, 2017),
and both are the thresholds Cohen et al., "Gradient Descent on Neural Networks Typically
Occurs at the Edge of Stability" (ICLR 2021) use for momentum.  PyTorch's ``dampening``
d scales the step to ``ε(1 − d)``; an L2-style weight decay w (``torch.optim.SGD``) adds
w to every eigenvalue; descentlab's decoupled decay (``θ ← θ − εwθ`` outside the
velocity) gives ``T = 1 + α − ε(w + λ)``, ``D = α(1 − εw)`` for heavy ball, hence
``2(1 + α) / (λmax + (1 + α)w)`` (for Nesterov it is treated as coupled: approximate).

For adaptive methods (AdaGrad, RMSProp, Adam, AdaDelta) the step is ``ε P⁻¹ g`` with a
diagonal preconditioner ``P`` that changes every step; the relevant curvature is that of
``P⁻¹H`` (Cohen et al., "Adaptive Gradient Methods at the Edge of Stability", 2022), not
λmax of ``H``, so no bound in this simple form is given.

**The §8.2.1 test.**  A second-order Taylor expansion of the cost along a step −εg::

    C(θ − εg) ≈ C(θ) − ε gᵀg + ½ ε² gᵀHg

so the step raises the cost when ``½ε²gᵀHg > εgᵀg``.  :func:`step_test` reports both
terms, their ratio (``> 1``: the step raises the cost, to second order), ‖g‖, and the
actual change of the cost on the same examples.  Since ``ratio = ε·q/2`` with
``q = gᵀHg/gᵀg ≤ λmax``, any ``ε < 2/λmax`` keeps it below 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from descentlab.diagnostics.cost import add_to_params_, eval_mode, full_cost
from descentlab.diagnostics.hessian import HessianOperator
from descentlab.errors import ConfigError
from descentlab.optim import SGD, optimizer_hyperparameters

__all__ = ["StabilityBound", "StepRule", "StepTest", "stability_bound", "step_test"]

_SGD_NAMES = ("sgd", "momentum", "nesterov")


@dataclass(frozen=True)
class StepRule:
    """The update rule a run uses, as far as its stability is concerned.

    ``adaptive`` is true for every optimizer that is not (Nesterov/heavy-ball) SGD.
    ``decoupled_decay``: descentlab's SGD decays θ directly; ``torch.optim.SGD`` adds
    ``w·θ`` to the gradient.
    """

    name: str
    lr: float
    momentum: float = 0.0
    nesterov: bool = False
    dampening: float = 0.0
    weight_decay: float = 0.0
    decoupled_decay: bool = True
    adaptive: bool = False

    @classmethod
    def from_optimizer(cls, optimizer: torch.optim.Optimizer) -> StepRule:
        """Read the rule off a built optimizer (its first parameter group)."""
        group = optimizer.param_groups[0]
        lr = float(group["lr"])
        if isinstance(optimizer, SGD | torch.optim.SGD):
            momentum = float(group.get("momentum", 0.0))
            nesterov = bool(group.get("nesterov", False))
            name = "nesterov" if nesterov else "momentum" if momentum else "sgd"
            return cls(
                name,
                lr,
                momentum,
                nesterov,
                float(group.get("dampening", 0.0)),
                float(group.get("weight_decay", 0.0)),
                decoupled_decay=isinstance(optimizer, SGD),
            )
        return cls(type(optimizer).__name__, lr, adaptive=True)

    @classmethod
    def from_name(cls, name: str, **hparams: Any) -> StepRule:
        """The rule of registry optimizer ``name`` with ``hparams`` (``lr`` required)."""
        defaults = optimizer_hyperparameters(name)  # validates the name
        given = {**defaults, **{k: v for k, v in hparams.items() if v is not None}}
        if given.get("lr") is None:
            raise ConfigError(f"a learning rate is needed for {name!r}", hint="pass lr=...")
        key = name.strip().lower().replace("_", "-")
        if key not in _SGD_NAMES:
            return cls(key, float(given["lr"]), adaptive=True)
        return cls(
            key,
            float(given["lr"]),
            float(given.get("momentum", 0.0)),
            bool(given.get("nesterov", False)),
            weight_decay=float(given.get("weight_decay", 0.0)),
        )


@dataclass(frozen=True)
class StabilityBound:
    """The largest stable learning rate for the curvature, or ``None`` and why not."""

    lr_max: float | None
    formula: str
    reason: str | None = None

    def ratio(self, lr: float) -> float | None:
        """``lr / lr_max`` (> 1: beyond the bound), or ``None`` without a bound."""
        return None if self.lr_max is None else lr / self.lr_max


def stability_bound(lambda_max: float, rule: StepRule) -> StabilityBound:
    """The largest ε for which ``rule`` is stable on a quadratic of top curvature λmax.

    See the module docstring for the formulas and their sources.
    """
    if rule.adaptive:
        return StabilityBound(
            None,
            "",
            f"{rule.name} preconditions the gradient; its stability depends on the "
            "eigenvalues of P⁻¹H, not of H, so 2/λmax does not apply",
        )
    if not math.isfinite(lambda_max) or lambda_max <= 0:
        return StabilityBound(
            None, "", f"λmax = {lambda_max:.4g} ≤ 0: no positive curvature to limit the step"
        )
    a, w, d = rule.momentum, rule.weight_decay, rule.dampening
    if rule.nesterov:
        value = 2 * (1 + a) / ((1 + 2 * a) * (lambda_max + w))
        formula = "2(1+α)/((1+2α)(λmax+w))" if w else "2(1+α)/((1+2α)λmax)"
    elif a:
        curvature = lambda_max + ((1 + a) * w if rule.decoupled_decay else w)
        value = 2 * (1 + a) / curvature
        formula = "2(1+α)/λmax" if not w else "2(1+α)/(λmax+(1+α)w)"
    else:
        value = 2 / (lambda_max + w)
        formula = "2/(λmax+w)" if w else "2/λmax"
    if d:
        value /= 1 - d
        formula += "/(1-dampening)"
    return StabilityBound(value, formula)


@dataclass(frozen=True)
class StepTest:
    """The §8.2.1 comparison at the current parameters for one step of size ``lr``."""

    lr: float
    cost: float
    grad_norm: float  # ‖g‖
    g_dot_g: float  # gᵀg
    g_h_g: float  # gᵀHg
    first_order: float  # ε gᵀg (the decrease a first-order model predicts)
    second_order: float  # ½ ε² gᵀHg (the curvature penalty)
    ratio: float  # second_order / first_order; > 1: the step raises the cost
    predicted_change: float  # ½ε²gᵀHg − εgᵀg
    actual_change: float  # C(θ − εg) − C(θ) on the same examples

    @property
    def raises_cost(self) -> bool:
        return self.ratio > 1


def step_test(op: HessianOperator, lr: float) -> StepTest:
    """½ε²gᵀHg versus εgᵀg at the operator's parameters, with the true change beside it.

    ``g`` is the full gradient over the operator's examples (in eval mode); the
    parameters are moved to ``θ − εg`` to measure the actual change and put back.
    """
    if not (lr > 0 and math.isfinite(lr)):
        raise ConfigError(f"lr must be a positive number, got {lr!r}")
    g, cost = op.gradient()
    g = g.detach()
    gg = float(g @ g)
    ghg = float(g @ op.hvp(g))
    first, second = lr * gg, 0.5 * lr * lr * ghg
    ratio = second / first if first > 0 else math.nan
    actual = _cost_after_step(op, g, lr) - cost
    return StepTest(lr, cost, math.sqrt(gg), gg, ghg, first, second, ratio, second - first, actual)


def _cost_after_step(op: HessianOperator, g: torch.Tensor, lr: float) -> float:
    saved = [p.detach().clone() for p in op.params]
    try:
        add_to_params_(op.params, g, -lr)
        with eval_mode(op.model):
            return full_cost(op.model, op.cost, op.x, op.y, op.chunk_size)
    finally:
        with torch.no_grad():
            for p, s in zip(op.params, saved):
                p.copy_(s)
        op.invalidate()  # the in-place writes invalidate a cached graph
