"""The objective: the one definition of the cost that training minimizes, and its closure.

Every trainer in descentlab — :class:`~descentlab.train.Trainer`, the scikit-learn
estimator and the dense fast path — minimizes the same cost, the Deep Learning Tutorials'::

    cost(θ; x, y) = loss(model(x), y) + λ1·Σ|W| + λ2·Σ W²

where ``loss`` is the mean over the minibatch of a differentiable surrogate on the
logits (:func:`nll` or :func:`mse_softmax`) and the penalty covers the weights only
(:func:`weight_parameters`: tensors with two or more dimensions, never biases).
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

Write ``p = softmax(z)`` for the predicted class probabilities:

* :func:`nll` (the surrogate loss, a.k.a. cross-entropy)::

      L = -(1/N) Σ_i log p_{y_i}(x_i),       ∂L/∂z_i = (p_i - onehot(y_i)) / N

  computed with a fused ``log_softmax`` that subtracts ``max z`` first, so it never takes
  the log of an underflowed probability.
* :func:`mse_softmax` (squared error between probabilities and the one-hot target)::

      L = (1/N) Σ_i Σ_k (p_ik - onehot(y_i)_k)²

  summed over the K classes, averaged over examples — i.e. K times
  ``torch.nn.MSELoss()(p, onehot)``, which averages over all N·K entries.

``L2_sqr`` is the plain sum of squares, not halved, as in the tutorial, so the penalty's
gradient is ``λ1·sign(W) + 2·λ2·W`` (:func:`add_penalty_grad_`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from descentlab.errors import ConfigError, did_you_mean

__all__ = [
    "LOSSES",
    "Closure",
    "LossFn",
    "NonFiniteCost",
    "Objective",
    "add_penalty_grad_",
    "check_lambda",
    "get_loss",
    "mse_softmax",
    "nll",
    "penalty",
    "weight_parameters",
]

LossFn = Callable[[Tensor, Tensor], Tensor]


# ---------------------------------------------------------------------------------------
# The surrogate losses (mean over the minibatch)
# ---------------------------------------------------------------------------------------
def nll(logits: Tensor, y: Tensor) -> Tensor:
    """Mean negative log-likelihood ``-(1/N) Σ log softmax(z_i)[y_i]`` (cross-entropy)."""
    return F.cross_entropy(logits, y)


def mse_softmax(logits: Tensor, y: Tensor) -> Tensor:
    """``(1/N) Σ_i Σ_k (softmax(z_i)_k − onehot(y_i)_k)²`` — summed over classes."""
    p = torch.softmax(logits, dim=1)
    target = F.one_hot(y, num_classes=logits.shape[1]).to(p.dtype)
    return (p - target).square().sum(dim=1).mean()


#: Differentiable training losses by name (the zero-one loss is a metric, not listed here).
LOSSES: dict[str, LossFn] = {
    "nll": nll,
    "cross-entropy": nll,
    "mse": mse_softmax,
}


def get_loss(name: str) -> LossFn:
    """The training loss called ``name`` (``"nll"``/``"cross-entropy"`` or ``"mse"``)."""
    key = name.strip().lower().replace("_", "-") if isinstance(name, str) else name
    if key in LOSSES:
        return LOSSES[key]
    if key in ("zero-one", "0-1", "zero-one-loss"):
        raise ConfigError(
            "the zero-one loss has zero gradient almost everywhere and cannot be trained on",
            hint="train on 'nll' and report the zero-one error as the metric",
        )
    raise ConfigError(f"unknown loss {name!r}", hint=did_you_mean(str(key), tuple(LOSSES)))


# ---------------------------------------------------------------------------------------
# L1 / L2 weight penalty
# ---------------------------------------------------------------------------------------
def weight_parameters(model: nn.Module | Iterable[Tensor]) -> list[Tensor]:
    """The tensors the L1/L2 penalty applies to: those with two or more dimensions.

    That selects the weight matrices of linear layers and the kernels of conv layers, and
    leaves out biases and batch-norm ``γ``/``β`` (all one-dimensional), as the tutorial's
    ``L1 = |W_hidden|.sum() + |W_out|.sum()`` does.  A parameter shared between layers is
    listed once.  Accepts a module or an iterable of tensors (e.g. a hand-written model's
    parameter list).
    """
    params = model.parameters() if isinstance(model, nn.Module) else model
    seen: set[int] = set()
    weights = []
    for p in params:
        if p.dim() >= 2 and id(p) not in seen:
            seen.add(id(p))
            weights.append(p)
    return weights


def check_lambda(value: object, name: str) -> float:
    """``value`` as a float if it is a finite number >= 0, else :class:`ConfigError`."""
    if (
        not isinstance(value, numbers.Real)
        or isinstance(value, bool)
        or not math.isfinite(float(value))
        or float(value) < 0
    ):
        raise ConfigError(
            f"{name} must be a finite number >= 0, got {value!r}",
            hint=f"e.g. {name}=0.0001; 0 turns the penalty off",
        )
    return float(value)


def penalty(model: nn.Module | Iterable[Tensor], l1: float = 0.0, l2: float = 0.0) -> Tensor:
    """``λ1·Σ|W| + λ2·Σ W²`` over :func:`weight_parameters` (a scalar tensor).

    ``L2_sqr`` is the plain sum of squares, not halved, as in the tutorial; its gradient is
    therefore ``2·λ2·W``.  Returns a zero tensor (on the weights' device) when both
    coefficients are 0, and raises :class:`ConfigError` for negative or non-finite ones.
    """
    l1 = check_lambda(l1, "l1")
    l2 = check_lambda(l2, "l2")
    weights = weight_parameters(model)
    if not weights:
        return torch.zeros(())
    total = weights[0].new_zeros(())
    if l1:
        total = total + l1 * sum(w.abs().sum() for w in weights)
    if l2:
        total = total + l2 * sum(w.square().sum() for w in weights)
    return total


def add_penalty_grad_(
    model: nn.Module | Iterable[Tensor], l1: float = 0.0, l2: float = 0.0
) -> None:
    """Add ``∇ penalty = λ1·sign(W) + 2·λ2·W`` to each weight's ``.grad`` in place.

    The same gradient autograd would give :func:`penalty` (``sign(0) = 0``, matching the
    subgradient autograd uses for ``|·|``), without building the penalty's graph each step.
    Weights whose ``.grad`` is ``None`` get one.
    """
    l1 = check_lambda(l1, "l1")
    l2 = check_lambda(l2, "l2")
    if not (l1 or l2):
        return
    with torch.no_grad():
        for w in weight_parameters(model):
            if w.grad is None:
                w.grad = torch.zeros_like(w)
            if l1:
                w.grad.add_(torch.sign(w), alpha=l1)
            if l2:
                w.grad.add_(w, alpha=2.0 * l2)


# ---------------------------------------------------------------------------------------
# The objective and its closure
# ---------------------------------------------------------------------------------------
class NonFiniteCost(ArithmeticError):
    """Raised inside a closure so that the optimizer never applies a non-finite step.

    ``what`` is ``"loss"`` or ``"gradient"``.
    """

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class Objective:
    """``cost = loss(model(x), y) + λ1·Σ|W| + λ2·Σ W²``: what every trainer minimizes.

    ``loss`` is a name from :data:`LOSSES` or a function ``(logits, y) -> mean loss``.
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


class Closure:
    """``optimizer.step(closure)``'s closure: zero grads, cost, backward, return the cost.

    ``check_finite`` raises :class:`NonFiniteCost` before the backward pass when the cost
    is not finite (one host sync); ``after_backward`` runs once the gradients are there.
    """

    __slots__ = ("after_backward", "check_finite", "model", "objective", "optimizer", "x", "y")

    def __init__(
        self,
        objective: Objective,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        check_finite: bool = False,
        after_backward: Callable[[], None] | None = None,
    ) -> None:
        self.objective = objective
        self.model = model
        self.optimizer = optimizer
        self.check_finite = check_finite
        self.after_backward = after_backward
        self.x: Tensor | None = None
        self.y: Tensor | None = None

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
