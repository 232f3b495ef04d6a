"""The trainer's fast path: the backward pass of dense classifiers written out by hand.

For descentlab's softmax regression and MLPs trained on the NLL, backpropagation is a
handful of matrix products.  With ``h⁽⁰⁾ = x`` (flattened), ``L`` hidden layers and
minibatch size ``N``::

    forward                                   backward (δ = ∂cost/∂·)
    a⁽ˡ⁾ = h⁽ˡ⁻¹⁾ W⁽ˡ⁾ᵀ + b⁽ˡ⁾                  δz    = (softmax(z) − onehot(y)) / N
    h⁽ˡ⁾ = dropout(φ(a⁽ˡ⁾))                     ∇W⁽ˡ⁾ = δa⁽ˡ⁾ᵀ h⁽ˡ⁻¹⁾ + 2λ2 W⁽ˡ⁾ + λ1 sign W⁽ˡ⁾
    z    = h⁽ᴸ⁾ W⁽ᵒᵘᵗ⁾ᵀ + b⁽ᵒᵘᵗ⁾                 ∇b⁽ˡ⁾ = Σ_rows δa⁽ˡ⁾
    cost = NLL(z, y) + λ1 Σ|W| + λ2 Σ W²         δh⁽ˡ⁻¹⁾ = δa⁽ˡ⁾ W⁽ˡ⁾
                                                δa⁽ˡ⁾ = φ'(a⁽ˡ⁾) ⊙ mask⁽ˡ⁾ ⊙ δh⁽ˡ⁾

(``φ'`` from the layer's output: ``1 − h²`` for tanh, ``h(1 − h)`` for the sigmoid,
``[h > 0]`` for relu.)  :class:`DenseFastPath` runs exactly these operations, with the same
ATen kernels autograd uses for the loss, the nonlinearities and dropout, so the gradients
equal autograd's up to the rounding of the matrix products.  What it saves, per minibatch:

* autograd's graph: no nodes, no saved tensors, no engine, no ``AccumulateGrad``;
* allocations: activations and their gradients live in buffers reused every step, and
  gradients are written into the existing ``.grad`` tensors (``out=``) instead of new ones
  (the plain path frees them with ``zero_grad(set_to_none=True)`` and allocates again);
* the L2 term: its gradient ``2λ2·W`` is folded into the weight-gradient product
  (``addmm(W, δaᵀ, h, beta=2λ2)``), where the plain path builds ``Σ W²`` in the graph and
  adds a fresh parameter-sized tensor to ``.grad``; its *value* (part of the reported cost)
  is a BLAS dot product;
* the thin output layer: with few classes, ``zᵀ = W hᵀ + b`` (classes × examples) and the
  softmax over its leading dimension run about twice as fast as ``z = h Wᵀ + b``, so the
  logits, their gradient ``δzᵀ`` and ``∇W = δzᵀ h`` are kept in that orientation;
* with plain SGD (Algorithm 8.1, no momentum), the update's own pass:
  :meth:`DenseFastPath.backward_sgd_` hands the weight gradient to the optimizer's own
  update, :func:`descentlab.optim.sgd.sgd_update_`, as the factors of ``δaᵀh``, which then
  computes ``W ← (1 − 2ελ2 − ελ_wd) W − ε δaᵀh`` inside the product, so neither the
  gradient nor the update makes a separate pass over ``W``;
* with Adam, AdaGrad and RMSProp (plain), the update's extra passes:
  :meth:`DenseFastPath.backward_fused_` has the optimizer apply its own ``fused=True``
  update (:meth:`~descentlab.optim.Adam.step_fused`, on its own state), one pass over each
  tensor where the foreach updates make several.

Dropout masks are drawn by ``torch.native_dropout``, the kernel behind ``F.dropout``: it
consumes the same random numbers, so the fast and the plain path stay on the same
trajectory with dropout too (the tests check it).

The cost is the :class:`~descentlab.objective.Objective`'s (its loss must be the NLL; its
λ1, λ2 and the weights-only rule are taken from it, and the penalty's value is its
:meth:`~descentlab.objective.Objective.penalty_value`).  The fast path applies to
:class:`~descentlab.models.MLP` (without batch norm) and
:class:`~descentlab.models.LogisticRegression` built by :func:`~descentlab.models.build_model`,
trained on the NLL, with no hooks on the modules or parameters (nothing that expects
autograd to run).  :func:`fast_path_for` says why it does not apply otherwise; the trainer
then uses the plain autograd path, and ``fast_path=False`` forces the plain path.  The
optimizer is still called as ``optimizer.step(closure)`` with a :class:`FastClosure` (the
same interface as :class:`~descentlab.objective.Closure`), so Nesterov's look-ahead,
clipping, schedules and averaging work as before.  Only for plain SGD
(:meth:`DenseFastPath.sgd_rates`) and the optimizers above
(:meth:`DenseFastPath.fused_optimizer`), and only when nothing reads ``.grad`` between the
backward pass and the update (no clipping, no gradient logging, no step callback that
declares ``reads_gradients``: the trainer's step decides), does the closure apply the
update itself; the optimizer's step then finds no ``.grad`` and has nothing left to do
(and the trainer's step skips it when nothing hooks it: :meth:`FastClosure.applies_update`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules import module as _module_globals

from descentlab.losses import LossFn
from descentlab.models import MLP, LogisticRegression
from descentlab.objective import Closure, NonFiniteCost, Objective
from descentlab.optim import SGD, AdaGrad, Adam, RMSProp
from descentlab.optim.sgd import sgd_update_

__all__ = ["DenseFastPath", "FastClosure", "fast_path_for"]

# Optimizers whose fused update the closure may apply (exact types: see fused_optimizer).
# (Momentum SGD's own step already runs its fused kernel: nothing to gain there.)
_FUSED_OPTIMIZERS = (Adam, AdaGrad, RMSProp)
_Fusable = Adam | AdaGrad | RMSProp

_aten = torch.ops.aten
_NLL_MEAN = 1  # ATen's Reduction::Mean
_IGNORE_INDEX = -100  # F.cross_entropy's default

# ∂h/∂a from the layer's output h, as autograd computes it for each nonlinearity.
_ACTIVATION_FORWARD: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": torch.tanh_,
    "relu": torch.relu_,
    "sigmoid": torch.sigmoid_,
}
# In place into the incoming gradient's buffer (the same elementwise kernels autograd
# runs, their out= variants): no activation-sized allocation per step.
_ACTIVATION_BACKWARD: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "tanh": lambda grad, out: _aten.tanh_backward.grad_input(grad, out, grad_input=grad),
    "sigmoid": lambda grad, out: _aten.sigmoid_backward.grad_input(grad, out, grad_input=grad),
    "relu": lambda grad, out: _aten.threshold_backward.grad_input(grad, out, 0, grad_input=grad),
}


@dataclass
class _Layer:
    weight: Tensor
    bias: Tensor
    activation: str | None  # None: the output (softmax) layer


@dataclass
class _Buffers:
    """Per-minibatch-size scratch: pre-activations/outputs and their gradients."""

    hidden: list[Tensor]  # h⁽ˡ⁾ for each hidden layer (a⁽ˡ⁾ is overwritten by φ in place)
    grad_hidden: list[Tensor]  # δh⁽ˡ⁾, then δa⁽ˡ⁾ in place
    logits_t: Tensor  # zᵀ, classes × examples (see DenseFastPath.forward)
    log_probs_t: Tensor
    one: Tensor  # ∂cost/∂cost, the seed of the backward pass


def _global_hooks_present() -> bool:
    names = (
        "_global_forward_hooks",
        "_global_forward_pre_hooks",
        "_global_backward_hooks",
        "_global_backward_pre_hooks",
    )
    return any(len(getattr(_module_globals, n, {})) for n in names)


def _module_hooks_present(model: nn.Module) -> bool:
    for m in model.modules():
        for attr in (
            "_forward_hooks",
            "_forward_pre_hooks",
            "_backward_hooks",
            "_backward_pre_hooks",
        ):
            if getattr(m, attr, None):
                return True
    return False


def _param_hooks_present(params: Sequence[Tensor]) -> bool:
    return any(
        getattr(p, "_backward_hooks", None) or getattr(p, "_post_accumulate_grad_hooks", None)
        for p in params
    )


def fast_path_for(
    model: nn.Module, objective: Objective | LossFn, *, l1: float = 0.0, l2: float = 0.0
) -> tuple[DenseFastPath | None, str]:
    """``(fast_path, "")`` when the fast path applies to ``model``, else ``(None, reason)``.

    ``objective`` is the cost to compute; a bare loss function with ``l1``/``l2`` stands
    for ``Objective(loss, l1=l1, l2=l2)``.
    """
    if not isinstance(objective, Objective):
        objective = Objective(objective, l1=l1, l2=l2)
    if not objective.is_nll:
        return None, "the loss is not the NLL"
    if type(model) is LogisticRegression:
        layers = [_Layer(model.linear.weight, model.linear.bias, None)]
        dropout = 0.0
    elif type(model) is MLP:
        if model.batch_norm:
            return None, "batch norm needs autograd (its statistics couple the minibatch)"
        hidden: list[Any] = list(model.hidden_layers)  # nn.Linear modules
        layers = [_Layer(m.weight, m.bias, model.activation) for m in hidden]
        layers.append(_Layer(model.output.weight, model.output.bias, None))
        dropout = float(model.dropout)
    else:
        return None, f"{type(model).__name__} is not a descentlab logreg/mlp model"
    params = list(model.parameters())
    if len(params) != 2 * len(layers) or {id(p) for p in params} != {
        id(t) for layer in layers for t in (layer.weight, layer.bias)
    }:
        return None, "the model's parameters were changed after it was built"
    first = params[0]
    for p in params:
        if not p.requires_grad:
            return None, "some parameters are frozen (requires_grad=False)"
        if p.layout != torch.strided or not p.is_floating_point() or p.is_complex():
            return None, "parameters must be dense real floating-point tensors"
        if p.dtype != first.dtype or p.device != first.device:
            return None, "parameters must share one dtype and device"
    if _module_hooks_present(model) or _global_hooks_present() or _param_hooks_present(params):
        return None, "hooks are registered on the model (they expect autograd)"
    return DenseFastPath(model, layers, dropout=dropout, objective=objective), ""


class DenseFastPath:
    """Cost and gradients of a dense classifier without autograd (see the module docstring).

    Use as the body of the optimizer's closure::

        cost = fast.forward(x, y)      # keeps what the backward pass needs
        fast.backward()                # writes every parameter's .grad

    Built by :func:`fast_path_for`, which checks that the model qualifies.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: list[_Layer],
        *,
        dropout: float,
        objective: Objective,
    ) -> None:
        self.model = model
        self.layers = layers
        self.hidden_layers = layers[:-1]
        self.output = layers[-1]
        self.dropout = dropout
        self.objective = objective
        self.l1 = objective.l1
        self.l2 = objective.l2
        self.params = [t for layer in layers for t in (layer.weight, layer.bias)]
        self.weights = [layer.weight for layer in layers]
        self._buffers: dict[tuple[int, torch.device, torch.dtype], _Buffers] = {}
        self._buf: _Buffers | None = None  # those of the last forward()
        # Saved by forward() for backward().
        self._x: Tensor | None = None
        self._y: Tensor | None = None
        self._masks: list[Tensor | None] = []
        self._dropped: list[Tensor] = []  # inputs of the next layer (after dropout)
        self._total_weight: Tensor | None = None
        self._fused_grads: list[Tensor] = []  # gradients for the fused updates

    def still_valid(self) -> bool:
        """The model still has the parameters and no hooks (checked once per epoch)."""
        return (
            [id(p) for p in self.model.parameters()] == [id(p) for p in self.params]
            and all(p.requires_grad for p in self.params)
            and not _module_hooks_present(self.model)
            and not _global_hooks_present()
            and not _param_hooks_present(self.params)
        )

    def _buffers_for(self, n: int, like: Tensor) -> _Buffers:
        key = (n, like.device, like.dtype)
        buf = self._buffers.get(key)
        if buf is None:
            sizes = [layer.weight.shape[0] for layer in self.hidden_layers]
            k = self.output.weight.shape[0]
            buf = _Buffers(
                hidden=[like.new_empty((n, s)) for s in sizes],
                grad_hidden=[like.new_empty((n, s)) for s in sizes],
                logits_t=like.new_empty((k, n)),
                log_probs_t=like.new_empty((k, n)),
                one=like.new_ones(()),
            )
            # Keep at most two sizes (the minibatch and a last partial one).
            if len(self._buffers) >= 2:
                self._buffers.clear()
            self._buffers[key] = buf
        self._buf = buf
        return buf

    @torch.no_grad()
    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Cost ``NLL(model(x), y) + λ1 Σ|W| + λ2 Σ W²`` (0-dim); keeps what backward needs."""
        h = x.flatten(1)
        n = h.shape[0]
        buf = self._buffers_for(n, self.output.weight)
        training = self.model.training
        drop = self.dropout if training else 0.0
        self._x = h
        self._masks = []
        self._dropped = []
        for layer, out in zip(self.hidden_layers, buf.hidden):
            torch.addmm(layer.bias, h, layer.weight.t(), out=out)
            _ACTIVATION_FORWARD[layer.activation](out)  # type: ignore[index]
            if drop:
                # native_dropout is the kernel F.dropout runs: same random numbers.
                h, mask = torch.native_dropout(out, drop, True)
                self._masks.append(mask)
            else:
                h = out
                self._masks.append(None)
            self._dropped.append(h)
        # The logits transposed, zᵀ = W hᵀ + b: with few classes (a thin output layer) this
        # product and the softmax over the classes run about twice as fast that way round.
        last = self.output
        torch.addmm(last.bias.unsqueeze(1), last.weight, h.t(), out=buf.logits_t)
        torch.log_softmax(buf.logits_t, 0, out=buf.log_probs_t)
        cost, self._total_weight = _aten.nll_loss_forward.default(
            buf.log_probs_t.t(), y, None, _NLL_MEAN, _IGNORE_INDEX
        )
        self._y = y
        if self.objective.has_penalty:
            cost = cost + self.objective.penalty_value(self.weights)
        return cost

    @torch.no_grad()
    def backward(self) -> None:
        """Write ∂cost/∂θ into each parameter's ``.grad`` (reusing the tensors there)."""
        self._backward(None)

    @torch.no_grad()
    def backward_sgd_(self, rates: list[tuple[float, float]]) -> None:
        """Backward pass fused with plain SGD (Algorithm 8.1): ``θ ← θ − ε ∇θ``.

        ``rates`` holds ``(ε, λ_wd)`` for each layer, from its optimizer group (the
        optimizer's decoupled weight decay ``θ ← θ − ελ_wd θ`` included).  Each weight
        update is done by the gradient's own matrix product,
        ``W ← (1 − ελ_wd − 2ελ2) W − ε δᵀh  (− ελ1 sign W)``, so neither the gradient
        nor the update takes a separate pass over ``W``.  The ``.grad`` tensors are
        released: the optimizer's own step then finds nothing left to apply.
        """
        for p in self.params:
            if p.grad is not None:
                p.grad = None
        self._backward(rates)

    def sgd_rates(self, optimizer: torch.optim.Optimizer) -> list[tuple[float, float]] | None:
        """Per-layer ``(lr, weight_decay)`` if ``optimizer`` is plain SGD on these parameters.

        None when the update cannot be fused: another optimizer (a subclass may change
        the update), momentum, a layer's weight and bias in different groups, or
        parameters it does not hold.
        """
        if type(optimizer) is not SGD:
            return None
        group_of: dict[int, dict] = {}
        for group in optimizer.param_groups:
            if group["momentum"] != 0.0 or group["nesterov"] or _unfusable(group):
                return None
            for p in group["params"]:
                group_of[id(p)] = group
        rates = []
        for layer in self.layers:
            gw, gb = group_of.get(id(layer.weight)), group_of.get(id(layer.bias))
            if gw is None or gw is not gb:
                return None
            rates.append((float(gw["lr"]), float(gw["weight_decay"])))
        return rates

    def fused_optimizer(self, optimizer: torch.optim.Optimizer) -> _Fusable | None:
        """``optimizer`` if it can apply its fused single-pass update inside the closure.

        That is descentlab's :class:`~descentlab.optim.Adam`, :class:`~descentlab.optim.AdaGrad`
        or :class:`~descentlab.optim.RMSProp` holding these parameters, when every
        group's options are ones its fused kernel covers
        (:meth:`~descentlab.optim.Adam.fused_update_applies`); not for subclasses
        (they may change the rule). Otherwise ``None``: the optimizer's own step applies
        the update.
        """
        if not isinstance(optimizer, _FUSED_OPTIMIZERS) or type(optimizer) not in _FUSED_OPTIMIZERS:
            return None
        if not optimizer.fused_update_applies():
            return None
        held = {id(p) for group in optimizer.param_groups for p in group["params"]}
        return optimizer if all(id(p) in held for p in self.params) else None

    @torch.no_grad()
    def backward_fused_(self, optimizer: _Fusable) -> None:
        """Backward pass, then the optimizer's update in one pass over each tensor.

        The gradients go to buffers of the fast path, lent to ``.grad`` for the update
        only, and the optimizer applies its ``fused=True`` update on its own state
        (:meth:`~descentlab.optim.Adam.step_fused`): Adam (Algorithm 8.7)
        ``θ ← θ − ελθ; s ← ρ1 s + (1 − ρ1) g; r ← ρ2 r + (1 − ρ2) g²;
        θ ← θ − (ε / (1 − ρ1^t)) · s / (√r / √(1 − ρ2^t) + δ)``, AdaGrad (8.4)
        ``r ← r + g²; θ ← θ − ε g / (δ + √r)``, RMSProp (8.5)
        ``r ← ρr + (1 − ρ) g²; θ ← θ − ε g / (δ + √r)``, each element read and written
        once where the foreach updates make four to six passes. The ``.grad`` tensors are
        released afterwards: the optimizer's own step then finds nothing left to apply.
        Call only with what :meth:`fused_optimizer` returned, and when nothing reads
        ``.grad`` in between.
        """
        grads = self._fused_grads
        if len(grads) != len(self.params):
            grads[:] = [
                torch.empty_like(p, memory_format=torch.contiguous_format) for p in self.params
            ]
        for p, g in zip(self.params, grads):
            p.grad = g
        self._backward(None)
        optimizer.step_fused()
        for p in self.params:
            p.grad = None

    def _backward(self, rates: list[tuple[float, float]] | None) -> None:
        buf = self._buf
        assert buf is not None and self._x is not None and self._y is not None, "forward() first"
        g = _aten.nll_loss_backward.default(
            buf.one,
            buf.log_probs_t.t(),
            self._y,
            None,
            _NLL_MEAN,
            _IGNORE_INDEX,
            self._total_weight,
        )
        # δzᵀ = (softmax(z) − onehot(y))ᵀ / N, by the kernel autograd would use.  Below,
        # `delta_t` is δaᵀ (units × examples) of the layer at hand.
        lp_t = buf.log_probs_t
        delta_t = torch._log_softmax_backward_data(g.t(), lp_t, 0, lp_t.dtype)
        inputs = [self._x, *self._dropped]
        for i in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[i]
            dh: Tensor | None = None
            if i > 0:
                # δh⁽ⁱ⁾ = δa⁽ⁱ⁺¹⁾ W⁽ⁱ⁺¹⁾, with W before this step's update.
                dh = torch.mm(delta_t.t(), layer.weight, out=buf.grad_hidden[i - 1])
            if rates is None:
                self._weight_grad(layer.weight, delta_t, inputs[i], _grad_buffer(layer.weight))
                torch.sum(delta_t, 1, out=_grad_buffer(layer.bias))
            else:
                self._sgd_update(layer, delta_t, inputs[i], *rates[i])
            if dh is None:
                break
            mask = self._masks[i - 1]
            if mask is not None:
                dh = _aten.native_dropout_backward.default(dh, mask, 1.0 / (1.0 - self.dropout))
            act = self.hidden_layers[i - 1].activation
            delta_t = _ACTIVATION_BACKWARD[act](dh, buf.hidden[i - 1]).t()  # type: ignore[index]
        self._x = self._y = None
        self._dropped = []
        self._masks = []

    def _weight_grad(self, weight: Tensor, delta_t: Tensor, h_in: Tensor, grad: Tensor) -> None:
        """``∇W = δᵀ h + 2λ2 W (+ λ1 sign W)`` written into ``grad``."""
        if self.l2:
            # The L2 gradient rides along in the product's epilogue: no extra pass over W.
            torch.addmm(weight, delta_t, h_in, beta=2.0 * self.l2, out=grad)
        else:
            torch.mm(delta_t, h_in, out=grad)
        if self.l1:
            grad.add_(torch.sign(weight), alpha=self.l1)

    def _sgd_update(
        self, layer: _Layer, delta_t: Tensor, h_in: Tensor, lr: float, weight_decay: float
    ) -> None:
        """SGD's update of one layer, the weight's gradient ``δᵀh + penalty`` by factors."""
        # In place: the caller runs under no_grad.
        sgd_update_(
            layer.weight,
            (delta_t, h_in),
            lr=lr,
            weight_decay=weight_decay,
            l2=self.l2,
            l1=self.l1,
        )
        sgd_update_(layer.bias, delta_t.sum(1), lr=lr, weight_decay=weight_decay)


