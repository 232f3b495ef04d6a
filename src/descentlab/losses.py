"""Losses on logits, averaged over the minibatch, and the L1/L2 weight penalty.

Every loss takes ``logits`` of shape ``(N, K)`` (what :mod:`descentlab.models` return) and
integer labels ``y`` of shape ``(N,)``, and returns the **mean over the N examples**, as
the Deep Learning Tutorials do (``T.mean``), so the gradient scale does not depend on
the minibatch size.  Write ``p = softmax(z)`` for the predicted class probabilities.

* :func:`nll` (the surrogate loss, a.k.a. cross-entropy)::

      L = -(1/N) Σ_i log p_{y_i}(x_i),       ∂L/∂z_i = (p_i - onehot(y_i)) / N

  computed with a fused ``log_softmax`` that subtracts ``max z`` first, so it never takes
  the log of an underflowed probability.
* :func:`zero_one` (the "true metric" the surrogate stands in for)::

      L = (1/N) Σ_i [argmax_k z_ik ≠ y_i]

  not differentiable; ties go to the lowest class index (``argmax``'s rule).
* :func:`mse_softmax` (squared error between probabilities and the one-hot target)::

      L = (1/N) Σ_i Σ_k (p_ik - onehot(y_i)_k)²

  summed over the K classes, averaged over examples — i.e. K times
  ``torch.nn.MSELoss()(p, onehot)``, which averages over all N·K entries.  It is the
  normalization of the classic cross-entropy-vs-MSE example
  (:func:`losses_worked_example`).

Regularization (the tutorial's ``cost = NLL + λ1·L1 + λ2·L2_sqr``) is :func:`penalty`,
which covers weights only, as listed by :func:`weight_parameters`.  These are the
ingredients; the cost that training minimizes is composed from them in one place,
:class:`descentlab.objective.Objective`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from descentlab.errors import ConfigError, did_you_mean

__all__ = [
    "LOSSES",
    "LossFn",
    "add_penalty_grad_",
    "check_lambda",
    "get_loss",
    "losses_worked_example",
    "mse_softmax",
    "nll",
    "penalty",
    "weight_parameters",
    "zero_one",
]

LossFn = Callable[[Tensor, Tensor], Tensor]


def nll(logits: Tensor, y: Tensor) -> Tensor:
    """Mean negative log-likelihood ``-(1/N) Σ log softmax(z_i)[y_i]`` (cross-entropy)."""
    return F.cross_entropy(logits, y)


def zero_one(logits: Tensor, y: Tensor) -> Tensor:
    """Fraction of examples whose ``argmax`` prediction differs from ``y`` (a float tensor).

    The result is float32 (float64 for float64 logits) and carries no gradient.
    """
    dtype = torch.promote_types(logits.dtype, torch.float32)
    return (logits.argmax(dim=1) != y).to(dtype).mean()


def mse_softmax(logits: Tensor, y: Tensor) -> Tensor:
    """``(1/N) Σ_i Σ_k (softmax(z_i)_k − onehot(y_i)_k)²`` — summed over classes."""
    p = torch.softmax(logits, dim=1)
    target = F.one_hot(y, num_classes=logits.shape[1]).to(p.dtype)
    return (p - target).square().sum(dim=1).mean()


#: Differentiable training losses by name (``zero_one`` is a metric, not listed here).
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
# Worked example: same classification error, different cross-entropy and MSE
# ---------------------------------------------------------------------------------------

#: The classic example from the practical notes (seed text 003): three people's political
#: leaning, two models, both wrong on the third example only.  Target one-hot columns are
#: (other, republican, democrat).
_EXAMPLE_CLASSES = ("other", "republican", "democrat")
_EXAMPLE_LABELS = (2, 1, 0)  # democrat, republican, other
_EXAMPLE_MODELS = {
    "model 1": ((0.3, 0.3, 0.4), (0.3, 0.4, 0.3), (0.1, 0.2, 0.7)),
    "model 2": ((0.1, 0.2, 0.7), (0.1, 0.7, 0.2), (0.3, 0.4, 0.3)),
}


def losses_worked_example() -> list[dict[str, Any]]:
    """Why train on cross-entropy rather than classification error: the classic example.

    Two models make the same mistakes (classification error 1/3 each) but model 2 is
    more confident when right and less confidently wrong; the average cross-entropy and
    the average squared error tell them apart, the error rate does not.  Every number is
    computed by this module's loss functions, on logits ``z = log p`` (``softmax(log p) =
    p`` because each row of ``p`` sums to 1), in float64.

    Returns one dict per model with ``model``, ``class_names``, ``probabilities``
    (3×3 lists), ``targets`` (one-hot rows), ``labels``, ``predicted``, ``correct``,
    ``classification_error``, ``cross_entropy`` (natural log) and ``mse`` (summed over
    classes, averaged over examples, as :func:`mse_softmax`).
    """
    y = torch.tensor(_EXAMPLE_LABELS)
    rows = []
    for model_name, probs in _EXAMPLE_MODELS.items():
        p = torch.tensor(probs, dtype=torch.float64)
        logits = p.log()
        predicted = logits.argmax(dim=1)
        rows.append(
            {
                "model": model_name,
                "class_names": list(_EXAMPLE_CLASSES),
                "probabilities": [list(r) for r in probs],
                "targets": F.one_hot(y, len(_EXAMPLE_CLASSES)).tolist(),
                "labels": y.tolist(),
                "predicted": predicted.tolist(),
                "correct": (predicted == y).tolist(),
                "classification_error": zero_one(logits, y).item(),
                "cross_entropy": nll(logits, y).item(),
                "mse": mse_softmax(logits, y).item(),
            }
        )
    return rows
