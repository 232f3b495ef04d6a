"""The optimization landscape lab: chapter-8 optimizers on 2-D test functions.

Each landscape makes one of the "challenges in neural network optimization" of
Deep Learning §8.2 small enough to see:

=============  =====================================================================
name           what it shows
=============  =====================================================================
``quadratic``  ill-conditioning (§8.2.1): f = ½ pᵀHp with cond(H) = 50, the valley
               tilted 30°; SGD zigzags across the valley and crawls along it.
``rosenbrock`` a long, curved, flat-bottomed valley: (1 − x)² + 100 (y − x²)².
``saddle``     a saddle point (§8.2.3): x² − y² near the origin (+ y⁴/4 so that
               escaping leads to the minima at (0, ±√2)); a path started on the
               x-axis has no gradient to leave it, noise does.
``cliff``      a cliff (§8.2.4): a gentle bowl cut by a step of height 20 and width
               ≈ 0.05; on the cliff face the gradient is huge and one step catapults
               the parameters far away, unless the gradient norm is clipped.
``noisy``      the ``quadratic`` with a stochastic gradient ĝ = ∇f + ε, ε ~ N(0, σ²I):
               with a constant learning rate the iterates never settle (§8.3.1).
=============  =====================================================================

Every path is trained exactly as a network is: a 2-vector ``torch.nn.Parameter``
(float64), an optimizer from :func:`descentlab.optim.build_optimizer` stepped with a
closure (so Nesterov's look-ahead gradient is evaluated where Algorithm 8.3 says), and
:func:`descentlab.optim.clip_grad_norm_` inside the closure — the same classes as real
training, no toy re-implementations.  Inside the closure::

    g ← ∇f(θ)                          (autograd)
    g ← g + ε,  ε ~ N(0, σ² I)         (noise > 0; seeded, the same draws for every path)
    g ← g · min(1, c / ‖g‖)            (clip_norm = c)

A path that leaves the floating-point range (or |θ| > 10⁶) is stopped and marked
diverged; nothing raises.
"""

from __future__ import annotations

from descentlab.experiments.landscape.lab import (
    CLIP_SUFFIX,
    DEFAULT_CLIP_NORM,
    DEFAULT_OPTIMIZERS,
    DIVERGED_BEYOND,
    LANDSCAPES,
    MAX_STEPS,
    Landscape,
    LandscapeResult,
    Trajectory,
    default_lr,
    run_landscape,
)
from descentlab.experiments.landscape.plot import MAX_ASPECT, landscape_figure, plot_landscape

__all__ = [
    "CLIP_SUFFIX",
    "DEFAULT_CLIP_NORM",
    "DEFAULT_OPTIMIZERS",
    "DIVERGED_BEYOND",
    "LANDSCAPES",
    "MAX_ASPECT",
    "MAX_STEPS",
    "Landscape",
    "LandscapeResult",
    "Trajectory",
    "default_lr",
    "landscape_figure",
    "plot_landscape",
    "run_landscape",
]
