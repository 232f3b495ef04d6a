"""The optimizers' updates on stacked parameters: member k's row with member k's numbers.

Each update here is the algorithm box of its optimizer in :mod:`descentlab.optim`, line
for line, with every hyperparameter a vector over the members (broadcast as ``(K, 1, 1)``
against a weight stack ``(K, out, in)``).  The optimizers themselves update one model;
these update K models at once, so the lines are written again here, and
``tests/train/test_fused.py`` checks each against a separate run of the optimizer.

==============  ===============================================================  =========
optimizer       per member k (θ, g, state: member k's rows)                       box
==============  ===============================================================  =========
SGD             θ ← (1 − ε_k λ_k)θ;  v ← α_k v − ε_k g;  θ ← θ + v (α_k = 0: θ − ε_k g)  8.1–8.3
AdaGrad         r ← r + g⊙g;  θ ← θ − ε_k g / (δ_k + √r)                           8.4
RMSProp         r ← ρ_k r + (1 − ρ_k) g⊙g;  v ← α_k v − ε_k g/(δ_k + √r);  θ ← θ + v  8.5–8.6
Adam            s ← ρ1 s + (1 − ρ1) g;  r ← ρ2 r + (1 − ρ2) g⊙g;
                θ ← θ − ε_k ŝ / (√r̂ + δ_k),  ŝ = s/(1 − ρ1^t), r̂ = r/(1 − ρ2^t)     8.7
AdaDelta        E[g²] ← ρE[g²] + (1 − ρ)g²;  Δ = −RMS[Δ]/RMS[g]·g;  θ ← θ + ε_k Δ  Zeiler
==============  ===============================================================  =========

Nesterov momentum (SGD, RMSProp) evaluates the gradient at θ + α_k v:
:meth:`BatchedUpdate.lookahead` gives the stacked look-ahead point, the cost is taken
there, and the update is applied to θ (as the optimizers do with a closure).
Flags that change the algorithm (``nesterov``, ``amsgrad``, ``centered``,
``eps_inside_sqrt``) are the same for every member of a group.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from descentlab.errors import ConfigError
from descentlab.optim import AdaDelta, AdaGrad, Adam, RMSProp
from descentlab.optim.sgd import SGD

__all__ = ["BatchedUpdate", "batched_update"]

# Options that change the algorithm: one value per group.
_FLAGS = ("nesterov", "amsgrad", "centered", "eps_inside_sqrt", "maximize", "differentiable")


def _rows(vector: Tensor, like: Tensor) -> Tensor:
    """A per-member vector shaped to broadcast against a stacked tensor ``like``."""
    return vector.view((-1,) + (1,) * (like.dim() - 1))


class BatchedUpdate:
    """One optimizer's update for K stacked members: hyperparameter vectors and state."""

    state_names: tuple[str, ...] = ()

    def __init__(self, optimizers: Sequence[torch.optim.Optimizer], params: list[Tensor]) -> None:
        groups = []
        for opt in optimizers:
            if len(opt.param_groups) != 1:
                raise ConfigError("a fused member needs an optimizer with one parameter group")
            groups.append(opt.param_groups[0])
        for flag in _FLAGS:
            if len({bool(g.get(flag, False)) for g in groups}) > 1:
                raise ConfigError(f"the members of a fused group differ in {flag}")
        self.flags = {flag: bool(groups[0].get(flag, False)) for flag in _FLAGS}
        if self.flags["maximize"] or self.flags["differentiable"]:
            raise ConfigError("a fused group cannot maximize or record its update")
        first = params[0]

        def vector(key: str, index: int | None = None) -> Tensor:
            values = [g[key] if index is None else g[key][index] for g in groups]
            return torch.tensor([float(v) for v in values], dtype=first.dtype, device=first.device)

        self.h: dict[str, Tensor] = {"lr": vector("lr"), "weight_decay": vector("weight_decay")}
        for key in ("momentum", "eps", "rho", "initial_accumulator_value"):
            if key in groups[0]:
                self.h[key] = vector(key)
        if "betas" in groups[0]:
            self.h["beta1"], self.h["beta2"] = vector("betas", 0), vector("betas", 1)
        self.use_decay = bool(self.h["weight_decay"].any())
        self.state: dict[str, list[Tensor]] = {
            name: [self.initial(name, p) for p in params] for name in self.state_names
        }
        self.t = 0  # steps taken (the members of a group always step together)

    def initial(self, name: str, p: Tensor) -> Tensor:
        return torch.zeros_like(p)

    def set_lr(self, values: Sequence[float]) -> None:
        self.h["lr"] = torch.tensor(values, dtype=self.h["lr"].dtype, device=self.h["lr"].device)

    def keep(self, rows: Tensor) -> None:
        """Only the members at ``rows`` go on."""
        self.h = {k: v.index_select(0, rows) for k, v in self.h.items()}
        self.state = {k: [s.index_select(0, rows) for s in v] for k, v in self.state.items()}

    def lookahead(self, params: list[Tensor]) -> list[Tensor] | None:
        """Where the gradient is taken, when it is not θ (Nesterov: θ + αv)."""
        return None

    @torch.no_grad()
    def apply(self, params: list[Tensor], grads: Sequence[Tensor]) -> None:
        self.t += 1
        for i, (p, g) in enumerate(zip(params, grads)):
            lr = _rows(self.h["lr"], p)
            if self.use_decay:
                p.mul_(1.0 - lr * _rows(self.h["weight_decay"], p))  # θ ← θ − ελθ
            self.update(i, p, g, lr)

    def update(self, i: int, p: Tensor, g: Tensor, lr: Tensor) -> None:
        raise NotImplementedError

    def member_state(self, row: int) -> dict[str, Any]:
        """Member ``row``'s optimizer state, per parameter, as its optimizer keeps it."""
        return {name: [s[row].clone() for s in v] for name, v in self.state.items()}


