"""The fused group's forward and backward pass written out by hand (no autograd graph).

The batched form of :mod:`descentlab.train.fast`'s equations, member k in row k::

    forward:   a⁽ˡ⁾ = baddbmm(b⁽ˡ⁾, h⁽ˡ⁻¹⁾, W⁽ˡ⁾ᵀ)   (K, B, out);   h⁽ˡ⁾ = φ(a⁽ˡ⁾)
               zᵀ = baddbmm(b, W, hᵀ)   (K, classes, B): the logits transposed
               cost_k = mean NLL + λ1_k Σ|W| + λ2_k Σ W²
    backward:  δzᵀ = (softmax(z) − onehot(y))ᵀ / B        (δ = ∂cost_k/∂·)
               ∇W⁽ˡ⁾ = baddbmm(2λ2·W, δa⁽ˡ⁾ᵀ, h⁽ˡ⁻¹⁾) + λ1_k sign W;   ∇b⁽ˡ⁾ = Σ_B δa⁽ˡ⁾ᵀ
               δh⁽ˡ⁻¹⁾ = bmm(δa⁽ˡ⁾, W⁽ˡ⁾);   δa = φ'(a) ⊙ δh

When every member trains on the same minibatch (members that differ only in lr,
optimizer hyperparameters or penalties share a seed and so a minibatch order), the
first layer's two products are each *one* wide product over the members' stacked
weights, ``a⁽¹⁾ = x [W₁ᵀ … W_Kᵀ]`` (B × K·out) and ``∇W⁽¹⁾ = [δa₁ … δa_K]ᵀ x``.

(φ' from the layer's output, with ATen's own backward kernels: ``1 − h²`` for tanh,
``h(1 − h)`` for the sigmoid, ``[h > 0]`` for relu.)  One step is then 3 batched products
per layer and a few elementwise kernels, where autograd adds its graph, its engine and
an allocation per saved tensor.  Other activations take the autograd path
(:meth:`~descentlab.train.fused.group.FusedGroup.forward`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from descentlab.optim.sgd import sgd_update_

__all__ = ["BACKWARD", "DenseBatch", "Penalties", "stacked_linear"]

_aten = torch.ops.aten

#: δa from δh (in place) and the layer's output h, per activation.
BACKWARD: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "tanh": lambda grad, out: _aten.tanh_backward.grad_input(grad, out, grad_input=grad),
    "sigmoid": lambda grad, out: _aten.sigmoid_backward.grad_input(grad, out, grad_input=grad),
    "relu": lambda grad, out: _aten.threshold_backward.grad_input(grad, out, 0, grad_input=grad),
}
_FORWARD: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": torch.tanh_,
    "sigmoid": torch.sigmoid_,
    "relu": torch.relu_,
}


@dataclass(frozen=True)
class Penalties:
    """The members' λ1 and λ2, row by row: as numbers, for the kernels' scalar arguments,
    and as ``(K,)`` tensors, to scale each member's penalty value.

    Kept apart from the step so that a step reads no number back from the device (on a
    GPU each read would wait for every kernel queued before it).
    """

    l1s: tuple[float, ...]
    l2s: tuple[float, ...]
    l1: Tensor
    l2: Tensor

    @classmethod
    def of(cls, l1s: Sequence[float], l2s: Sequence[float], like: Tensor) -> Penalties:
        """From the members' numbers; the tensors take ``like``'s dtype and device."""

        def column(values: Sequence[float]) -> Tensor:
            return torch.tensor(list(values), dtype=like.dtype, device=like.device)

        return cls(tuple(l1s), tuple(l2s), column(l1s), column(l2s))

    @property
    def use_l1(self) -> bool:
        return any(self.l1s)

    @property
    def use_l2(self) -> bool:
        return any(self.l2s)

    def keep(self, rows: Sequence[int]) -> Penalties:
        """The penalties of the members at ``rows`` only."""
        return Penalties.of([self.l1s[r] for r in rows], [self.l2s[r] for r in rows], self.l1)


def stacked_linear(h: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """Every member's ``h Wᵀ + b`` (K, n, out) for stacked ``w`` (K, out, in), ``b`` (K, out).

    ``h`` is (n, in), one input shared by all the members — then one wide product serves
    them all — or (K, n, in), one per member (a batched product).
    """
    k, out = w.shape[0], w.shape[1]
    if h.dim() == 2:
        a = torch.addmm(b.reshape(-1), h, w.reshape(k * out, -1).t())
        return a.view(-1, k, out).transpose(0, 1)
    return torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))


class DenseBatch:
    """:meth:`forward` keeps what :meth:`backward` needs; the gradients of the members' costs.

    Every product and kernel is the one the separate run's fast path
    (:class:`~descentlab.train.fast.DenseFastPath`) applies to the same numbers, batched
    over the members: the logits transposed, ``zᵀ = W hᵀ + b`` (K, classes, B); the
    softmax over the classes; δzᵀ by ATen's ``_log_softmax_backward_data``; the L2
    gradient in the weight-gradient product's epilogue (``β = 2λ2``); bias gradients
    summed over the transposed δ.  A batched product computes each member's block as
    its own product does, so a member's gradient is *bitwise* its separate run's (checked
    in ``tests/train/test_fused.py``), and with the same update kernel so is its step.
    """

    def __init__(self, activation: str | None) -> None:
        self.activation = activation
        self._inputs: list[Tensor] = []  # h⁽⁰⁾ ... h⁽ᴸ⁾ of the last forward
        self._log_probs_t: Tensor | None = None  # (K, classes, B)
        self._y: Tensor | None = None

    def forward(
        self, params: Sequence[Tensor], x: Tensor, y: Tensor, penalties: Penalties
    ) -> Tensor:
        """The members' costs (K,) at ``params`` (stacked weight, bias, weight, bias, ...).

        ``x``, ``y`` are (K, B, ...), (K, B): one minibatch per member, or (B, ...), (B,):
        one for all of them.
        """
        k = params[0].shape[0]
        shared = y.dim() == 1
        h = x.flatten(1) if shared else x.flatten(2)
        if shared:
            y = y.expand(k, -1)
        self._inputs = [h]
        n_layers = len(params) // 2
        for i in range(n_layers - 1):
            assert self.activation is not None
            h = _FORWARD[self.activation](stacked_linear(h, params[2 * i], params[2 * i + 1]))
            self._inputs.append(h)
        w, b = params[-2], params[-1]
        if h.dim() == 2:  # softmax regression on a shared minibatch: one wide product
            z_t = torch.addmm(b.reshape(-1, 1), w.reshape(k * w.shape[1], -1), h.t())
            z_t = z_t.view(k, w.shape[1], -1)
        else:
            z_t = torch.baddbmm(b.unsqueeze(2), w, h.transpose(1, 2))
        log_probs_t = torch.log_softmax(z_t, 1)
        self._log_probs_t, self._y = log_probs_t, y
        cost = log_probs_t.gather(1, y.unsqueeze(1)).squeeze(1).mean(1).neg_()
        weights = params[0::2]
        if penalties.use_l2:
            cost = cost + penalties.l2 * sum(w.square().sum((1, 2)) for w in weights)
        if penalties.use_l1:
            cost = cost + penalties.l1 * sum(w.abs().sum((1, 2)) for w in weights)
        return cost

    def backward(
        self,
        params: Sequence[Tensor],
        penalties: Penalties,
        *,
        sgd: dict[int, tuple[float, float]] | None = None,
        theta: Sequence[Tensor] | None = None,
    ) -> list[Tensor]:
        """∇ of each member's cost of the last :meth:`forward`, stacked like ``params``.

        ``sgd``: rows of plain-SGD members and their ``(lr, weight_decay)``; their update
        is applied here to ``theta`` (the stacked parameters; ``params`` may be a
        look-ahead copy), inside the gradient's product as their separate run's fast path
        does (:func:`~descentlab.optim.sgd.sgd_update_`).  When every row is one, no
        gradient is formed and the list is empty.
        """
        log_probs_t, y = self._log_probs_t, self._y
        assert log_probs_t is not None and y is not None
        batch = y.shape[1]
        # ∂NLL/∂log p: −1/B at each example's class (nll_loss_backward's value), then
        # δzᵀ = (softmax(z) − onehot(y))ᵀ / B by the kernel autograd uses.
        seed = torch.zeros_like(log_probs_t).scatter_(1, y.unsqueeze(1), -1.0 / batch)
        delta_t = torch._log_softmax_backward_data(seed, log_probs_t, 1, log_probs_t.dtype)
        use_l1 = penalties.use_l1
        l1s = list(penalties.l1s) if use_l1 else []
        l2s = list(penalties.l2s) if penalties.use_l2 else []
        sgd = sgd or {}
        todo = _runs([m for m in range(params[0].shape[0]) if m not in sgd])
        n_layers = len(params) // 2
        grads: list[Tensor] = [torch.empty(0)] * len(params)
        for i in reversed(range(n_layers)):
            w, b, h_in = params[2 * i], params[2 * i + 1], self._inputs[i]
            dh = torch.bmm(delta_t.transpose(1, 2), w) if i > 0 else None  # W before the step
            if todo:  # gradients of the members not updated in their product (rows a:z)
                grads[2 * i], grads[2 * i + 1] = torch.empty_like(w), torch.empty_like(b)
                for a, z in todo:
                    rows_in = h_in if h_in.dim() == 2 else h_in[a:z]
                    gw = grads[2 * i][a:z]
                    _weight_grad(w[a:z], delta_t[a:z], rows_in, l2s[a:z], out=gw)
                    if use_l1:
                        _add_l1(gw, w[a:z], l1s[a:z])
                    torch.sum(delta_t[a:z], 2, out=grads[2 * i + 1][a:z])
            if sgd:
                assert theta is not None
                _sgd_in_product(theta[2 * i], theta[2 * i + 1], delta_t, h_in, sgd, l1s, l2s)
            if dh is not None:
                assert self.activation is not None
                delta_t = BACKWARD[self.activation](dh, self._inputs[i]).transpose(1, 2)
        self._inputs, self._log_probs_t, self._y = [], None, None
        return grads if todo else []


def _runs(rows: list[int]) -> list[tuple[int, int]]:
    """Sorted ``rows`` as ranges ``[a, z)`` of consecutive rows."""
    out: list[tuple[int, int]] = []
    for r in rows:
        if out and out[-1][1] == r:
            out[-1] = (out[-1][0], r + 1)
        else:
            out.append((r, r + 1))
    return out


def _sgd_in_product(
    w: Tensor,
    b: Tensor,
    delta_t: Tensor,
    h_in: Tensor,
    rows: dict[int, tuple[float, float]],
    l1s: list[float],
    l2s: list[float],
) -> None:
    """Plain SGD of each member in ``rows``, by its separate run's own update."""
    for k, (lr, weight_decay) in rows.items():
        sgd_update_(
            w[k],
            (delta_t[k], h_in if h_in.dim() == 2 else h_in[k]),
            lr=lr,
            weight_decay=weight_decay,
            l2=l2s[k] if l2s else 0.0,
            l1=l1s[k] if l1s else 0.0,
        )
        sgd_update_(b[k], delta_t[k].sum(1), lr=lr, weight_decay=weight_decay)