def _unfusable(group: dict[str, Any]) -> bool:
    """Options the fast path's fused updates do not implement: the optimizer applies them."""
    return bool(group.get("maximize") or group.get("differentiable"))


def _grad_buffer(p: Tensor) -> Tensor:
    """``p.grad`` to be overwritten; created when absent (e.g. after ``zero_grad(None)``)."""
    g = p.grad
    if g is None or g.shape != p.shape or g.dtype != p.dtype or g.device != p.device:
        g = torch.empty_like(p, memory_format=torch.contiguous_format)
        p.grad = g
    return g


class FastClosure(Closure):
    """The fast path as ``optimizer.step``'s closure: :class:`~descentlab.objective.Closure`
    (same options, same ``bind``) with the cost and gradients computed by hand.

    ``fuse_sgd`` lets the closure apply the update itself: plain SGD's inside the
    gradient's product (:meth:`DenseFastPath.sgd_rates`), the others' fused kernel
    (:meth:`DenseFastPath.fused_optimizer`); the caller turns it on only when nothing
    reads ``.grad`` between the backward pass and the update.
    """

    __slots__ = ("_plan", "fast", "fuse_sgd")

    def __init__(
        self,
        fast: DenseFastPath,
        optimizer: torch.optim.Optimizer,
        *,
        check_finite: bool = False,
        after_backward: Callable[[], None] | None = None,
        fuse_sgd: bool = False,
    ) -> None:
        super().__init__(
            fast.objective,
            fast.model,
            optimizer,
            check_finite=check_finite,
            after_backward=after_backward,
        )
        self.fast = fast
        self.fuse_sgd = fuse_sgd
        self._plan: tuple[str, Any] | None = None  # set by applies_update, used once

    def applies_update(self) -> bool:
        """Whether the next call applies the optimizer's whole update itself.

        (Then ``optimizer.step(closure)`` would find no gradient left to apply, and the
        trainer may call the closure directly.)  Decided on the optimizer's groups as
        they are now: a callback may change momentum or the groups between steps.
        """
        self._plan = self._choose()
        return self._plan[0] != "backward"

    def _choose(self) -> tuple[str, Any]:
        fast = self.fast
        rates = fast.sgd_rates(self.optimizer) if self.fuse_sgd else None
        if rates is not None:
            return "sgd", rates
        fused = fast.fused_optimizer(self.optimizer) if self.fuse_sgd else None
        if fused is not None:
            return "fused", fused
        return "backward", None

    def __call__(self) -> Tensor:
        assert self.x is not None and self.y is not None, "bind(x, y) first"
        fast = self.fast
        plan, self._plan = self._plan or self._choose(), None
        # Same cost and gradients, by hand; .grad tensors are overwritten in place.
        cost = fast.forward(self.x, self.y)
        if self.check_finite and not math.isfinite(cost.item()):
            self.optimizer.zero_grad(set_to_none=True)  # as the autograd closure leaves them
            raise NonFiniteCost("loss")
        how, arg = plan
        if how == "sgd":
            fast.backward_sgd_(arg)  # θ ← θ − ε∇ done here; opt.step finds no .grad
        elif how == "fused":
            fast.backward_fused_(arg)  # one pass per tensor; no .grad left
        else:
            fast.backward()
            if self.after_backward is not None:
                self.after_backward()
        return cost
