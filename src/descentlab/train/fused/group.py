"""The stacked parameters of a fused group's members, their cost and their batched step."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from descentlab.models import ACTIVATIONS, MLP, LogisticRegression
from descentlab.train.fused.dense import BACKWARD, DenseBatch, Penalties
from descentlab.train.fused.mixed import MixedUpdate, batched_update
from descentlab.train.fused.updates import BatchedUpdate
from descentlab.train.trainer import Trainer

__all__ = ["FusedGroup", "dense_layers"]


def dense_layers(model: torch.nn.Module) -> list[torch.nn.Linear]:
    """The linear layers of a fusable model, input to output."""
    if isinstance(model, LogisticRegression):
        return [model.linear]
    assert isinstance(model, MLP)
    hidden: list[Any] = list(model.hidden_layers)
    return [*hidden, model.output]


def _tensors(model: torch.nn.Module) -> list[Tensor]:
    return [t for lin in dense_layers(model) for t in (lin.weight, lin.bias)]


class FusedGroup:
    """The members still training: stacked weights ``(K, out, in)``, biases ``(K, out)``.

    :meth:`forward` gives every member's cost on its own minibatch; :meth:`update`
    takes the gradient of their sum (member k's gradient is its own: the members share
    no parameter) and applies the members' optimizer (:mod:`.updates`).
    """

    def __init__(self, trainers: Sequence[Trainer]) -> None:
        first = trainers[0].model
        name = str(first.activation) if isinstance(first, MLP) else None
        self.activation = ACTIVATIONS[name] if name is not None else None
        # The hand-written backward pass where the activation has one, else autograd.
        self.dense = DenseBatch(name) if name is None or name in BACKWARD else None
        per_member = [_tensors(tr.model) for tr in trainers]
        with torch.no_grad():
            self.params = [
                torch.stack([m[i].detach() for m in per_member]).requires_grad_(True)
                for i in range(len(per_member[0]))
            ]
        self.penalties = Penalties.of(
            [tr.objective.l1 for tr in trainers],
            [tr.objective.l2 for tr in trainers],
            self.params[0],
        )
        self.optim: BatchedUpdate | MixedUpdate = batched_update(
            [tr.optimizer for tr in trainers], self.params
        )
        for row, (tr, tensors) in enumerate(zip(trainers, per_member)):
            if tr.optimizer.state:  # resumed from a checkpoint
                self.optim.load(row, tr.optimizer, tensors)
        self._at: list[Tensor] = self.params  # where the last cost was taken
        self._ahead: list[Tensor] | None = None  # the look-ahead point's buffer (Nesterov)

    @property
    def size(self) -> int:
        return int(self.params[0].shape[0])

    def cost(self, params: Sequence[Tensor], x: Tensor, y: Tensor) -> Tensor:
        """Each member's cost on its own minibatch: ``x`` (K, B, ...), ``y`` (K, B) → (K,).

        cost_k = mean NLL + λ1_k Σ|W_k| + λ2_k Σ W_k² (weights only), as objective.py.
        """
        h = x.flatten(2)
        n_layers = len(params) // 2
        for i in range(n_layers):
            w, b = params[2 * i], params[2 * i + 1]
            h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
            if i < n_layers - 1:
                assert self.activation is not None
                h = self.activation(h)
        k, batch = y.shape
        nll = F.cross_entropy(h.reshape(k * batch, -1), y.reshape(-1), reduction="none")
        cost = nll.view(k, batch).mean(1)
        weights, pen = params[0::2], self.penalties
        if pen.use_l2:
            cost = cost + pen.l2 * sum(w.square().sum((1, 2)) for w in weights)
        if pen.use_l1:
            cost = cost + pen.l1 * sum(w.abs().sum((1, 2)) for w in weights)
        return cost

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """The members' costs at the point their optimizer takes the gradient.

        ``x``, ``y``: (K, B, ...), (K, B), or (B, ...), (B,) when all share a minibatch.
        """
        if self.optim.looks_ahead:
            if self._ahead is None:  # one buffer for the look-ahead point, reused every step
                self._ahead = [torch.empty_like(p).requires_grad_(True) for p in self.params]
            self.optim.lookahead(self.params, self._ahead)
            self._at = self._ahead
        else:
            self._at = self.params
        if self.dense is not None:
            with torch.no_grad():
                return self.dense.forward(self._at, x, y, self.penalties)
        if y.dim() == 1:  # one minibatch for every member
            x, y = x.expand(self.size, *x.shape), y.expand(self.size, -1)
        return self.cost(self._at, x, y)

    def update(self, cost: Tensor) -> None:
        """Backpropagate the :meth:`forward` cost and step every member."""
        if self.dense is not None:
            # Plain-SGD members are updated inside the backward pass, as their separate
            # runs are (the update folded into the gradient's product).
            rows = self.optim.in_product()
            with torch.no_grad():
                grads = self.dense.backward(self._at, self.penalties, sgd=rows, theta=self.params)
            if not grads:  # every member's update is done
                self._at = self.params
                return
            self.optim.skip(set(rows))
        else:
            grads = list(torch.autograd.grad(cost.sum(), self._at))
        self.optim.apply(self.params, grads)
        self._at = self.params

    def keep(self, rows: Tensor) -> None:
        """Keep only the members at ``rows`` (the others stopped)."""
        with torch.no_grad():
            self.params = [p.index_select(0, rows).requires_grad_(True) for p in self.params]
        self._at, self._ahead = self.params, None
        self.penalties = self.penalties.keep(rows.tolist())
        self.optim.keep(rows)

    def export_member(self, row: int, trainer: Trainer) -> None:
        """Member ``row``'s parameters and optimizer state into its trainer (a checkpoint)."""
        self.write_member(row, trainer)
        self.optim.export(row, trainer.optimizer, _tensors(trainer.model))

    @torch.no_grad()
    def write_member(self, row: int, trainer: Trainer) -> None:
        """Copy the member at ``row`` into its trainer's model (for validation, the end)."""
        for target, stacked in zip(_tensors(trainer.model), self.params):
            target.copy_(stacked[row])
