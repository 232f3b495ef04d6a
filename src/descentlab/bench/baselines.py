"""The baselines of ``descentlab bench train``, written the way a user would write them.

No tricks here on purpose: ``nn.Sequential`` models, ``torch.optim`` optimizers with their
defaults, ``opt.zero_grad(); loss.backward(); opt.step()``, the L2 penalty added to the
loss.  Each baseline trains *one epoch* per call, so the benchmark can interleave epochs
of the contenders.

* :class:`TorchLoop` — the hand-written loop over tensor slices of data already in memory
  (what the Deep Learning Tutorials do with ``train_set_x[i * B : (i + 1) * B]``).
* :class:`DataLoaderLoop` — the idiomatic ``DataLoader(TensorDataset(x, y))`` loop.
* :class:`SklearnSGD` / :class:`SklearnMLP` — scikit-learn's ``SGDClassifier`` (softmax
  regression's nearest relative: one-vs-rest logistic regression, per-example SGD) and
  ``MLPClassifier``, one ``partial_fit`` pass per epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

__all__ = [
    "BaselineSpec",
    "DataLoaderLoop",
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


def _torch_optimizer(model: nn.Module, spec: BaselineSpec) -> torch.optim.Optimizer:
    if spec.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=spec.lr)
    return torch.optim.SGD(model.parameters(), lr=spec.lr)


class TorchLoop:
    """The hand-written loop: slice minibatches off tensors held in memory."""

    name = "torch loop"

    def __init__(
        self, x: torch.Tensor, y: torch.Tensor, n_classes: int, spec: BaselineSpec
    ) -> None:
        self.x, self.y, self.spec = x, y, spec
        self.model = sequential_model(x[0].numel(), n_classes, spec)
        self.optimizer = _torch_optimizer(self.model, spec)
        self.weights = [p for name, p in self.model.named_parameters() if name.endswith("weight")]

    def train_epoch(self) -> None:
        model, opt, x, y = self.model, self.optimizer, self.x, self.y
        batch, l2 = self.spec.batch_size, self.spec.l2
        for i in range(x.shape[0] // batch):
            xb = x[i * batch : (i + 1) * batch]
            yb = y[i * batch : (i + 1) * batch]
            opt.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            if l2:
                loss = loss + l2 * sum(w.pow(2).sum() for w in self.weights)
            loss.backward()
            opt.step()

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        self.model.eval()
        with torch.inference_mode():
            out = self.model(x).argmax(1)
        self.model.train()
        return out


class DataLoaderLoop(TorchLoop):
    """The idiomatic loop: ``DataLoader(TensorDataset(x, y), batch_size=B)``."""

    name = "DataLoader loop"

    def __init__(
        self, x: torch.Tensor, y: torch.Tensor, n_classes: int, spec: BaselineSpec
    ) -> None:
        super().__init__(x, y, n_classes, spec)
        self.loader = DataLoader(TensorDataset(x, y), batch_size=spec.batch_size, drop_last=True)

    def train_epoch(self) -> None:
        model, opt, l2 = self.model, self.optimizer, self.spec.l2
        for xb, yb in self.loader:
            opt.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            if l2:
                loss = loss + l2 * sum(w.pow(2).sum() for w in self.weights)
            loss.backward()
            opt.step()


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
