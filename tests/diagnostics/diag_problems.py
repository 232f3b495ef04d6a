"""Problems with known answers for the diagnostics tests."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import Tensor, nn

from descentlab.diagnostics import default_cost
from descentlab.models import build_model
from descentlab.optim import SGD


def random_orthogonal(d: int, seed: int) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    return q


class Quadratic(nn.Module):
    """``C(θ) = ½ θᵀAθ + bᵀθ`` with θ split over two tensors (a 2×3 matrix and a 3-vector),
    so flattening across parameters is exercised.  The data are ignored (a data-free cost
    satisfies the cost contract)."""

    def __init__(self, eigenvalues: list[float], seed: int = 0) -> None:
        super().__init__()
        assert len(eigenvalues) == 9
        q = random_orthogonal(9, seed)
        self.register_buffer(
            "a", q @ torch.diag(torch.tensor(eigenvalues, dtype=torch.float64)) @ q.T
        )
        gen = torch.Generator().manual_seed(seed + 1)
        self.register_buffer("b", torch.randn(9, generator=gen, dtype=torch.float64))
        self.w = nn.Parameter(torch.randn(2, 3, generator=gen, dtype=torch.float64))
        self.c = nn.Parameter(torch.randn(3, generator=gen, dtype=torch.float64))

    def theta(self) -> Tensor:
        return torch.cat([self.w.reshape(-1), self.c])

    def forward(self, x: Tensor) -> Tensor:
        th = self.theta()
        return 0.5 * th @ self.a @ th + self.b @ th


def quadratic_cost(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    return model(x)


def least_squares(eigenvalues: list[float], n: int = 50, seed: int = 0):
    """Linear regression ``½·mean((xθ − y)²)`` whose Hessian ``XᵀX/N`` has the given
    eigenvalues: ``X = √N · U diag(√λ) Qᵀ`` with ``U`` orthonormal columns."""
    d = len(eigenvalues)
    gen = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(n, d, generator=gen, dtype=torch.float64))
    q = random_orthogonal(d, seed + 1)
    lam = torch.tensor(eigenvalues, dtype=torch.float64)
    x = n**0.5 * u @ torch.diag(lam.sqrt()) @ q.T
    y = torch.randn(n, generator=gen, dtype=torch.float64)
    model = nn.Linear(d, 1, bias=False).double()
    return model, x, y


def mse_cost(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    return 0.5 * (model(x).squeeze(1) - y).square().mean()


def digits() -> tuple[Tensor, Tensor]:
    data = load_digits()
    x = torch.tensor(np.asarray(data.data) / 16.0, dtype=torch.float32)
    return x, torch.tensor(data.target, dtype=torch.int64)


def trained_digits_logreg(epochs: int = 3, l2: float = 1e-4) -> tuple[nn.Module, Tensor, Tensor]:
    """Softmax regression on all 1797 digits, a few epochs of minibatch SGD (lr 0.1, B 64)."""
    x, y = digits()
    torch.manual_seed(0)
    model = build_model("logreg", (64,), 10)
    opt = SGD(model.parameters(), lr=0.1)
    cost = default_cost("nll", l2=l2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=gen).split(64):
            opt.zero_grad()
            cost(model, x[idx], y[idx]).backward()
            opt.step()
    return model, x, y
