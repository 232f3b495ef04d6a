"""LeNet-5-style convolutional network, the Deep Learning Tutorials' ``convolutional_mlp``.

Two convolution + max-pooling stages, then the MLP head::

    x (C, H, W)
    → conv 5×5, 20 kernels → max-pool 2×2 → φ          MNIST: 28 → 24 → 12
    → conv 5×5, 50 kernels → max-pool 2×2 → φ          MNIST: 12 →  8 →  4
    → flatten (50·4·4 = 800)
    → Linear 800→500 → [BN] → φ → [dropout]            (one stage per entry of ``hidden``)
    → Linear 500→n_classes  (logits; softmax in the loss)

Convolutions are "valid" (no padding) and pooling drops incomplete borders (the
tutorial's ``ignore_border=True``), so each side shrinks as ``s → ⌊(s − 4) / 2⌋`` per stage
and images must be at least 16×16 (MNIST's 28×28 works; 8×8 digits do not).

The tutorial computes ``φ(maxpool(conv(x)) + b)``.  Here the bias is added by the conv
before pooling, which is the same thing (``max(z + b) = max(z) + b`` for a per-channel
``b``), and ``φ`` is applied after pooling: φ is monotone, so ``max(φ(z)) = φ(max(z))``,
and the nonlinearity then runs on a quarter of the values.

Batch norm and dropout, when asked for, apply to the dense hidden layers only, exactly as
in :class:`~descentlab.models.mlp.MLP`.

Default initialization: the tutorial's ``U(-r, r)``, ``r = √(6/(fan_in + fan_out))`` with
``fan_in = in_ch·5·5`` and ``fan_out = out_ch·5·5 / 4`` (each output unit's gradient is
shared by the 2×2 pool), Glorot for the dense hidden layers (He-normal for relu; ×4 for
sigmoid), zeros for the output layer and all biases.  For MNIST: 520 + 25050 + 400500 +
5010 = 431080 parameters.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from descentlab.errors import ConfigError
from descentlab.models.base import ACTIVATIONS, tag_layer
from descentlab.models.dense import DenseHead

__all__ = ["LeNet", "lenet_min_image_size"]

KERNELS = (20, 50)  # the tutorial's nkerns
KERNEL_SIZE = 5
POOL = 2


def _side_after_stages(side: int) -> int:
    for _ in KERNELS:
        side = (side - KERNEL_SIZE + 1) // POOL
    return side


def lenet_min_image_size() -> int:
    """Smallest image side for which every conv/pool stage keeps at least one pixel (16)."""
    side = 1
    for _ in KERNELS:
        side = side * POOL + KERNEL_SIZE - 1
    return side


class LeNet(DenseHead):
    """Convolutional classifier returning logits ``(N, n_classes)``.

    Parameters
    ----------
    input_shape:
        ``(C, H, W)``, or ``(H, W)`` for single-channel images (a channel axis is then
        added in ``forward``).  ``H`` and ``W`` must be at least 16.
    n_classes:
        Number of classes (>= 2).
    hidden:
        Sizes of the dense hidden layers after the convolutions (the tutorial: ``(500,)``).
    activation:
        Nonlinearity for both conv stages and the dense layers (the tutorial: tanh).
    dropout, batch_norm:
        As in :class:`~descentlab.models.mlp.MLP`, for the dense hidden layers.
    init:
        Initialization strategy (see :func:`descentlab.models.init.init_parameters`).
    """

    model_name = "lenet"

    def _check_input_shape(self) -> None:
        if len(self.input_shape) not in (2, 3):
            raise ConfigError(
                f"lenet needs image input shaped (channels, height, width) or (height, width), "
                f"got input_shape={self.input_shape}",
                hint="use model 'mlp' or 'logreg' for feature vectors",
            )
        self._add_channel_axis = len(self.input_shape) == 2
        _, height, width = (1, *self.input_shape)[-3:]
        min_side = lenet_min_image_size()
        if height < min_side or width < min_side:
            raise ConfigError(
                f"lenet needs images of at least {min_side}x{min_side} pixels "
                f"(two 5x5 conv + 2x2 pool stages), got {height}x{width}",
                hint="use model 'mlp' or 'logreg' for small images such as 8x8 digits",
            )

    def _build_features(self) -> int:
        channels, height, width = (1, *self.input_shape)[-3:]
        pool_area = POOL * POOL
        self.conv1 = tag_layer(
            nn.Conv2d(channels, KERNELS[0], KERNEL_SIZE), self.activation, pool_area
        )
        self.conv2 = tag_layer(
            nn.Conv2d(KERNELS[0], KERNELS[1], KERNEL_SIZE), self.activation, pool_area
        )
        return KERNELS[-1] * _side_after_stages(height) * _side_after_stages(width)

    def forward(self, x: Tensor) -> Tensor:
        if self._add_channel_axis:
            x = x.unsqueeze(1)
        act = ACTIVATIONS[self.activation]
        h = act(F.max_pool2d(self.conv1(x), POOL))
        h = act(F.max_pool2d(self.conv2(h), POOL))
        return self._dense_head(h.flatten(1), act)
