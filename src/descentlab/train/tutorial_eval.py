"""Scoring a split the way the Deep Learning Tutorials score it.

The tutorial scripts never look at a split as a whole: they cut it into
``n_batches = n // batch_size`` whole minibatches of the training batch size (the
remainder is never scored) and report the *mean of the per-minibatch error rates*::

    error = (1 / n_batches) · Σ_b  (1 / batch_size) · Σ_{i in b} [ŷ_i ≠ y_i]

For the logistic regression (batch 600) that is 16 minibatches, 9,600 of the 10,000
validation and test examples; for the MLP (batch 20) 500 minibatches and for LeNet
(batch 500) 20, which cover the whole split.  All minibatches have the same size, so
the mean equals the error over the scored examples up to rounding -- and the rounding
matters: the early-stopping rule compares these numbers with ``<``, so a tie broken by
one unit in the last place decides whether a validation point is "a new best".  The
tutorial's published runs used the numpy of the time (before 1.9), whose ``mean`` summed
left to right; so the rates ``k_b / batch_size`` (float64) are summed left to right
here and divided by ``n_batches``.  With pairwise summation (numpy >= 1.9) the epoch-70
and epoch-72 validation errors of the logistic regression tie at 0.07510416666666667
and epoch 72 is no new best; summed left to right, epoch 72 gives 0.07510416666666665,
is a new best, and prints the published "test error of best model 7.510417 %" line.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from descentlab.data import Split
from descentlab.errors import ConfigError
from descentlab.train.evaluate import Evaluation, evaluate

__all__ = ["evaluate_tutorial", "tutorial_error", "tutorial_scored"]


def tutorial_error(predictions: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    """Mean of the per-minibatch error rates over the whole minibatches of ``batch_size``."""
    n_batches = int(y.shape[0]) // batch_size
    if n_batches < 1:
        raise ConfigError(
            f"eval_style 'tutorial' scores whole minibatches of {batch_size}, but the split has "
            f"only {int(y.shape[0])} examples",
            hint="use --eval-style full, or a --batch-size no larger than the split",
        )
    n = n_batches * batch_size
    wrong = (predictions[:n].to(y.device) != y[:n]).reshape(n_batches, batch_size)
    total = 0.0
    for count in wrong.sum(dim=1).tolist():  # left to right, see the module docstring
        total += count / batch_size
    return total / n_batches


def tutorial_scored(full: Evaluation, y: torch.Tensor, batch_size: int) -> Evaluation:
    """``full`` (an :func:`evaluate` of the whole split) with ``error`` and ``n`` replaced
    by the tutorial's rule over the whole minibatches of ``batch_size``.

    NLL, F1 and the predictions still cover the whole split (the predictions are saved
    with the run and must line up with the split's labels).
    """
    error = tutorial_error(full.predictions, y.cpu(), batch_size)
    n_scored = (int(y.shape[0]) // batch_size) * batch_size
    return replace(full, error=error, n=n_scored)


def evaluate_tutorial(
    model: nn.Module, split: Split, *, n_classes: int, batch_size: int, eval_batch_size: int
) -> Evaluation:
    """:func:`evaluate` scored by the tutorial's rule (:func:`tutorial_scored`)."""
    full = evaluate(model, split, n_classes=n_classes, batch_size=eval_batch_size)
    return tutorial_scored(full, split.y, batch_size)