class _Momentum(BatchedUpdate):
    """Shared by SGD and RMSProp: the velocity and the Nesterov look-ahead."""

    def __init__(self, optimizers: Sequence[torch.optim.Optimizer], params: list[Tensor]) -> None:
        momentum = any(float(o.param_groups[0].get("momentum", 0.0)) for o in optimizers)
        self.state_names = (*type(self).state_names, *(("velocity",) if momentum else ()))
        super().__init__(optimizers, params)

    @property
    def use_momentum(self) -> bool:
        return "velocity" in self.state

    def lookahead(self, params: list[Tensor]) -> list[Tensor] | None:
        if not (self.flags["nesterov"] and self.use_momentum):
            return None
        return [
            p.detach().addcmul(_rows(self.h["momentum"], p), v).requires_grad_(True)
            for p, v in zip(params, self.state["velocity"])
        ]

    def move(self, i: int, p: Tensor, step: Tensor) -> None:
        """θ ← θ − step, through the velocity when there is one (v ← αv − step; θ ← θ + v)."""
        if not self.use_momentum:
            p.sub_(step)
            return
        v = self.state["velocity"][i]
        v.mul_(_rows(self.h["momentum"], p)).sub_(step)
        p.add_(v)


class _SGD(_Momentum):
    def update(self, i: int, p: Tensor, g: Tensor, lr: Tensor) -> None:
        if not self.use_momentum:
            p.addcmul_(lr, g, value=-1.0)  # θ ← θ − εg
            return
        v = self.state["velocity"][i]
        v.mul_(_rows(self.h["momentum"], p)).addcmul_(lr, g, value=-1.0)  # v ← αv − εg
        p.add_(v)  # θ ← θ + v


def _denominator(r: Tensor, eps: Tensor, inside: bool) -> Tensor:
    return r.add(eps).sqrt() if inside else r.sqrt().add_(eps)  # √(δ + r) | δ + √r


class _AdaGrad(BatchedUpdate):
    state_names = ("sum_sq",)

    def initial(self, name: str, p: Tensor) -> Tensor:
        return _rows(self.h["initial_accumulator_value"], p).expand_as(p).clone()

    def update(self, i: int, p: Tensor, g: Tensor, lr: Tensor) -> None:
        r = self.state["sum_sq"][i].addcmul_(g, g)  # r ← r + g ⊙ g
        denom = _denominator(r, _rows(self.h["eps"], p), self.flags["eps_inside_sqrt"])
        p.sub_(lr * g / denom)  # θ ← θ − ε g / denom


