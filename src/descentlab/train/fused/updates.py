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
:meth:`BatchedUpdate.lookahead` writes the stacked look-ahead point (into a buffer the
group keeps), the cost is taken there, and the update is applied to θ (as the
optimizers do with a closure).
Flags that change the algorithm (``nesterov``, ``amsgrad``, ``centered``,
``eps_inside_sqrt``) are the same for every member of a group.

Adam, AdaGrad and plain RMSProp apply torch's one-pass kernels
(:func:`~descentlab.optim.fused_adam_`, ``fused_adagrad_``, ``fused_rmsprop_``), SGD with
momentum :func:`~descentlab.optim.sgd.fused_sgd_` and AdaDelta its multi-tensor update
(:func:`~descentlab.optim.adadelta.adadelta_foreach_`), each to each member's rows (one
multi-tensor call per set of equal hyperparameters: a seed sweep makes one call; the
kernels treat each tensor of the list alone, so this is bit for bit the per-member call);
plain SGD's update is applied by the backward pass inside the gradient's
product (:meth:`_SGD.in_product`, :func:`~descentlab.optim.sgd.sgd_update_`).  That is
the very update each member's separate run applies, on gradients the batched pass
computes bit for bit as the separate run does (:mod:`.dense`), so the members *are* their
separate runs, bit for bit (``tests/train/test_fused.py``).

The batched lines below are what RMSProp with momentum or centering runs (and any
optimizer on the autograd path): every number derived from the hyperparameters
(1 − ρ, 1 − ελ, ε√c2/c1, ...) is computed in double precision per member and then
rounded once, as the optimizers compute them as Python numbers, and a number all members
share stays a Python number, as in the optimizers' multi-tensor (``foreach``) lines.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from descentlab.errors import ConfigError
from descentlab.optim import (
    AdaDelta,
    AdaGrad,
    Adam,
    RMSProp,
    fused_adagrad_,
    fused_adam_,
    fused_rmsprop_,
)
from descentlab.optim.adadelta import adadelta_foreach_
from descentlab.optim.sgd import SGD, fused_sgd_

__all__ = ["UPDATES", "BatchedUpdate", "algorithm_key"]

# Options that change the algorithm: one value per group.
_FLAGS = ("nesterov", "amsgrad", "centered", "eps_inside_sqrt", "maximize", "differentiable")

Number = float | Tensor  # a number shared by the members, or a (K, 1, ...) column


