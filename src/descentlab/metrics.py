"""Classification metrics on integer labels: error rate, accuracy, P/R/F1, confusion matrix.

Inputs are 1-D integer label sequences (torch tensors on any device, numpy arrays, or
lists) of equal length: ``y_true`` the targets, ``y_pred`` the predicted classes (for a
model, ``logits.argmax(1)``).  Scalar results are Python floats.

For class ``k`` with ``tp`` true positives, ``fp`` false positives and ``fn`` false
negatives (read off the confusion matrix ``C[true, pred]``)::

    precision_k = tp / (tp + fp)        recall_k = tp / (tp + fn)
    F1_k        = 2·tp / (2·tp + fp + fn)   (= harmonic mean of precision and recall)

and any 0/0 is defined as 0, as scikit-learn's ``zero_division=0``.  Averages:

* ``"macro"``: unweighted mean over **all** ``n_classes`` classes (a class absent from
  both ``y_true`` and ``y_pred`` contributes 0 — scikit-learn with
  ``labels=range(n_classes)``);
* ``"weighted"``: mean weighted by each class's support (its count in ``y_true``);
* ``"micro"``: from the summed counts (for single-label data equal to the accuracy);
* ``None``: the per-class values.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from descentlab.errors import ConfigError, DataError, did_you_mean

__all__ = [
    "AVERAGES",
    "accuracy",
    "classification_report",
    "confusion_matrix",
    "error_rate",
    "precision_recall_f1",
]

AVERAGES = ("macro", "weighted", "micro")

Labels = Tensor | np.ndarray | Sequence[int]


def _as_labels(values: Labels, name: str) -> Tensor:
    """A 1-D int64 tensor (device kept for tensors), or DataError with the fix."""
    try:
        t = values if isinstance(values, Tensor) else torch.as_tensor(np.asarray(values))
    except (TypeError, ValueError) as exc:
        raise DataError(
            f"{name} must be a sequence of integer class labels ({exc})",
            hint="pass a 1-D tensor, array or list of ints",
        ) from None
    if t.numel() == 0:
        raise DataError(f"{name} is empty", hint="pass at least one label and prediction")
    if t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
        raise DataError(
            f"{name} must hold integer class labels, got dtype {t.dtype}",
            hint="for model outputs pass logits.argmax(1); convert float labels with .long()",
        )
    if t.dim() != 1:
        raise DataError(
            f"{name} must be 1-D, got shape {tuple(t.shape)}",
            hint="flatten it, or pass argmax(1) of one-hot rows",
        )
    return t.long()


def _pair(y_true: Labels, y_pred: Labels) -> tuple[Tensor, Tensor]:
    t = _as_labels(y_true, "y_true")
    p = _as_labels(y_pred, "y_pred").to(t.device)
    if t.shape != p.shape:
        raise DataError(
            f"y_true and y_pred have different lengths ({t.numel()} and {p.numel()})",
            hint="pass one prediction per example",
        )
    return t, p


def _check_n_classes(n_classes: object) -> int:
    if not isinstance(n_classes, numbers.Integral) or isinstance(n_classes, bool):
        raise ConfigError(f"n_classes must be an int >= 1, got {n_classes!r}")
    if int(n_classes) < 1:
        raise ConfigError(f"n_classes must be an int >= 1, got {n_classes!r}")
    return int(n_classes)


def error_rate(y_true: Labels, y_pred: Labels) -> float:
    """Fraction of examples with ``y_pred != y_true`` (the zero-one loss)."""
    t, p = _pair(y_true, y_pred)
    return int((t != p).sum()) / t.numel()


def accuracy(y_true: Labels, y_pred: Labels) -> float:
    """Fraction of examples with ``y_pred == y_true``."""
    t, p = _pair(y_true, y_pred)
    return int((t == p).sum()) / t.numel()


def _confusion(t: Tensor, p: Tensor, n_classes: int) -> Tensor:
    lo = int(torch.minimum(t.min(), p.min()))
    hi = int(torch.maximum(t.max(), p.max()))
    if lo < 0 or hi >= n_classes:
        bad = lo if lo < 0 else hi
        raise DataError(
            f"label {bad} is outside the {n_classes} classes 0..{n_classes - 1}",
            hint="check n_classes, or map the labels to 0..n_classes-1 first",
        )
    # One bincount over the flattened (true, pred) index instead of a Python loop.
    return torch.bincount(t * n_classes + p, minlength=n_classes * n_classes).view(
        n_classes, n_classes
    )


def confusion_matrix(y_true: Labels, y_pred: Labels, n_classes: int) -> Tensor:
    """``C[i, j]`` = number of examples of true class ``i`` predicted as ``j`` (int64).

    Rows are true classes, columns predictions (scikit-learn's layout); the result is a
    tensor on ``y_true``'s device (CPU for numpy or list input).
    """
    n_classes = _check_n_classes(n_classes)
    t, p = _pair(y_true, y_pred)
    return _confusion(t, p, n_classes)


def _per_class(cm: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-class precision, recall, F1 (0/0 → 0) and support, as float64/int64 tensors."""
    cm = cm.double()
    tp = cm.diagonal()
    predicted = cm.sum(dim=0)  # tp + fp
    support = cm.sum(dim=1)  # tp + fn

    def ratio(num: Tensor, den: Tensor) -> Tensor:
        return torch.where(den > 0, num / den.clamp(min=1), torch.zeros_like(num))

    return (
        ratio(tp, predicted),
        ratio(tp, support),
        ratio(2 * tp, predicted + support),
        support.long(),
    )


def precision_recall_f1(
    y_true: Labels,
    y_pred: Labels,
    n_classes: int,
    average: str | None = "macro",
) -> tuple[float, float, float] | tuple[list[float], list[float], list[float]]:
    """Precision, recall and F1, averaged as ``average`` says (see the module docstring).

    Returns three floats, or three per-class lists when ``average=None``.
    """
    if average is not None and average not in AVERAGES:
        raise ConfigError(f"unknown average {average!r}", hint=did_you_mean(str(average), AVERAGES))
    n_classes = _check_n_classes(n_classes)
    t, p = _pair(y_true, y_pred)
    cm = _confusion(t, p, n_classes)
    return _average(cm, average)


def _average(
    cm: Tensor, average: str | None
) -> tuple[float, float, float] | tuple[list[float], list[float], list[float]]:
    precision, recall, f1, support = _per_class(cm)
    if average is None:
        return precision.tolist(), recall.tolist(), f1.tolist()
    if average == "macro":
        return precision.mean().item(), recall.mean().item(), f1.mean().item()
    if average == "weighted":
        w = support.double() / support.sum()
        return (precision @ w).item(), (recall @ w).item(), (f1 @ w).item()
    # micro: pool the counts; with one label per example Σfp = Σfn = errors.
    cm = cm.double()
    tp = cm.diagonal().sum()
    total = cm.sum()
    value = (tp / total).item()
    return value, value, value


def classification_report(
    y_true: Labels,
    y_pred: Labels,
    n_classes: int,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """All the metrics at once, as a JSON-serialisable dict.

    Keys: ``n_examples``, ``n_errors``, ``error_rate``, ``accuracy``, ``macro`` and
    ``weighted`` (each ``{"precision", "recall", "f1"}``), ``per_class`` (a list of
    ``{"class", "name", "precision", "recall", "f1", "support"}``) and
    ``confusion_matrix`` (rows = true class, as nested lists).
    """
    n_classes = _check_n_classes(n_classes)
    if class_names is not None and len(class_names) != n_classes:
        raise ConfigError(
            f"got {len(class_names)} class names for {n_classes} classes",
            hint="pass one name per class, or none",
        )
    t, p = _pair(y_true, y_pred)
    cm = _confusion(t, p, n_classes)
    n = t.numel()
    n_correct = int(cm.diagonal().sum())
    precision, recall, f1, support = _per_class(cm)
    report: dict[str, Any] = {
        "n_examples": n,
        "n_errors": n - n_correct,
        "error_rate": (n - n_correct) / n,
        "accuracy": n_correct / n,
    }
    for average in ("macro", "weighted"):
        p_avg, r_avg, f_avg = _average(cm, average)
        report[average] = {"precision": p_avg, "recall": r_avg, "f1": f_avg}
    names = list(class_names) if class_names is not None else [str(k) for k in range(n_classes)]
    report["per_class"] = [
        {
            "class": k,
            "name": names[k],
            "precision": precision[k].item(),
            "recall": recall[k].item(),
            "f1": f1[k].item(),
            "support": int(support[k]),
        }
        for k in range(n_classes)
    ]
    report["confusion_matrix"] = cm.cpu().tolist()
    return report
