"""Per-example losses on logits, the zero-one error, and the cross-entropy-vs-MSE example.

The cost that training minimizes (a surrogate loss plus the L1/L2 weight penalty) is
defined once, in :mod:`descentlab.objective`; its pieces are re-exported here under
their historical names (:func:`nll`, :func:`mse_softmax`, :data:`LOSSES`,
:func:`get_loss`, :func:`penalty`, :func:`weight_parameters`, :func:`add_penalty_grad_`).
This module adds what is *not* trained on:

* :func:`zero_one` (the "true metric" the surrogate stands in for)::

      L = (1/N) Σ_i [argmax_k z_ik ≠ y_i]

  not differentiable; ties go to the lowest class index (``argmax``'s rule).
* :func:`losses_worked_example`: the classic example of two models with the same
  classification error but different cross-entropy and MSE.

Every loss takes ``logits`` of shape ``(N, K)`` and integer labels ``y`` of shape
``(N,)`` and returns the **mean over the N examples**, as the Deep Learning Tutorials
do (``T.mean``), so the gradient scale does not depend on the minibatch size.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from descentlab.objective import (
    LOSSES,
    LossFn,
    add_penalty_grad_,
    get_loss,
    mse_softmax,
    nll,
    penalty,
    weight_parameters,
)

__all__ = [
    "LOSSES",
    "LossFn",
    "add_penalty_grad_",
    "get_loss",
    "losses_worked_example",
    "mse_softmax",
    "nll",
    "penalty",
    "weight_parameters",
    "zero_one",
]


def zero_one(logits: Tensor, y: Tensor) -> Tensor:
    """Fraction of examples whose ``argmax`` prediction differs from ``y`` (a float tensor).

    The result is float32 (float64 for float64 logits) and carries no gradient.
    """
    dtype = torch.promote_types(logits.dtype, torch.float32)
    return (logits.argmax(dim=1) != y).to(dtype).mean()


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