def _weight_grad(
    w: Tensor, delta_t: Tensor, h_in: Tensor, l2s: list[float], *, out: Tensor
) -> None:
    """``∇W = δᵀh + 2λ2 W`` per member into ``out``: δᵀ (K, out, B), h (K, B, in) or one
    (B, in).

    The L2 term rides in the product's epilogue, as the separate run computes it; members
    with different λ2 take one product each (β is one number per product).
    """
    k, n = w.shape[0], w.shape[1]
    shared = h_in.dim() == 2
    if l2s and any(v != l2s[0] for v in l2s):
        for m in range(k):
            rows = h_in if shared else h_in[m]
            torch.addmm(w[m], delta_t[m], rows, beta=2.0 * l2s[m], out=out[m])
    elif shared:  # [δ₁ … δ_K]ᵀ x: one (K·out × B) by (B × in) product
        d, flat = delta_t.reshape(k * n, -1), out.view(k * n, -1)
        if l2s:
            torch.addmm(w.reshape(k * n, -1), d, h_in, beta=2.0 * l2s[0], out=flat)
        else:
            torch.mm(d, h_in, out=flat)
    elif l2s:
        torch.baddbmm(w, delta_t, h_in, beta=2.0 * l2s[0], out=out)
    else:
        torch.bmm(delta_t, h_in, out=out)


def _add_l1(grad: Tensor, w: Tensor, l1s: list[float]) -> None:
    """``∇W += λ1 sign W`` per member (``add_`` with α, as the separate run adds it)."""
    if all(v == l1s[0] for v in l1s):
        grad.add_(torch.sign(w), alpha=l1s[0])
        return
    for m, v in enumerate(l1s):
        if v:
            grad[m].add_(torch.sign(w[m]), alpha=v)
