"""Multilayer perceptron, the Deep Learning Tutorials' ``mlp`` generalised to several layers.

For hidden layers ``l = 1..L`` and ``h⁽⁰⁾ = x.flatten(1)``:

.. math::

    a^{(l)} &= W^{(l)} h^{(l-1)} + b^{(l)}                       \\\\
    h^{(l)} &= \\operatorname{dropout}_p\\big(\\phi(\\operatorname{BN}(a^{(l)}))\\big) \\\\
    \\text{logits} &= W^{(out)} h^{(L)} + b^{(out)}

* ``φ`` is tanh (the tutorial's choice), relu or sigmoid.
* **Batch norm** (optional) sits between the linear map and the nonlinearity, as Ioffe &
  Szegedy place it: it normalizes the pre-activation ``Wh`` over the minibatch (batch
  statistics in ``train()``, running averages in ``eval()``), and the linear layer then
  has no bias because BN's shift ``β`` replaces it.  The output layer is never normalized.
* **Dropout** (optional, rate ``p`` = probability of zeroing) is applied to each hidden
  layer's output after the nonlinearity, so it thins the input of the next linear layer.
  The network input is not dropped.  Kept units are scaled by ``1/(1-p)`` in training
  ("inverted" dropout), so ``eval()`` runs the plain network.

Default initialization (``init="default"``), following the tutorial: hidden weights
``U(-r, r)`` with ``r = √(6/(fan_in+fan_out))`` (Glorot & Bengio), ``4r`` before a sigmoid;
He-normal before relu (the tutorial has no relu; He et al. derive that variance for it);
the output (softmax) layer and all biases zero.

With 784 inputs, ``hidden=(500,)`` and 10 classes: 784·500+500 + 500·10+10 = 397510
parameters.
"""

from __future__ import annotations

import math

from torch import Tensor

from descentlab.models.base import ACTIVATIONS
from descentlab.models.dense import DenseHead

__all__ = ["MLP"]


class MLP(DenseHead):
    """Fully connected classifier returning logits ``(N, n_classes)``.

    Parameters
    ----------
    input_shape:
        Shape of one example; it is flattened.
    n_classes:
        Number of classes (>= 2).
    hidden:
        Sizes of the hidden layers, e.g. ``(500,)`` (the tutorial) or ``(256, 128)``.
    activation:
        ``"tanh"``, ``"relu"`` or ``"sigmoid"``.
    dropout:
        Probability in ``[0, 1)`` of zeroing each hidden unit's output during training.
    batch_norm:
        Insert ``BatchNorm1d`` between each hidden linear layer and its nonlinearity.
    init:
        Initialization strategy (see :func:`descentlab.models.init.init_parameters`).
    """

    model_name = "mlp"

    def _build_features(self) -> int:
        return math.prod(self.input_shape)

    def forward(self, x: Tensor) -> Tensor:
        return self._dense_head(x.flatten(1), ACTIVATIONS[self.activation])
