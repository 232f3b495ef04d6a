"""Full-batch gradient descent with the sharpness recorded: the edge of stability.

Cohen, Kaur, Li, Kolter & Talwalkar, "Gradient Descent on Neural Networks Typically
Occurs at the Edge of Stability" (ICLR 2021), train with full-batch GD at a fixed step ε
and track the *sharpness* λmax of the training-loss Hessian.  Two phases appear:

* **progressive sharpening** — λmax rises while it is below ``2/ε``;
* **edge of stability** — once it reaches ``2/ε`` it stops rising and hovers at or just
  above that value, while the loss keeps decreasing over the long run, though no longer
  monotonically.

The quadratic theory of :mod:`descentlab.diagnostics.stability` says GD diverges when
``λmax > 2/ε``; the network does not diverge, it regulates its own curvature.
:func:`edge_of_stability` runs the experiment on a copy of a model and returns the series.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

from torch import Tensor, nn

from descentlab.diagnostics.cost import (
    CostFn,
    add_to_params_,
    eval_mode,
    full_gradient,
    params_of,
)
from descentlab.diagnostics.hessian import HessianOperator, top_eigenvalues
from descentlab.errors import ConfigError, DivergenceError

__all__ = ["EdgeOfStability", "edge_of_stability"]


@dataclass
class EdgeOfStability:
    """Series from one full-batch GD run at learning rate ``lr``."""

    lr: float
    threshold: float  # 2/lr, the quadratic stability limit on λmax
    steps: list[int] = field(default_factory=list)  # where λmax was measured
    lambda_max: list[float] = field(default_factory=list)
    loss_steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)  # full-batch cost before each step
    matvecs: int = 0
    seconds: float = 0.0

    def fraction_of_threshold(self) -> list[float]:
        """``λmax / (2/ε)`` at each measurement (≈ 1 at the edge of stability)."""
        return [v / self.threshold for v in self.lambda_max]


def edge_of_stability(
    model: nn.Module,
    cost: CostFn,
    x: Tensor,
    y: Tensor,
    *,
    lr: float,
    steps: int,
    every: int = 10,
    chunk_size: int = 4096,
    tol: float = 1e-3,
    seed: int = 0,
) -> EdgeOfStability:
    """Full-batch GD ``θ ← θ − ε∇C(θ)`` on a copy of ``model`` for ``steps`` steps,
    measuring λmax (Lanczos, relative tolerance ``tol``) every ``every`` steps and at the
    end, and the full-batch cost at every step.

    The copy runs in eval mode throughout (dropout off), so the gradient is exactly the
    one of the function whose Hessian is measured.  Raises :class:`DivergenceError` if
    the cost becomes non-finite.
    """
    if not (lr > 0 and math.isfinite(lr)):
        raise ConfigError(f"lr must be a positive number, got {lr!r}")
    if steps < 1 or every < 1:
        raise ConfigError(f"steps and every must be >= 1, got {steps} and {every}")
    net = copy.deepcopy(model)
    params = params_of(net)
    out = EdgeOfStability(lr, 2 / lr)
    start = time.perf_counter()
    with eval_mode(net):
        for t in range(steps + 1):
            if t % every == 0 or t == steps:
                op = HessianOperator(net, cost, x, y, chunk_size=chunk_size)
                eig = top_eigenvalues(op, 1, tol=tol, seed=seed + t)
                out.steps.append(t)
                out.lambda_max.append(eig.values[0] if eig.values else math.nan)
                out.matvecs += eig.matvecs
            if t == steps:
                break
            g, value = full_gradient(net, cost, x, y, chunk_size, params)
            if not math.isfinite(value):
                raise DivergenceError(
                    f"full-batch GD diverged at step {t} with lr={lr}",
                    hint="use a smaller learning rate",
                )
            out.loss_steps.append(t)
            out.losses.append(value)
            add_to_params_(params, g, -lr)
    out.seconds = time.perf_counter() - start
    return out