class BatchedUpdate:
    """One optimizer's update for K stacked members: hyperparameters per member, state."""

    state_names: tuple[str, ...] = ()
    counts_steps = False  # whether the optimizer keeps t (Adam)

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
        self.dtype, self.device = params[0].dtype, params[0].device
        # Each member's hyperparameters as Python numbers (doubles), as its optimizer holds them.
        self.values: dict[str, list[float]] = {}
        for key in ("lr", "weight_decay", "momentum", "eps", "rho", "initial_accumulator_value"):
            if key in groups[0]:
                self.values[key] = [float(g[key]) for g in groups]
        if "betas" in groups[0]:
            self.values["beta1"] = [float(g["betas"][0]) for g in groups]
            self.values["beta2"] = [float(g["betas"][1]) for g in groups]
        self.t = 0  # steps taken (the members of a group always step together)
        self._columns: dict[tuple[Any, ...], Tensor] = {}  # number()'s columns
        self.skipped: set[int] = set()  # rows the next apply() leaves alone
        self.use_decay = any(self.values["weight_decay"])
        self.state: dict[str, list[Tensor]] = {
            name: [self.initial(name, p) for p in params] for name in self.state_names
        }

    # ------------------------------------------------------------- the numbers
    def number(self, values: Sequence[float], like: Tensor) -> Number:
        """``values`` (one per member) as a Python number when all are equal, else a column.

        A column is made once for each set of values and kept: a new one every step would
        be a host-to-device copy, and a wait for the device, per step on a GPU.
        """
        if all(v == values[0] for v in values):
            return values[0]
        key = (tuple(values), like.dim())
        column = self._columns.get(key)
        if column is None:
            if len(self._columns) >= 64:  # a schedule changes the values every step
                self._columns.clear()
            column = torch.tensor(list(values), dtype=self.dtype, device=self.device)
            column = self._columns[key] = column.view((-1,) + (1,) * (like.dim() - 1))
        return column

    def get(self, key: str, like: Tensor) -> Number:
        return self.number(self.values[key], like)

    def complement(self, key: str, like: Tensor) -> Number:
        """1 − x per member, computed in double precision."""
        return self.number([1.0 - v for v in self.values[key]], like)

    def initial(self, name: str, p: Tensor) -> Tensor:
        return torch.zeros_like(p)

    def set_lr(self, values: Sequence[float]) -> None:
        self.values["lr"] = [float(v) for v in values]

    def keep(self, rows: Tensor) -> None:
        """Only the members at ``rows`` go on."""
        kept = rows.tolist()
        self.values = {k: [v[r] for r in kept] for k, v in self.values.items()}
        self.state = {k: [s.index_select(0, rows) for s in v] for k, v in self.state.items()}

    @property
    def looks_ahead(self) -> bool:
        """Whether the gradient is taken elsewhere than at θ (:meth:`lookahead`)."""
        return False

    def lookahead(self, params: Sequence[Tensor], out: Sequence[Tensor]) -> None:
        """Write where the gradient is taken (Nesterov: θ + αv) into ``out``."""
        raise NotImplementedError(f"{type(self).__name__} takes the gradient at θ")

    def in_product(self) -> dict[int, tuple[float, float]]:
        """Rows whose whole update the backward pass may apply inside the weight
        gradient's product, with their ``(lr, weight_decay)``: plain SGD (see :class:`_SGD`)."""
        return {}

    def skip(self, rows: set[int]) -> None:
        """The next :meth:`apply` leaves ``rows`` alone (their update was applied)."""
        self.skipped = rows

    # ------------------------------------------------------------- the update
    @torch.no_grad()
    def apply(self, params: list[Tensor], grads: Sequence[Tensor]) -> None:
        self.t += 1
        for i, (p, g) in enumerate(zip(params, grads)):
            if self.use_decay:  # θ ← θ − ελθ
                keep = [
                    1.0 - lr * wd for lr, wd in zip(self.values["lr"], self.values["weight_decay"])
                ]
                p.mul_(self.number(keep, p))
            self.update(i, p, g)

    def update(self, i: int, p: Tensor, g: Tensor) -> None:
        raise NotImplementedError

    def descend(self, x: Tensor, num: Tensor, denom: Tensor, scale: Sequence[float]) -> None:
        """x ← x + scale·num/denom (``addcdiv`` with a number per member)."""
        step = self.number(scale, x)
        if isinstance(step, float):
            x.addcdiv_(num, denom, value=step)
        else:  # addcdiv's own order: (value·num)/denom
            x.add_(step * num / denom)

    def neg_lr(self) -> list[float]:
        return [-lr for lr in self.values["lr"]]

    def alike(self, keys: Sequence[str], skip: set[int] | None = None) -> list[tuple[Any, ...]]:
        """The members (rows) grouped by their values of ``keys``: ``(values..., rows)``.

        Members with the same numbers take one multi-tensor call over all their tensors
        (a seed sweep: one call for the group), which treats each tensor as a call of
        its own would, bit for bit.
        """
        out: dict[tuple[float, ...], list[int]] = {}
        for k in range(len(self.values["lr"])):
            if not skip or k not in skip:
                out.setdefault(tuple(self.values[n][k] for n in keys), []).append(k)
        return [(*numbers, rows) for numbers, rows in out.items()]

    # ------------------------------------------------------------- checkpoints
    @torch.no_grad()
    def export(self, row: int, optimizer: torch.optim.Optimizer, params: Sequence[Tensor]) -> None:
        """Write member ``row``'s state into its own ``optimizer`` (for its checkpoint).

        ``params`` are the member's parameters in the order of the stacked ones; the
        state takes the optimizer's own schema, so a separate run resumes from it.
        """
        for i, p in enumerate(params):
            state = optimizer.state[p]
            for name, stacks in self.state.items():
                if name == "velocity" and self.values["momentum"][row] == 0.0:
                    continue  # momentum 0: the optimizer keeps no velocity
                state[name] = stacks[i][row].clone()
            if self.counts_steps:
                state["step"] = torch.tensor(float(self.t), dtype=torch.float32)

    @torch.no_grad()
    def load(self, row: int, optimizer: torch.optim.Optimizer, params: Sequence[Tensor]) -> None:
        """Read member ``row``'s state from its own ``optimizer`` (a resumed checkpoint).

        The inverse of :meth:`export`; a member whose optimizer holds no state yet (a
        fresh run) keeps the initial state.
        """
        for i, p in enumerate(params):
            state = optimizer.state.get(p, {})
            for name, stacks in self.state.items():
                if name in state:
                    stacks[i][row].copy_(state[name])
            if self.counts_steps and "step" in state:
                steps = int(state["step"])
                if self.t and steps != self.t:
                    raise ConfigError(
                        f"the members' optimizers have taken different numbers of steps "
                        f"({self.t} and {steps})",
                        hint="resume them separately",
                    )
                self.t = steps


