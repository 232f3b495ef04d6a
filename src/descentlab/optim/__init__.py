"""The optimizers of Deep Learning ch. 8, with schedules, clipping and iterate averaging.

Each optimizer is a :class:`torch.optim.Optimizer` written next to its algorithm box:

============  ==========================  ================================================
class         algorithm                   registry names
============  ==========================  ================================================
SGD           8.1, 8.2, 8.3               ``sgd``, ``momentum``, ``nesterov``
AdaGrad       8.4                         ``adagrad``
RMSProp       8.5, 8.6                    ``rmsprop``, ``rmsprop-nesterov``
Adam          8.7                         ``adam``
AdaDelta      Zeiler (2012)               ``adadelta``
============  ==========================  ================================================

``build_optimizer(name, params, **hparams)`` builds them (and any ``torch.<Name>``) by
name; :mod:`descentlab.optim.schedules` has the learning-rate schedules; see
docs/optimizers.md for the conventions (where δ goes, Nesterov with a closure, decoupled
weight decay versus an L2 penalty). ``fused_sgd_``, ``fused_adam_``, ``fused_adagrad_``
and ``fused_rmsprop_`` are the single-pass updates behind ``fused=True``, for callers that
hold the optimizer state themselves (the trainer's dense fast path).
"""

from descentlab.optim import schedules
from descentlab.optim.adadelta import AdaDelta
from descentlab.optim.adagrad import AdaGrad, fused_adagrad_
from descentlab.optim.adam import Adam, fused_adam_
from descentlab.optim.averaging import EMA, PolyakAverage
from descentlab.optim.clipping import clip_grad_norm_, clip_grad_value_
from descentlab.optim.registry import (
    OPTIMIZER_NAMES,
    build_optimizer,
    default_lr,
    describe_optimizers,
    optimizer_hyperparameters,
)
from descentlab.optim.rmsprop import RMSProp, fused_rmsprop_
from descentlab.optim.schedules import LinearDecay, build_schedule
from descentlab.optim.sgd import SGD, fused_sgd_

__all__ = [
    "EMA",
    "OPTIMIZER_NAMES",
    "SGD",
    "AdaDelta",
    "AdaGrad",
    "Adam",
    "LinearDecay",
    "PolyakAverage",
    "RMSProp",
    "build_optimizer",
    "build_schedule",
    "clip_grad_norm_",
    "clip_grad_value_",
    "default_lr",
    "describe_optimizers",
    "fused_adagrad_",
    "fused_adam_",
    "fused_rmsprop_",
    "fused_sgd_",
    "optimizer_hyperparameters",
    "schedules",
]
