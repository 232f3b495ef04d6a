"""The dense head shared by :class:`~descentlab.models.mlp.MLP` and
:class:`~descentlab.models.lenet.LeNet`: hidden linear layers (optionally batch-normalized,
with dropout on their outputs) and the softmax-input layer.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from descentlab.models.base import (
    check_activation,
    check_batch_norm,
    check_dropout,
    check_hidden,
    check_input_shape,
    check_n_classes,
    tag_layer,
)
from descentlab.models.init import init_parameters

__all__ = ["DenseHead", "dense_forward", "make_dense_layers"]


def make_dense_layers(
    in_features: int,
    hidden: tuple[int, ...],
    n_classes: int,
    *,
    activation: str,
    batch_norm: bool,
) -> tuple[nn.ModuleList, nn.ModuleList | None, nn.Linear]:
    """Hidden linear layers, their batch-norm layers (or None) and the softmax-input layer.

    With batch norm the hidden layers have no bias: BN subtracts the minibatch mean, which
    cancels any constant ``b``, and its own shift ``β`` takes the bias's place (Ioffe &
    Szegedy 2015, §3.2: "batch-normalize the whole Wx + b ... b then should be omitted").
    """
    sizes = (in_features, *hidden)
    layers = nn.ModuleList(
        tag_layer(nn.Linear(n_in, n_out, bias=not batch_norm), activation)
        for n_in, n_out in itertools.pairwise(sizes)
    )
    norms = nn.ModuleList(nn.BatchNorm1d(n) for n in hidden) if batch_norm else None
    output = tag_layer(nn.Linear(sizes[-1], n_classes), None)
    return layers, norms, output


def dense_forward(
    h: Tensor,
    layers: nn.ModuleList,
    norms: nn.ModuleList | None,
    output: nn.Linear,
    act: Callable[[Tensor], Tensor],
    dropout: float,
    training: bool,
) -> Tensor:
    """``h ← dropout(φ(BN(W h + b)))`` for each hidden layer, then the output layer's logits.

    Dropout is applied to each hidden layer's output (after the nonlinearity), i.e. to the
    input of the next linear layer; the network input is never dropped.  It is "inverted"
    dropout: in training, kept units are scaled by ``1/(1-p)`` so evaluation uses the
    weights as they are.  (The seed text's Theano version does not rescale, which would
    require multiplying the weights by ``1-p`` at test time instead.)
    """
    if norms is None:
        for layer in layers:
            h = act(layer(h))
            if dropout:
                h = F.dropout(h, dropout, training)
    else:
        for layer, norm in zip(layers, norms):
            h = act(norm(layer(h)))
            if dropout:
                h = F.dropout(h, dropout, training)
    return output(h)


class DenseHead(nn.Module):
    """Base of the models that end in dense hidden layers and a softmax-input layer.

    ``__init__`` checks the options (they become attributes), calls
    :meth:`_check_input_shape` and :meth:`_build_features` (the layers before the head,
    returning how many features they produce), builds the head and initializes every
    parameter; subclasses end ``forward`` with :meth:`_dense_head`.
    """

    #: The model's name in messages and in ``build_model``.
    model_name: ClassVar[str]

    def __init__(
        self,
        input_shape: tuple[int, ...],
        n_classes: int,
        *,
        hidden: Sequence[int] | int = (500,),
        activation: str = "tanh",
        dropout: float = 0.0,
        batch_norm: bool = False,
        init: str = "default",
    ) -> None:
        super().__init__()
        self.input_shape = check_input_shape(input_shape)
        self._check_input_shape()
        self.n_classes = check_n_classes(n_classes)
        self.hidden = check_hidden(hidden, self.model_name)
        self.activation = check_activation(activation)
        self.dropout = check_dropout(dropout)
        self.batch_norm = check_batch_norm(batch_norm)
        self.hidden_layers, self.norms, self.output = make_dense_layers(
            self._build_features(),
            self.hidden,
            self.n_classes,
            activation=self.activation,
            batch_norm=self.batch_norm,
        )
        init_parameters(self, init)

    def _check_input_shape(self) -> None:
        """Refuse input shapes the model cannot take (any shape is fine by default)."""

    def _build_features(self) -> int:
        """Build the layers before the head; return the number of features they output."""
        raise NotImplementedError

    def _dense_head(self, h: Tensor, act: Callable[[Tensor], Tensor]) -> Tensor:
        return dense_forward(
            h, self.hidden_layers, self.norms, self.output, act, self.dropout, self.training
        )

    def extra_repr(self) -> str:
        return f"activation={self.activation}, dropout={self.dropout}"