class _Momentum(BatchedUpdate):
    """Shared by SGD and RMSProp: the velocity and the Nesterov look-ahead."""

    def __init__(self, optimizers: Sequence[torch.optim.Optimizer], params: list[Tensor]) -> None:
        momentum = any(float(o.param_groups[0].get("momentum", 0.0)) for o in optimizers)
        self.state_names = (*type(self).state_names, *(("velocity",) if momentum else ()))
        super().__init__(optimizers, params)

    @property
    def use_momentum(self) -> bool:
        return "velocity" in self.state

    @property
    def looks_ahead(self) -> bool:
        return self.flags["nesterov"] and self.use_momentum

    @torch.no_grad()
    def lookahead(self, params: Sequence[Tensor], out: Sequence[Tensor]) -> None:
        for p, v, at in zip(params, self.state["velocity"], out):
            alpha = self.get("momentum", p)
            if isinstance(alpha, float):
                torch.add(p, v, alpha=alpha, out=at)
            else:
                torch.add(p, alpha * v, out=at)


class _SGD(_Momentum):
    def in_product(self) -> dict[int, tuple[float, float]]:
        """Plain SGD members (momentum 0): their separate run's fast path applies
        ``θ ← (1 − ελ_wd − 2ελ2)θ − ε δᵀh`` inside the gradient's product, and so does
        the group's backward pass (:meth:`~.dense.DenseBatch.backward`)."""
        if self.flags["nesterov"]:
            return {}
        v = self.values
        return {
            k: (lr, wd)
            for k, (lr, wd, mom) in enumerate(zip(v["lr"], v["weight_decay"], v["momentum"]))
            if mom == 0.0
        }

    @torch.no_grad()
    def apply(self, params: list[Tensor], grads: Sequence[Tensor]) -> None:
        """With momentum: member by member, the optimizer's own kernel (:func:`fused_sgd_`).

        It is what each member's separate run applies, so the two round alike.  Rows
        updated inside the backward pass (:meth:`in_product`) are skipped.
        """
        skipped, self.skipped = self.skipped, set()
        if not self.use_momentum and not skipped:
            super().apply(params, grads)
            return
        self.t += 1
        velocities = self.state.get("velocity")
        for lr, momentum, decay, rows in self.alike(("lr", "momentum", "weight_decay"), skipped):
            fused_sgd_(
                _rows(params, rows),
                _rows(grads, rows),
                _rows(velocities, rows) if velocities and momentum else None,
                lr=lr,
                momentum=momentum,
                weight_decay=decay,
            )

    def update(self, i: int, p: Tensor, g: Tensor) -> None:
        lr = self.get("lr", p)
        if not self.use_momentum:
            if isinstance(lr, float):
                p.add_(g, alpha=-lr)  # θ ← θ − εg
            else:
                p.addcmul_(lr, g, value=-1.0)
            return
        v = self.state["velocity"][i]
        v.mul_(self.get("momentum", p))  # v ← αv − εg
        if isinstance(lr, float):
            v.add_(g, alpha=-lr)
        else:
            v.addcmul_(lr, g, value=-1.0)
        p.add_(v)  # θ ← θ + v


def _denominator(r: Tensor, eps: Number, inside: bool) -> Tensor:
    return r.add(eps).sqrt_() if inside else r.sqrt().add_(eps)  # √(δ + r) | δ + √r


def _add_square(r: Tensor, g: Tensor, weight: Number) -> None:
    """r ← r + w·g⊙g (``addcmul``'s order: (w·g)·g)."""
    if isinstance(weight, float):
        r.addcmul_(g, g, value=weight)
    else:
        r.add_(weight * g * g)


