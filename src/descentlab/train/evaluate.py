"""Scoring a model on a whole split: NLL, zero-one error, macro-F1, predictions.

Evaluation runs under ``torch.inference_mode`` in large chunks (no autograd
bookkeeping, few kernel launches) and syncs with the host once per split.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from descentlab.data import Split
from descentlab.metrics import precision_recall_f1


@dataclass
class Evaluation:
    """Scores of one model on one split (errors are fractions in [0, 1])."""

    nll: float
    error: float
    f1: float
    predictions: torch.Tensor
    n: int

    @property
    def n_errors(self) -> int:
        return round(self.error * self.n)


@torch.inference_mode()
def evaluate(
    model: nn.Module, split: Split, *, n_classes: int, batch_size: int = 10000
) -> Evaluation:
    """Mean NLL, error rate and macro-F1 of ``model`` on ``split`` (model put in eval mode)."""
    was_training = model.training
    model.eval()
    try:
        n = split.y.shape[0]
        if n == 0:
            raise ValueError("cannot evaluate on an empty split")
        nll_sum = torch.zeros((), dtype=torch.float64, device=split.x.device)
        predictions = torch.empty(n, dtype=torch.int64, device=split.x.device)
        for start in range(0, n, batch_size):
            x = split.x[start : start + batch_size]
            y = split.y[start : start + batch_size]
            logits = model(x)
            nll_sum += torch.nn.functional.cross_entropy(
                logits.float(), y, reduction="sum"
            ).double()
            predictions[start : start + batch_size] = logits.argmax(dim=1)
        wrong = (predictions != split.y).sum()
        _, _, f1 = precision_recall_f1(split.y, predictions, n_classes)
        assert not isinstance(f1, list)  # the macro average is one number
        # one host sync for all three numbers
        nll, n_wrong = torch.stack([nll_sum, wrong.double()]).tolist()
        return Evaluation(
            nll=nll / n, error=n_wrong / n, f1=float(f1), predictions=predictions.cpu(), n=n
        )
    finally:
        model.train(was_training)
