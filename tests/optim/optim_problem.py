"""A fixed softmax-regression problem and NumPy transcriptions of the chapter-8 algorithms.

The transcriptions are written from the algorithm boxes of Goodfellow et al. (and Zeiler
2012 for AdaDelta), in float64 NumPy, independently of descentlab's implementation: they
are the oracle the optimizers are tested against.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

Theta = list[np.ndarray]
GradFn = Callable[[Theta], Theta]

N_EXAMPLES, N_FEATURES, N_CLASSES = 64, 5, 3


def make_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, Theta]:
    """Inputs X (64×5), integer labels y, and initial parameters [W (5×3), b (3,)]."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N_EXAMPLES, N_FEATURES))
    true_w = rng.normal(size=(N_FEATURES, N_CLASSES)) * 2.0
    y = np.argmax(X @ true_w + rng.normal(size=(N_EXAMPLES, N_CLASSES)), axis=1)
    theta0 = [rng.normal(size=(N_FEATURES, N_CLASSES)) * 0.1, rng.normal(size=N_CLASSES) * 0.1]
    return X, y, theta0


def numpy_grad_fn(X: np.ndarray, y: np.ndarray) -> GradFn:
    """Gradient of the mean negative log-likelihood of softmax(XW + b)."""
    onehot = np.eye(N_CLASSES)[y]

    def grad(theta: Theta) -> Theta:
        W, b = theta
        z = X @ W + b
        z = z - z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        d = (p - onehot) / len(X)
        return [X.T @ d, d.sum(axis=0)]

    return grad


class TorchProblem:
    """The same problem in torch: parameters and a closure for ``optimizer.step``."""

    def __init__(self, seed: int = 0, dtype: torch.dtype = torch.float64) -> None:
        X, y, theta0 = make_data(seed)
        self.X = torch.tensor(X, dtype=dtype)
        self.y = torch.tensor(y)
        self.params = [torch.tensor(t, dtype=dtype, requires_grad=True) for t in theta0]

    def loss(self) -> torch.Tensor:
        W, b = self.params
        return torch.nn.functional.cross_entropy(self.X @ W + b, self.y)

    def closure(self, optimizer: torch.optim.Optimizer) -> Callable[[], torch.Tensor]:
        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = self.loss()
            loss.backward()
            return loss

        return closure

    def snapshot(self) -> list[np.ndarray]:
        return [p.detach().numpy().copy() for p in self.params]


