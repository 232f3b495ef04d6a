"""The baselines of ``descentlab bench train``: the loops a competent user writes.

Each baseline trains *one epoch* per call, so the benchmark can interleave epochs of the
contenders.  All use ``nn.Sequential`` models with PyTorch's default initialization.

* :class:`TorchLoop` — the strongest plain loop: minibatches pre-sliced in memory (a list
  of views), the L2 penalty ``λ2 Σ W²`` as the optimizer's ``weight_decay = 2λ2`` on the
  weight matrices only (the same gradient, no graph), ``torch.optim.SGD(fused=True)`` /
  ``torch.optim.Adam(fused=True)`` (one kernel over all tensors), and
  ``zero_grad(set_to_none=True)``.
* :class:`CompiledLoop` — the same loop with the model ``torch.compile``-d (mode
  ``default``); its compile time is measured on its own (:attr:`CompiledLoop.compile_s`).
* :class:`NaiveLoop` — the loop as the Deep Learning Tutorials port it: L2 added to the
  loss as a Python sum over the weights, the optimizer's defaults, ``zero_grad()``.
* :class:`DataLoaderLoop` — the naive loop over ``DataLoader(TensorDataset(x, y))``.
* :class:`SklearnSGD` / :class:`SklearnMLP` — scikit-learn's ``SGDClassifier`` (softmax
  regression's nearest relative: one-vs-rest logistic regression, per-example SGD) and
  ``MLPClassifier``, one ``partial_fit`` pass per epoch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

__all__ = [
    "BaselineSpec",
    "CompiledLoop",
    "DataLoaderLoop",
    "NaiveLoop",
    "SklearnMLP",
    "SklearnSGD",
    "TorchLoop",
    "sequential_model",
]

_ACTIVATION_MODULES = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid}


@dataclass(frozen=True)
class BaselineSpec:
    """One workload as the baselines see it (the same numbers descentlab gets)."""

    hidden: tuple[int, ...]  # () = softmax regression
    activation: str
    optimizer: str  # "sgd" or "adam"
    lr: float
    batch_size: int
    l2: float = 0.0  # cost = NLL + l2 * Σ W² over the weight matrices


def sequential_model(n_in: int, n_classes: int, spec: BaselineSpec) -> nn.Sequential:
    """``Flatten → (Linear → activation)* → Linear`` with PyTorch's default init."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = n_in
    for h in spec.hidden:
        layers += [nn.Linear(width, h), _ACTIVATION_MODULES[spec.activation]()]
        width = h
    layers.append(nn.Linear(width, n_classes))
    return nn.Sequential(*layers)


def _naive_optimizer(model: nn.Module, spec: BaselineSpec) -> torch.optim.Optimizer:
    if spec.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=spec.lr)
    return torch.optim.SGD(model.parameters(), lr=spec.lr)


def _strong_optimizer(model: nn.Module, spec: BaselineSpec) -> torch.optim.Optimizer:
    """``weight_decay = 2λ2`` on the weight matrices (∂(λ2 ΣW²)/∂W = 2λ2 W), fused kernels."""
    weights = [p for name, p in model.named_parameters() if name.endswith("weight")]
    others = [p for name, p in model.named_parameters() if not name.endswith("weight")]
    groups = [
        {"params": weights, "weight_decay": 2.0 * spec.l2},
        {"params": others, "weight_decay": 0.0},
    ]
    if spec.optimizer == "adam":
        return torch.optim.Adam(groups, lr=spec.lr, fused=True)
    return torch.optim.SGD(groups, lr=spec.lr, fused=True)