class _RMSProp(_Momentum):
    state_names = ("square_avg",)

    def __init__(self, optimizers: Sequence[torch.optim.Optimizer], params: list[Tensor]) -> None:
        super().__init__(optimizers, params)
        if self.flags["centered"]:
            self.state["grad_avg"] = [torch.zeros_like(p) for p in params]

    def update(self, i: int, p: Tensor, g: Tensor, lr: Tensor) -> None:
        rho = _rows(self.h["rho"], p)
        r = self.state["square_avg"][i]
        r.mul_(rho).addcmul_(g, g * (1.0 - rho))  # r ← ρr + (1 − ρ) g ⊙ g
        var = r
        if self.flags["centered"]:  # ḡ ← ρḡ + (1 − ρ)g;  r − ḡ ⊙ ḡ
            gbar = self.state["grad_avg"][i]
            gbar.mul_(rho).add_(g * (1.0 - rho))
            var = r.addcmul(gbar, gbar, value=-1.0)
        denom = _denominator(var, _rows(self.h["eps"], p), self.flags["eps_inside_sqrt"])
        self.move(i, p, lr * g / denom)


class _Adam(BatchedUpdate):
    state_names = ("first_moment", "second_moment")

    def __init__(self, optimizers: Sequence[torch.optim.Optimizer], params: list[Tensor]) -> None:
        super().__init__(optimizers, params)
        if self.flags["amsgrad"]:
            self.state["max_second_moment"] = [torch.zeros_like(p) for p in params]

    def update(self, i: int, p: Tensor, g: Tensor, lr: Tensor) -> None:
        b1, b2 = _rows(self.h["beta1"], p), _rows(self.h["beta2"], p)
        s, r = self.state["first_moment"][i], self.state["second_moment"][i]
        s.mul_(b1).add_(g * (1.0 - b1))  # s ← ρ1 s + (1 − ρ1) g
        r.mul_(b2).addcmul_(g, g * (1.0 - b2))  # r ← ρ2 r + (1 − ρ2) g ⊙ g
        if self.flags["amsgrad"]:
            r = torch.maximum(self.state["max_second_moment"][i], r, out=self.state["max_second_moment"][i])
        s_hat = s / (1.0 - b1**self.t)  # ŝ ← s / (1 − ρ1^t)
        r_hat = r / (1.0 - b2**self.t)  # r̂ ← r / (1 − ρ2^t)
        p.sub_(lr * s_hat / r_hat.sqrt().add_(_rows(self.h["eps"], p)))  # θ ← θ − ε ŝ/(√r̂ + δ)


class _AdaDelta(BatchedUpdate):
    state_names = ("square_avg", "acc_delta")

    def update(self, i: int, p: Tensor, g: Tensor, lr: Tensor) -> None:
        rho, eps = _rows(self.h["rho"], p), _rows(self.h["eps"], p)
        square_avg, acc_delta = self.state["square_avg"][i], self.state["acc_delta"][i]
        square_avg.mul_(rho).addcmul_(g, g * (1.0 - rho))  # E[g²] ← ρE[g²] + (1−ρ)g²
        minus_delta = acc_delta.add(eps).sqrt_().div_(square_avg.add(eps).sqrt_()).mul_(g)
        acc_delta.mul_(rho).addcmul_(minus_delta, minus_delta * (1.0 - rho))  # E[Δθ²]
        p.sub_(lr * minus_delta)  # θ ← θ + ε Δθ


_UPDATES: dict[type, type[BatchedUpdate]] = {
    SGD: _SGD,
    AdaGrad: _AdaGrad,
    RMSProp: _RMSProp,
    Adam: _Adam,
    AdaDelta: _AdaDelta,
}


def batched_update(optimizers: Sequence[torch.optim.Optimizer], params: list[Tensor]) -> BatchedUpdate:
    """The batched form of the members' optimizer (all of one class) over ``params``."""
    classes = {type(o) for o in optimizers}
    if len(classes) != 1 or next(iter(classes)) not in _UPDATES:
        names = ", ".join(sorted(c.__name__ for c in classes))
        raise ConfigError(f"no fused update for the optimizers {names}", hint="train them separately")
    return _UPDATES[next(iter(classes))](optimizers, params)