def run_torch(
    problem: TorchProblem,
    optimizer: torch.optim.Optimizer,
    steps: int,
    *,
    use_closure: bool = True,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> list[list[np.ndarray]]:
    """Iterates θ_1..θ_steps; without a closure the gradient is computed before ``step()``."""
    closure = problem.closure(optimizer)
    iterates = []
    for _ in range(steps):
        if use_closure:
            optimizer.step(closure)
        else:
            closure()
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        iterates.append(problem.snapshot())
    return iterates


# ----------------------------------------------------------------------------- the oracles
def _zeros(theta: Theta) -> Theta:
    return [np.zeros_like(t) for t in theta]


def _decay(theta: Theta, lr: float, weight_decay: float) -> Theta:
    """Decoupled weight decay θ ← θ − ελθ."""
    return [t - lr * weight_decay * t for t in theta]


def sgd(theta: Theta, grad: GradFn, lrs: Sequence[float], weight_decay: float = 0.0) -> list[Theta]:
    """Algorithm 8.1 with learning rate ε_k = lrs[k] at iteration k."""
    out = []
    for eps_k in lrs:
        g = grad(theta)
        theta = _decay(theta, eps_k, weight_decay)
        theta = [t - eps_k * gi for t, gi in zip(theta, g)]
        out.append(theta)
    return out


def momentum(
    theta: Theta,
    grad: GradFn,
    lrs: Sequence[float],
    alpha: float,
    *,
    nesterov: bool = False,
    weight_decay: float = 0.0,
) -> list[Theta]:
    """Algorithm 8.2 (8.3 with ``nesterov``: gradient at θ + αv); v starts at 0."""
    v = _zeros(theta)
    out = []
    for eps_k in lrs:
        point = [t + alpha * vi for t, vi in zip(theta, v)] if nesterov else theta
        g = grad(point)
        theta = _decay(theta, eps_k, weight_decay)
        v = [alpha * vi - eps_k * gi for vi, gi in zip(v, g)]
        theta = [t + vi for t, vi in zip(theta, v)]
        out.append(theta)
    return out


def adagrad(theta: Theta, grad: GradFn, steps: int, lr: float, delta: float) -> list[Theta]:
    """Algorithm 8.4: r ← r + g⊙g; Δθ = −ε/(δ + √r) ⊙ g."""
    r = _zeros(theta)
    out = []
    for _ in range(steps):
        g = grad(theta)
        r = [ri + gi * gi for ri, gi in zip(r, g)]
        theta = [t - lr / (delta + np.sqrt(ri)) * gi for t, ri, gi in zip(theta, r, g)]
        out.append(theta)
    return out


def rmsprop(
    theta: Theta,
    grad: GradFn,
    steps: int,
    lr: float,
    rho: float,
    delta: float,
    *,
    delta_inside_sqrt: bool = False,
    alpha: float = 0.0,
    nesterov: bool = False,
) -> list[Theta]:
    """Algorithm 8.5 (Δθ = −ε/(δ + √r) ⊙ g, or −ε/√(δ + r) ⊙ g as in the book's box).

    With ``alpha > 0``: v ← αv + Δθ, θ ← θ + v; with ``nesterov`` the gradient is taken
    at θ + αv (Algorithm 8.6).
    """
    r = _zeros(theta)
    v = _zeros(theta)
    out = []
    for _ in range(steps):
        point = [t + alpha * vi for t, vi in zip(theta, v)] if nesterov else theta
        g = grad(point)
        r = [rho * ri + (1 - rho) * gi * gi for ri, gi in zip(r, g)]
        if delta_inside_sqrt:
            step = [-lr / np.sqrt(delta + ri) * gi for ri, gi in zip(r, g)]
        else:
            step = [-lr / (delta + np.sqrt(ri)) * gi for ri, gi in zip(r, g)]
        if alpha > 0:
            v = [alpha * vi + si for vi, si in zip(v, step)]
            theta = [t + vi for t, vi in zip(theta, v)]
        else:
            theta = [t + si for t, si in zip(theta, step)]
        out.append(theta)
    return out


def adam(
    theta: Theta,
    grad: GradFn,
    steps: int,
    lr: float,
    rho1: float,
    rho2: float,
    delta: float,
    weight_decay: float = 0.0,
) -> list[Theta]:
    """Algorithm 8.7 with bias correction; Δθ = −ε ŝ/(√r̂ + δ)."""
    s = _zeros(theta)
    r = _zeros(theta)
    out = []
    for t in range(1, steps + 1):
        g = grad(theta)
        theta = _decay(theta, lr, weight_decay)
        s = [rho1 * si + (1 - rho1) * gi for si, gi in zip(s, g)]
        r = [rho2 * ri + (1 - rho2) * gi * gi for ri, gi in zip(r, g)]
        s_hat = [si / (1 - rho1**t) for si in s]
        r_hat = [ri / (1 - rho2**t) for ri in r]
        theta = [th - lr * sh / (np.sqrt(rh) + delta) for th, sh, rh in zip(theta, s_hat, r_hat)]
        out.append(theta)
    return out


def adadelta(
    theta: Theta, grad: GradFn, steps: int, lr: float, rho: float, eps: float
) -> list[Theta]:
    """Zeiler (2012) Algorithm 1, the applied step scaled by lr."""
    eg2 = _zeros(theta)
    edx2 = _zeros(theta)
    out = []
    for _ in range(steps):
        g = grad(theta)
        eg2 = [rho * e + (1 - rho) * gi * gi for e, gi in zip(eg2, g)]
        dx = [-np.sqrt(ed + eps) / np.sqrt(e + eps) * gi for ed, e, gi in zip(edx2, eg2, g)]
        edx2 = [rho * ed + (1 - rho) * d * d for ed, d in zip(edx2, dx)]
        theta = [t + lr * d for t, d in zip(theta, dx)]
        out.append(theta)
    return out
