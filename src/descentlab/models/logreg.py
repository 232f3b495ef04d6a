"""Multiclass logistic (softmax) regression, the Deep Learning Tutorials' ``logistic_sgd``.

.. math::

    P(Y = i \\mid x, W, b) = \\operatorname{softmax}_i(W x + b)
                          = \\frac{e^{W_i x + b_i}}{\\sum_j e^{W_j x + b_j}}

The module returns the logits ``W x + b``; the softmax is applied inside the loss.  The
tutorial initializes ``W`` and ``b`` to zeros (the problem is convex, so there is no
symmetry to break), which is this model's ``"default"`` initialization.  With a
``(N, 1, 28, 28)`` MNIST batch it has 784·10 + 10 = 7850 parameters.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from descentlab.models.base import check_input_shape, check_n_classes, tag_layer
from descentlab.models.init import init_parameters

__all__ = ["LogisticRegression"]


class LogisticRegression(nn.Module):
    """Softmax regression: logits ``x.flatten(1) @ W.T + b``.

    Parameters
    ----------
    input_shape:
        Shape of one example, e.g. ``(1, 28, 28)`` or ``(64,)``; it is flattened.
    n_classes:
        Number of classes (>= 2).
    init:
        Initialization strategy (see :func:`descentlab.models.init.init_parameters`);
        ``"default"`` is the tutorial's zeros.
    """

    def __init__(
        self, input_shape: tuple[int, ...], n_classes: int, *, init: str = "default"
    ) -> None:
        super().__init__()
        self.input_shape = check_input_shape(input_shape)
        self.n_classes = check_n_classes(n_classes)
        self.linear = tag_layer(nn.Linear(math.prod(self.input_shape), self.n_classes), None)
        init_parameters(self, init)

    def forward(self, x: Tensor) -> Tensor:
        # flatten(1) is a view for contiguous batches (no copy).
        return self.linear(x.flatten(1))
