"""The gradient noise scale and the critical batch size (McCandlish et al., 2018).

Write ``G`` for the true (full-data) gradient and ``Σ`` for the covariance of one
example's gradient.  A minibatch of ``B`` examples drawn independently gives a gradient
``G_B`` with ``E[G_B] = G`` and ``E|G_B|² = |G|² + tr(Σ)/B``.  The *simple noise scale*

.. math::

    B_{simple} = \\frac{\\operatorname{tr}(\\Sigma)}{|G|^2}

is the batch size at which the noise in ``G_B`` is as large as the signal.  McCandlish,
Kaplan, Amodei et al., "An Empirical Model of Large-Batch Training" (2018), appendix A,
estimate both terms without per-example gradients, from squared gradient norms at two
batch sizes ``B_small < B_big``, with the unbiased estimators::

    |G|²   ≈ (B_big |G_big|² − B_small |G_small|²) / (B_big − B_small)
    tr(Σ)  ≈ (|G_small|² − |G_big|²) / (1/B_small − 1/B_big)

Each is noisy (either can come out negative), and their ratio is biased, so the two are
smoothed **separately** across repeats and only then divided.  Here a repeat draws
``B_big`` examples with replacement, splits them into ``B_big/B_small`` small batches,
takes ``|G_small|²`` as the mean of the small batches' squared norms and ``G_big`` as the
mean of their gradients — the paper's data-parallel recipe, so the big batch costs no
extra gradient.  Smoothing is an exponential moving average with decay β (for tracking
a changing model during training) or, with β = ``None``, the plain mean over repeats
(for one set of parameters).

**Critical batch size.**  McCandlish et al. find that the batch size beyond which more
examples per step stop buying fewer steps is ``B_crit ≈ B_noise``, and that ``B_simple``
approximates ``B_noise`` when the Hessian is well-conditioned (``B_noise =
tr(HΣ)/GᵀHG`` in general).  :attr:`NoiseScale.critical_batch` is that approximation,
``B_simple`` itself; read it as an order of magnitude.

The data-free part of the cost (a weight penalty) adds the same vector to every batch's
gradient: it is in ``G`` but not in ``Σ``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from descentlab.diagnostics.cost import CostFn, check_data, eval_mode, flat_grad, params_of
from descentlab.errors import ConfigError

__all__ = ["NoiseScale", "NoiseScaleEstimator", "gradient_noise_scale"]


@dataclass
class NoiseScale:
    """Smoothed ``|G|²`` and ``tr(Σ)``, their ratio, and the per-repeat raw estimates."""

    b_small: int
    b_big: int
    g2: float  # smoothed |G|² estimate
    trace_sigma: float  # smoothed tr(Σ) estimate
    repeats: int
    raw_g2: list[float] = field(default_factory=list)
    raw_trace_sigma: list[float] = field(default_factory=list)
    history: list[float] = field(default_factory=list)  # B_simple after each repeat

    @property
    def noise_scale(self) -> float:
        """``B_simple = tr(Σ)/|G|²`` (NaN while the smoothed ``|G|²`` is not positive)."""
        return self.trace_sigma / self.g2 if self.g2 > 0 else math.nan

    @property
    def critical_batch(self) -> float:
        """McCandlish et al.'s ``B_crit ≈ B_noise ≈ B_simple`` (an order of magnitude)."""
        return self.noise_scale


class NoiseScaleEstimator:
    """Accumulates ``(|G_small|², |G_big|²)`` pairs into the smoothed estimates.

    Feed it from a training loop (``update`` after each measurement, ``decay=0.9`` say)
    to follow ``B_simple`` as training proceeds.
    """

    def __init__(self, b_small: int, b_big: int, decay: float | None = None) -> None:
        if not (isinstance(b_small, int) and isinstance(b_big, int) and 1 <= b_small < b_big):
            raise ConfigError(
                f"need integer batch sizes 1 <= b_small < b_big, got {b_small} and {b_big}"
            )
        if decay is not None and not 0 < decay < 1:
            raise ConfigError(f"decay must be in (0, 1) or None, got {decay}")
        self.result = NoiseScale(b_small, b_big, 0.0, 0.0, 0)
        self.decay = decay

    def update(self, g_small_sq: float, g_big_sq: float) -> NoiseScale:
        """Add one repeat's squared norms; returns the updated :class:`NoiseScale`."""
        r = self.result
        bs, bb = r.b_small, r.b_big
        g2 = (bb * g_big_sq - bs * g_small_sq) / (bb - bs)
        s = (g_small_sq - g_big_sq) / (1 / bs - 1 / bb)
        r.raw_g2.append(g2)
        r.raw_trace_sigma.append(s)
        r.repeats += 1
        # decay=None: weight 1/t on the newest, the running mean.  Both estimates use the
        # same weights, so an EMA's start-up bias (1 − β^t) cancels in the ratio.
        w = 1 / r.repeats if self.decay is None else 1 - self.decay
        if r.repeats == 1:
            w = 1.0
        r.g2 += w * (g2 - r.g2)
        r.trace_sigma += w * (s - r.trace_sigma)
        r.history.append(r.noise_scale)
        return r


def gradient_noise_scale(
    model: nn.Module,
    cost: CostFn,
    x: Tensor,
    y: Tensor,
    *,
    b_small: int = 32,
    b_big: int = 1024,
    repeats: int = 10,
    decay: float | None = None,
    seed: int = 0,
    estimator: NoiseScaleEstimator | None = None,
) -> NoiseScale:
    """Estimate ``B_simple`` at the model's current parameters (eval mode).

    ``b_big`` must be a multiple of ``b_small``; examples are drawn with replacement
    (so the estimators are unbiased for the empirical distribution of ``(x, y)``).
    Cost: ``repeats · b_big`` example-gradients.  ``estimator`` continues an existing
    :class:`NoiseScaleEstimator` (its batch sizes and decay; ``b_small``, ``b_big`` and
    ``decay`` are then ignored): how a training run follows ``B_simple`` over time.
    """
    n = check_data(x, y)
    if repeats < 1:
        raise ConfigError(f"repeats must be >= 1, got {repeats}")
    if estimator is None:
        estimator = NoiseScaleEstimator(b_small, b_big, decay)
    b_small, b_big = estimator.result.b_small, estimator.result.b_big
    if b_big % b_small:
        raise ConfigError(
            f"b_big ({b_big}) must be a multiple of b_small ({b_small})",
            hint=f"e.g. b_big={b_small * max(2, b_big // b_small)}",
        )
    params = params_of(model)
    gen = torch.Generator().manual_seed(seed)
    k = b_big // b_small
    with eval_mode(model):
        for _ in range(repeats):
            idx = torch.randint(0, n, (b_big,), generator=gen).to(x.device)
            small_sq = 0.0
            big: Tensor | None = None
            for part in idx.view(k, b_small):
                g = flat_grad(model, cost, x[part], y[part], params).detach()
                small_sq += float(g @ g) / k
                big = g / k if big is None else big.add_(g, alpha=1 / k)
            assert big is not None
            estimator.update(small_sq, float(big @ big))
    return estimator.result