class TorchLoop:
    """The strongest plain loop (see the module docstring)."""

    name = "torch loop"
    detail = "fused torch.optim, weight_decay, pre-sliced"

    def __init__(
        self, x: torch.Tensor, y: torch.Tensor, n_classes: int, spec: BaselineSpec
    ) -> None:
        self.x, self.y, self.spec = x, y, spec
        self.model: Any = sequential_model(x[0].numel(), n_classes, spec)  # or compiled
        self.optimizer = self._optimizer(spec)
        self.weights = [p for name, p in self.model.named_parameters() if name.endswith("weight")]
        batch = spec.batch_size
        self.batches = [
            (x[i * batch : (i + 1) * batch], y[i * batch : (i + 1) * batch])
            for i in range(x.shape[0] // batch)
        ]
        self.prepare()

    def prepare(self) -> None:
        """What a variant sets up after the model, optimizer and minibatches exist."""

    def _optimizer(self, spec: BaselineSpec) -> torch.optim.Optimizer:
        return _strong_optimizer(self.model, spec)

    def train_batch(self, xb: torch.Tensor, yb: torch.Tensor) -> None:
        """One minibatch step: zero the gradients, backpropagate the loss, step."""
        self.optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(self.model(xb), yb).backward()
        self.optimizer.step()

    def train_epoch(self) -> None:
        for xb, yb in self.batches:
            self.train_batch(xb, yb)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return _eval_argmax(self.model, x)


def _eval_argmax(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The predicted classes, in eval mode and without autograd (train mode restored)."""
    model.eval()
    with torch.inference_mode():
        out = model(x).argmax(1)
    model.train()
    return out


class CompiledLoop(TorchLoop):
    """:class:`TorchLoop` with ``torch.compile(model)``; ``compile_s`` is its first step."""

    name = "torch.compile loop"
    detail = "torch.compile(model), fused torch.optim"

    def prepare(self) -> None:
        self.eager = self.model
        self.model = torch.compile(self.eager)
        # The first step compiles (forward and backward graphs); timed apart from epochs.
        # The same first minibatch is trained again in the first epoch: one extra step.
        start = time.perf_counter()
        self.train_batch(*self.batches[0])
        self.compile_s = time.perf_counter() - start

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return _eval_argmax(self.eager, x)


class NaiveLoop(TorchLoop):
    """The tutorial-port loop: L2 in the loss as a Python sum, default optimizers."""

    name = "naive loop"
    detail = "L2 in the loss, torch.optim defaults"

    def _optimizer(self, spec: BaselineSpec) -> torch.optim.Optimizer:
        return _naive_optimizer(self.model, spec)

    def train_batch(self, xb: torch.Tensor, yb: torch.Tensor) -> None:
        """The tutorial's step: the L2 penalty summed in Python into the loss."""
        self.optimizer.zero_grad()
        loss = F.cross_entropy(self.model(xb), yb)
        if self.spec.l2:
            loss = loss + self.spec.l2 * sum(w.pow(2).sum() for w in self.weights)
        loss.backward()
        self.optimizer.step()

    def train_epoch(self) -> None:
        # Slices taken inside the loop, as the tutorial port does (not pre-sliced).
        x, y, batch = self.x, self.y, self.spec.batch_size
        for i in range(x.shape[0] // batch):
            self.train_batch(x[i * batch : (i + 1) * batch], y[i * batch : (i + 1) * batch])


class DataLoaderLoop(NaiveLoop):
    """The idiomatic loop: ``DataLoader(TensorDataset(x, y), batch_size=B)``."""

    name = "DataLoader loop"
    detail = "DataLoader, L2 in the loss"

    def prepare(self) -> None:
        self.loader = DataLoader(
            TensorDataset(self.x, self.y), batch_size=self.spec.batch_size, drop_last=True
        )

    def train_epoch(self) -> None:
        for xb, yb in self.loader:
            self.train_batch(xb, yb)


class SklearnSGD:
    """``SGDClassifier(loss="log_loss")``: one-vs-rest logistic regression, per-example SGD."""

    name = "scikit-learn"
    label = "SGDClassifier"

    def __init__(self, x: np.ndarray, y: np.ndarray, n_classes: int, spec: BaselineSpec) -> None:
        from sklearn.linear_model import SGDClassifier

        self.x, self.y = x, y
        self.classes = np.arange(n_classes)
        # The tutorial's lr of 0.13 is for averaged minibatch gradients; per example it
        # diverges, so the constant step is sklearn's own order of magnitude.
        self.model = SGDClassifier(
            loss="log_loss",
            penalty=None,
            learning_rate="constant",
            eta0=0.001,
            shuffle=False,
            random_state=0,
        )

    def train_epoch(self) -> None:
        self.model.partial_fit(self.x, self.y, classes=self.classes)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict(x)


class SklearnMLP(SklearnSGD):
    """``MLPClassifier`` with the same layers, minibatch size, learning rate and L2."""

    label = "MLPClassifier"

    def __init__(self, x: np.ndarray, y: np.ndarray, n_classes: int, spec: BaselineSpec) -> None:
        from sklearn.neural_network import MLPClassifier

        self.x, self.y = x, y
        self.classes = np.arange(n_classes)
        solver: dict[str, Any] = (
            {"solver": "adam"}
            if spec.optimizer == "adam"
            else {"solver": "sgd", "momentum": 0.0, "nesterovs_momentum": False}
        )
        self.model = MLPClassifier(
            hidden_layer_sizes=spec.hidden,
            activation=spec.activation if spec.activation != "sigmoid" else "logistic",
            learning_rate_init=spec.lr,
            batch_size=spec.batch_size,
            # sklearn's penalty is (alpha / 2) ΣW² / batch_size: its gradient alpha·W / B
            # equals 2·l2·W when alpha = 2·l2·B.
            alpha=2.0 * spec.l2 * spec.batch_size,
            shuffle=False,
            random_state=0,
            **solver,
        )
