"""The fused group's forward and backward pass written out by hand (no autograd graph).

The batched form of :mod:`descentlab.train.fast`'s equations, member k in row k::

    forward:   a⁽ˡ⁾ = baddbmm(b⁽ˡ⁾, h⁽ˡ⁻¹⁾, W⁽ˡ⁾ᵀ)   (K, B, out);   h⁽ˡ⁾ = φ(a⁽ˡ⁾)
               cost_k = mean NLL + λ1_k Σ|W| + λ2_k Σ W²
    backward:  δz = (softmax(z) − onehot(y)) / B        (δ = ∂cost_k/∂·)
               ∇W⁽ˡ⁾ = bmm(δa⁽ˡ⁾ᵀ, h⁽ˡ⁻¹⁾) + 2λ2_k W + λ1_k sign W;   ∇b⁽ˡ⁾ = Σ_rows δa⁽ˡ⁾
               δh⁽ˡ⁻¹⁾ = bmm(δa⁽ˡ⁾, W⁽ˡ⁾);   δa = φ'(a) ⊙ δh

When every member trains on the same minibatch (members that differ only in lr,
optimizer hyperparameters or penalties share a seed and so a minibatch order), the
first layer's two products are each *one* wide product over the members' stacked
weights, ``a⁽¹⁾ = x [W₁ᵀ … W_Kᵀ]`` (B × K·out) and ``∇W⁽¹⁾ = [δa₁ … δa_K]ᵀ x``: a
thin layer (10 classes) then fills the matrix units as a K-times wider one.

(φ' from the layer's output, with ATen's own backward kernels: ``1 − h²`` for tanh,
``h(1 − h)`` for the sigmoid, ``[h > 0]`` for relu.)  One step is then 3 batched products
per layer and a few elementwise kernels, where autograd adds its graph, its engine and
an allocation per saved tensor.  Other activations take the autograd path
(:meth:`~descentlab.train.fused.group.FusedGroup.forward`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

__all__ = ["BACKWARD", "DenseBatch", "stacked_linear"]

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
    """:meth:`forward` keeps what :meth:`backward` needs; the gradients of the members' costs."""

    def __init__(self, activation: str | None) -> None:
        self.activation = activation
        self._inputs: list[Tensor] = []  # h⁽⁰⁾ ... h⁽ᴸ⁾ of the last forward
        self._log_probs: Tensor | None = None
        self._y: Tensor | None = None

    def forward(
        self, params: Sequence[Tensor], x: Tensor, y: Tensor, l1: Tensor, l2: Tensor
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
        for i in range(n_layers):
            a = stacked_linear(h, params[2 * i], params[2 * i + 1])
            if i < n_layers - 1:
                assert self.activation is not None
                h = _FORWARD[self.activation](a)
                self._inputs.append(h)
            else:
                h = a
        log_probs = torch.log_softmax(h, -1)
        self._log_probs, self._y = log_probs, y
        cost = log_probs.gather(-1, y.unsqueeze(-1)).squeeze(-1).mean(1).neg_()
        weights = params[0::2]
        self._penalties = (bool(l1.any()), bool(l2.any()))
        if self._penalties[1]:
            cost = cost + l2 * sum(w.square().sum((1, 2)) for w in weights)
        if self._penalties[0]:
            cost = cost + l1 * sum(w.abs().sum((1, 2)) for w in weights)
        return cost

    def backward(self, params: Sequence[Tensor], l1: Tensor, l2: Tensor) -> list[Tensor]:
        """∇ of each member's cost of the last :meth:`forward`, stacked like ``params``."""
        log_probs, y = self._log_probs, self._y
        assert log_probs is not None and y is not None
        batch = y.shape[1]
        delta = log_probs.exp_()  # softmax(z), in the log-probabilities' buffer
        delta.scatter_add_(-1, y.unsqueeze(-1), torch.full_like(delta[..., :1], -1.0))
        delta.div_(batch)  # δz = (softmax − onehot) / B
        n_layers = len(params) // 2
        grads: list[Tensor] = [torch.empty(0)] * len(params)
        use_l1, use_l2 = self._penalties
        for i in reversed(range(n_layers)):
            w, h_in = params[2 * i], self._inputs[i]
            if h_in.dim() == 2:  # shared minibatch: [δa₁ … δa_K]ᵀ x in one product
                k, _, out = delta.shape
                gw = torch.mm(delta.permute(0, 2, 1).reshape(k * out, -1), h_in).view_as(w)
            else:
                gw = torch.bmm(delta.transpose(1, 2), h_in)
            if use_l2:
                gw.add_(w * (2.0 * l2).view(-1, 1, 1))
            if use_l1:
                gw.add_(w.sign() * l1.view(-1, 1, 1))
            grads[2 * i], grads[2 * i + 1] = gw, delta.sum(1)
            if i > 0:
                assert self.activation is not None
                dh = torch.bmm(delta, w)
                delta = BACKWARD[self.activation](dh, self._inputs[i])
        self._inputs, self._log_probs, self._y = [], None, None
        return grads