class _AdaGrad(BatchedUpdate):
    state_names = ("sum_sq",)

    def initial(self, name: str, p: Tensor) -> Tensor:
        r0 = self.get("initial_accumulator_value", p)
        return torch.full_like(p, r0) if isinstance(r0, float) else r0.expand_as(p).clone()

    @torch.no_grad()
    def apply(self, params: list[Tensor], grads: Sequence[Tensor]) -> None:
        """Member by member, torch's one-pass kernel (:func:`descentlab.optim.fused_adagrad_`).

        One pass over θ, g and r instead of five; δ inside the root takes :meth:`update`.
        """
        if self.flags["eps_inside_sqrt"]:
            super().apply(params, grads)
            return
        self.t += 1
        sums = self.state["sum_sq"]
        for lr, eps, decay, rows in self.alike(("lr", "eps", "weight_decay")):
            fused_adagrad_(
                _rows(params, rows),
                _rows(grads, rows),
                _rows(sums, rows),
                lr=lr,
                eps=eps,
                weight_decay=decay,
            )

    def update(self, i: int, p: Tensor, g: Tensor) -> None:
        r = self.state["sum_sq"][i].addcmul_(g, g)  # r ← r + g ⊙ g
        denom = _denominator(r, self.get("eps", p), self.flags["eps_inside_sqrt"])
        self.descend(p, g, denom, self.neg_lr())  # θ ← θ − ε g / denom


class _RMSProp(_Momentum):
    state_names = ("square_avg",)

    def __init__(self, optimizers: Sequence[torch.optim.Optimizer], params: list[Tensor]) -> None:
        super().__init__(optimizers, params)
        self._scratch: list[Tensor] = []  # the fused kernel's first moment (g itself)
        if self.flags["centered"]:
            self.state["grad_avg"] = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def apply(self, params: list[Tensor], grads: Sequence[Tensor]) -> None:
        """Plain RMSProp member by member in one pass (:func:`descentlab.optim.fused_rmsprop_`).

        With momentum, centering or δ inside the root: the lines of :meth:`update`.
        """
        f = self.flags
        if self.use_momentum or f["centered"] or f["eps_inside_sqrt"]:
            super().apply(params, grads)
            return
        self.t += 1
        if not self._scratch or self._scratch[0].shape != params[0].shape:
            self._scratch = [torch.zeros_like(p) for p in params]  # (finite: the kernel reads it)
        squares = self.state["square_avg"]
        for lr, rho, eps, decay, rows in self.alike(("lr", "rho", "eps", "weight_decay")):
            fused_rmsprop_(
                _rows(params, rows),
                _rows(grads, rows),
                _rows(squares, rows),
                _rows(self._scratch, rows),
                lr=lr,
                rho=rho,
                eps=eps,
                weight_decay=decay,
            )

    def update(self, i: int, p: Tensor, g: Tensor) -> None:
        r = self.state["square_avg"][i]
        r.mul_(self.get("rho", p))  # r ← ρr + (1 − ρ) g ⊙ g
        _add_square(r, g, self.complement("rho", p))
        var = r
        if self.flags["centered"]:  # ḡ ← ρḡ + (1 − ρ)g;  r − ḡ ⊙ ḡ
            gbar = self.state["grad_avg"][i].lerp_(g, self.complement("rho", p))
            var = r.addcmul(gbar, gbar, value=-1.0)
        denom = _denominator(var, self.get("eps", p), self.flags["eps_inside_sqrt"])
        if not self.use_momentum:
            self.descend(p, g, denom, self.neg_lr())  # θ ← θ − ε g / denom
            return
        v = self.state["velocity"][i]
        v.mul_(self.get("momentum", p))  # v ← αv − ε g / denom;  θ ← θ + v
        self.descend(v, g, denom, self.neg_lr())
        p.add_(v)


