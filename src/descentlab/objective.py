"""The objective: the one definition of the cost that training minimizes, and its closure.

Every trainer in descentlab — :class:`~descentlab.train.Trainer`, the scikit-learn
estimator and the dense fast path — minimizes the same cost, the Deep Learning Tutorials'::

    cost(θ; x, y) = loss(model(x), y) + λ1·Σ|W| + λ2·Σ W²

where ``loss`` is the mean over the minibatch of a differentiable surrogate on the
logits (NLL or MSE on the softmax) and the penalty covers the weights only (tensors
with two or more dimensions, never biases).
:class:`Objective` holds that choice (loss, λ1, λ2) and computes it; :class:`Closure`
is what ``optimizer.step(closure)`` calls each step::

    closure():                                    (one object per run, rebound per step)
        zero the gradients
        cost = objective.cost(model, x, y)
        if check_finite and cost is not finite: raise NonFiniteCost("loss")
        cost.backward()
        after_backward()                          (gradient checks, clipping; optional)
        return cost

The closure is an object rather than a nested function so that the trainer builds it
once and only rebinds the minibatch (:meth:`Closure.bind`), and so that the dense fast
path (:mod:`descentlab.train.fast`) can offer another object with the same interface.

The loss functions and the penalty are the ingredients, in :mod:`descentlab.losses`
(:func:`~descentlab.losses.nll`, :func:`~descentlab.losses.mse_softmax`,
:func:`~descentlab.losses.penalty`, :func:`~descentlab.losses.weight_parameters`);
``L2_sqr`` is the plain sum of squares, not halved, as in the tutorial, so the
penalty's gradient is ``λ1·sign(W) + 2·λ2·W``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import KW_ONLY, dataclass, field

import torch
from torch import Tensor, nn

from descentlab.losses import LossFn, check_lambda, get_loss, nll, penalty

__all__ = ["Closure", "NonFiniteCost", "Objective"]


class NonFiniteCost(ArithmeticError):
    """Raised inside a closure so that the optimizer never applies a non-finite step.

    ``what`` is ``"loss"`` or ``"gradient"``.
    """

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class Objective:
    """``cost = loss(model(x), y) + λ1·Σ|W| + λ2·Σ W²``: what every trainer minimizes.

    ``loss`` is a name from :data:`~descentlab.losses.LOSSES` or a function
    ``(logits, y) -> mean loss``.
    """

    __slots__ = ("has_penalty", "l1", "l2", "loss")

    def __init__(self, loss: str | LossFn = "nll", *, l1: float = 0.0, l2: float = 0.0) -> None:
        self.loss: LossFn = get_loss(loss) if isinstance(loss, str) else loss
        self.l1 = check_lambda(l1, "l1")
        self.l2 = check_lambda(l2, "l2")
        self.has_penalty = bool(self.l1 or self.l2)

    @property
    def is_nll(self) -> bool:
        """Whether the loss is the NLL (the dense fast path computes only that one)."""
        return self.loss is nll

    def cost(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        """The cost of ``model`` on the minibatch ``(x, y)``, as an autograd graph."""
        cost = self.loss(model(x), y)
        if self.has_penalty:
            cost = cost + penalty(model, l1=self.l1, l2=self.l2)
        return cost

    def penalty_value(self, weights: Sequence[Tensor]) -> Tensor:
        """``λ1 Σ|W| + λ2 Σ W²`` over ``weights``, without a graph (one BLAS dot per W).

        The value :func:`penalty` has, for code that computes its gradient itself.
        """
        total: Tensor | None = None
        for w in weights:
            flat = w.detach().reshape(-1)
            term: Tensor | None = None
            if self.l2:
                term = torch.dot(flat, flat) * self.l2
            if self.l1:
                l1_term = torch.linalg.vector_norm(flat, 1) * self.l1
                term = l1_term if term is None else term + l1_term
            if term is not None:
                total = term if total is None else total + term
        return total if total is not None else torch.zeros(())

    def closure(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        check_finite: bool = False,
        after_backward: Callable[[], None] | None = None,
    ) -> Closure:
        """The autograd closure for ``optimizer.step`` (bind a minibatch before each step)."""
        return Closure(
            self, model, optimizer, check_finite=check_finite, after_backward=after_backward
        )


@dataclass(eq=False, slots=True)
class Closure:
    """``optimizer.step(closure)``'s closure: zero grads, cost, backward, return the cost.

    ``check_finite`` raises :class:`NonFiniteCost` before the backward pass when the cost
    is not finite (one host sync); ``after_backward`` runs once the gradients are there.
    """

    objective: Objective
    model: nn.Module
    optimizer: torch.optim.Optimizer
    _: KW_ONLY
    check_finite: bool = False
    after_backward: Callable[[], None] | None = None
    x: Tensor | None = field(default=None, init=False)
    y: Tensor | None = field(default=None, init=False)

    def bind(self, x: Tensor, y: Tensor) -> Closure:
        """Use the minibatch ``(x, y)`` at the next call; returns ``self``."""
        self.x, self.y = x, y
        return self

    def __call__(self) -> Tensor:
        assert self.x is not None and self.y is not None, "bind(x, y) first"
        self.optimizer.zero_grad(set_to_none=True)
        cost = self.objective.cost(self.model, self.x, self.y)
        if self.check_finite and not torch.isfinite(cost):
            raise NonFiniteCost("loss")
        cost.backward()
        if self.after_backward is not None:
            self.after_backward()
        return cost
