"""The compute floor of a dense classifier's training epoch, measured on this machine.

A training step of a network with layers ``n₀ → n₁ → … → n_L`` on a minibatch of ``B``
examples runs, per layer ``l`` (``W`` is ``n_l × n_{l−1}``), three matrix products:

    forward          a = h Wᵀ          B × n_{l−1}  by  n_{l−1} × n_l      2 B n_{l−1} n_l FLOPs
    weight gradient  ∇W = δᵀ h         n_l × B      by  B × n_{l−1}        2 B n_{l−1} n_l
    input gradient   δh = δ W          B × n_l      by  n_l × n_{l−1}      2 B n_{l−1} n_l

except the first layer's input gradient, which no one needs.  Everything else a step
does (activations, softmax, the update) is linear in the parameters or activations, and
far smaller.  :func:`compute_floor` times each of those products with ``torch.mm`` into a
preallocated output, at the current thread count, and sums them:

    floor s/epoch = steps per epoch · Σ_products (median seconds of that product)
    GEMM rate     = FLOPs per epoch / floor s/epoch

No training loop can take less time than the floor without skipping arithmetic, so
``floor / measured`` is the fraction of the machine's matrix-product speed a loop reaches.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["Floor", "compute_floor", "gemm_shapes"]


@dataclass(frozen=True)
class Floor:
    """The matrix products of one training epoch and how fast this machine runs them."""

    shapes: tuple[tuple[int, int, int], ...]  # (m, k, n) of each product of a step
    steps: int
    seconds_per_step: float

    @property
    def flop_per_step(self) -> float:
        return float(sum(2 * m * k * n for m, k, n in self.shapes))

    @property
    def seconds_per_epoch(self) -> float:
        return self.steps * self.seconds_per_step

    @property
    def gflop_per_epoch(self) -> float:
        return self.steps * self.flop_per_step / 1e9

    @property
    def gflops(self) -> float:
        """The measured rate on these shapes, GFLOP/s."""
        return self.flop_per_step / self.seconds_per_step / 1e9


def gemm_shapes(
    n_in: int, hidden: Sequence[int], n_classes: int, batch: int
) -> list[tuple[int, int, int]]:
    """``(m, k, n)`` of every product of one step (see the module docstring)."""
    widths = [n_in, *hidden, n_classes]
    shapes: list[tuple[int, int, int]] = []
    for layer, (fan_in, fan_out) in enumerate(itertools.pairwise(widths)):
        shapes.append((batch, fan_in, fan_out))  # h Wᵀ
        shapes.append((fan_out, batch, fan_in))  # δᵀ h
        if layer > 0:
            shapes.append((batch, fan_out, fan_in))  # δ W
    return shapes


def _time_product(m: int, k: int, n: int, repeats: int) -> float:
    """Median seconds of one ``m × k`` by ``k × n`` float32 product (``torch.mm``)."""
    a, b, out = torch.randn(m, k), torch.randn(k, n), torch.empty(m, n)
    for _ in range(3):  # warm-up: MKL's dispatch, caches
        torch.mm(a, b, out=out)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def compute_floor(
    n_in: int,
    hidden: Sequence[int],
    n_classes: int,
    batch: int,
    steps: int,
    *,
    repeats: int = 50,
) -> Floor:
    """Time the products of one step of this network (see the module docstring)."""
    shapes = gemm_shapes(n_in, hidden, n_classes, batch)
    seconds = sum(_time_product(m, k, n, repeats) for m, k, n in shapes)
    return Floor(tuple(shapes), steps, seconds)