class _Adam(BatchedUpdate):
    state_names = ("first_moment", "second_moment")
    counts_steps = True

    def __init__(self, optimizers: Sequence[torch.optim.Optimizer], params: list[Tensor]) -> None:
        super().__init__(optimizers, params)
        if self.flags["amsgrad"]:
            self.state["max_second_moment"] = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def apply(self, params: list[Tensor], grads: Sequence[Tensor]) -> None:
        """Member by member, torch's one-pass kernel (:func:`descentlab.optim.fused_adam_`).

        It is what the trainer's dense fast path applies to a separate run, so the two
        round alike; member k's rows are contiguous views of the stacked tensors.
        AMSGrad takes the elementwise lines of :meth:`update` instead.
        """
        if self.flags["amsgrad"]:
            super().apply(params, grads)
            return
        self.t += 1
        steps = [torch.tensor(float(self.t), dtype=torch.float32)] * len(params)  # per member
        first, second = self.state["first_moment"], self.state["second_moment"]
        keys = ("lr", "beta1", "beta2", "eps", "weight_decay")
        for lr, beta1, beta2, eps, decay, rows in self.alike(keys):
            fused_adam_(
                _rows(params, rows),
                _rows(grads, rows),
                _rows(first, rows),
                _rows(second, rows),
                steps * len(rows),
                lr=lr,
                betas=(beta1, beta2),
                eps=eps,
                weight_decay=decay,
            )

    def update(self, i: int, p: Tensor, g: Tensor) -> None:
        """As the optimizer's foreach path: ε ŝ/(√r̂ + δ) = (ε√c2/c1)·s/(√r + δ√c2)."""
        s, r = self.state["first_moment"][i], self.state["second_moment"][i]
        s.lerp_(g, self.complement("beta1", p))  # s ← ρ1 s + (1 − ρ1) g
        r.mul_(self.get("beta2", p))  # r ← ρ2 r + (1 − ρ2) g ⊙ g
        _add_square(r, g, self.complement("beta2", p))
        if self.flags["amsgrad"]:
            r = torch.maximum(
                self.state["max_second_moment"][i], r, out=self.state["max_second_moment"][i]
            )
        t, v = self.t, self.values
        c2_sqrt = [math.sqrt(1.0 - b2**t) for b2 in v["beta2"]]
        denom = r.sqrt().add_(self.number([e * c for e, c in zip(v["eps"], c2_sqrt)], p))
        step = [-lr * c / (1.0 - b1**t) for lr, c, b1 in zip(v["lr"], c2_sqrt, v["beta1"])]
        self.descend(p, s, denom, step)


class _AdaDelta(BatchedUpdate):
    state_names = ("square_avg", "acc_delta")

    def __init__(self, optimizers: Sequence[torch.optim.Optimizer], params: list[Tensor]) -> None:
        super().__init__(optimizers, params)
        self._scratch: list[list[Tensor]] = []  # the two RMS buffers of the update

    @torch.no_grad()
    def apply(self, params: list[Tensor], grads: Sequence[Tensor]) -> None:
        """Member by member, the optimizer's own multi-tensor update (as its separate run)."""
        self.t += 1
        if len(self._scratch) != 2 or self._scratch[0][0].shape != params[0].shape:
            self._scratch = [[torch.empty_like(p) for p in params] for _ in range(2)]
        squares, deltas = self.state["square_avg"], self.state["acc_delta"]
        for lr, rho, eps, decay, rows in self.alike(("lr", "rho", "eps", "weight_decay")):
            adadelta_foreach_(
                _rows(params, rows),
                _rows(grads, rows),
                _rows(squares, rows),
                _rows(deltas, rows),
                (_rows(self._scratch[0], rows), _rows(self._scratch[1], rows)),
                lr=lr,
                rho=rho,
                eps=eps,
                weight_decay=decay,
            )


def _rows(stacks: Sequence[Tensor], rows: Sequence[int]) -> list[Tensor]:
    """Member by member, each stack's row: the tensor list of one multi-tensor call."""
    return [t[k] for k in rows for t in stacks]


#: The batched update of each optimizer class.
UPDATES: dict[type, type[BatchedUpdate]] = {
    SGD: _SGD,
    AdaGrad: _AdaGrad,
    RMSProp: _RMSProp,
    Adam: _Adam,
    AdaDelta: _AdaDelta,
}


def algorithm_key(optimizer: torch.optim.Optimizer) -> tuple[Any, ...]:
    """What decides an optimizer's update rule: its class, its algorithm flags and, for
    SGD, whether it has momentum (Algorithm 8.1 or 8.2).

    Members with equal keys share one :class:`BatchedUpdate`.  Plain SGD apart keeps its
    members, updated inside their gradient's product (:meth:`_SGD.in_product`), on
    adjacent rows: the batched pass then forms no gradient for them.
    """
    group = optimizer.param_groups[0] if optimizer.param_groups else {}
    key = (type(optimizer).__name__, *(bool(group.get(flag, False)) for flag in _FLAGS))
    if isinstance(optimizer, SGD):
        key += (float(group.get("momentum", 0.0)) == 0.0,)
    return key
