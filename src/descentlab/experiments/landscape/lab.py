"""The landscape lab's problems and runs: 2-D test functions, optimizer paths over them.

See :mod:`descentlab.experiments.landscape` for what each landscape shows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from descentlab.errors import ConfigError, did_you_mean
from descentlab.optim import build_optimizer, clip_grad_norm_

Fn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

#: The suffix that asks for a clipped copy of an optimizer's path: ``"sgd+clip"``.
CLIP_SUFFIX = "+clip"
#: The clipping threshold of ``+clip`` paths when no ``clip_norm`` is given.
DEFAULT_CLIP_NORM = 1.0
#: The optimizers of the default plot: plain, classical and Nesterov momentum, adaptive.
DEFAULT_OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")
#: Beyond this distance from the origin a path counts as diverged.
DIVERGED_BEYOND = 1e6
MAX_STEPS = 100_000


# ========================================================================== functions
def _rotated(x: torch.Tensor, y: torch.Tensor, degrees: float) -> tuple[torch.Tensor, ...]:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return c * x + s * y, -s * x + c * y


def quadratic(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """f = ½ (u² + 50 v²), (u, v) = (x, y) rotated by 30°: Hessian eigenvalues 1 and 50.

    With lr ε, gradient descent multiplies the error along eigenvector i by (1 − ε λᵢ):
    stable only for ε < 2/50, and then the flat direction shrinks by at most
    (1 − 2/50) per step — the cost of a condition number of 50.
    """
    u, v = _rotated(x, y, 30.0)
    return 0.5 * (u**2 + 50.0 * v**2)


def rosenbrock(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """f = (1 − x)² + 100 (y − x²)²: minimum 0 at (1, 1) at the end of a curved valley."""
    return (1.0 - x) ** 2 + 100.0 * (y - x**2) ** 2


def saddle(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """f = x² − y² + y⁴/4: Hessian diag(2, −2) at the saddle (0, 0), minima −1 at (0, ±√2)."""
    return x**2 - y**2 + 0.25 * y**4


CLIFF_AT, CLIFF_HEIGHT, CLIFF_WIDTH = 1.0, 20.0, 0.05


def cliff(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """f = ½ (x² + y²) + h σ((x − a)/w): a bowl with a step of height h at x = a.

    On the cliff face the slope is up to h/(4w) = 100 (against ≈ 1 elsewhere), so one
    unclipped gradient step of lr 0.1 there moves θ by up to 10.
    """
    return 0.5 * (x**2 + y**2) + CLIFF_HEIGHT * torch.sigmoid((x - CLIFF_AT) / CLIFF_WIDTH)


@dataclass(frozen=True)
class Landscape:
    """A 2-D test function with where to start, what to plot and how long to run."""

    fn: Fn
    start: tuple[float, float]
    window: tuple[float, float, float, float]  # x_min, x_max, y_min, y_max
    description: str
    minimum: tuple[float, float]  # a global minimizer (for the loss-gap axis)
    steps: int = 200
    noise: float = 0.0  # default gradient-noise std
    lr: dict[str, float] = field(default_factory=dict)  # per-optimizer default lr

    def value(self, x: float, y: float) -> float:
        t = torch.tensor([x, y], dtype=torch.float64)
        return float(self.fn(t[0], t[1]))


# Learning rates chosen so that the default plot tells each landscape's story: large
# enough for every path to get somewhere in the default number of steps, small enough
# that plain gradient descent stays stable (except on the cliff, whose point is that it
# does not).  Unlisted optimizers use _FALLBACK_LR.
_FALLBACK_LR = {
    "sgd": 0.01,
    "momentum": 0.01,
    "nesterov": 0.01,
    "adagrad": 0.5,
    "rmsprop": 0.01,
    "rmsprop-nesterov": 0.01,
    "adam": 0.05,
    "adadelta": 10.0,
}
_QUADRATIC_LR = {
    "sgd": 0.03,
    "momentum": 0.005,
    "nesterov": 0.005,
    "adagrad": 1.0,
    "rmsprop": 0.1,
    "rmsprop-nesterov": 0.02,
    "adam": 0.5,
    "adadelta": 30.0,
}

#: name → :class:`Landscape`.
LANDSCAPES: dict[str, Landscape] = {
    "quadratic": Landscape(
        quadratic,
        start=(-4.0, 3.0),
        window=(-5.0, 5.0, -4.0, 4.0),
        description="ill-conditioned quadratic (condition number 50): zigzag across the valley",
        minimum=(0.0, 0.0),
        steps=100,
        lr=_QUADRATIC_LR,
    ),
    "rosenbrock": Landscape(
        rosenbrock,
        start=(-1.5, 2.0),
        window=(-2.0, 2.0, -1.0, 3.0),
        description="Rosenbrock's banana: a long, curved, flat-bottomed valley to (1, 1)",
        minimum=(1.0, 1.0),
        steps=2000,
        lr={
            "sgd": 0.001,
            "momentum": 0.0002,
            "nesterov": 0.0002,
            "adagrad": 0.5,
            "rmsprop": 0.005,
            "rmsprop-nesterov": 0.001,
            "adam": 0.05,
            "adadelta": 1.0,
        },
    ),
    "saddle": Landscape(
        saddle,
        start=(-1.8, 0.0),
        window=(-2.0, 2.0, -2.0, 2.0),
        description="saddle point x² − y² (+ y⁴/4): no gradient leads off the x-axis",
        minimum=(0.0, math.sqrt(2.0)),
        steps=150,
        lr={"sgd": 0.05, "momentum": 0.02, "nesterov": 0.02, "adam": 0.05, "rmsprop": 0.02},
    ),
    "cliff": Landscape(
        cliff,
        start=(3.0, 2.0),
        window=(-3.0, 4.0, -3.0, 3.0),
        description="a cliff of height 20 at x = 1: huge gradients on its face (try +clip)",
        minimum=(0.0, 0.0),
        steps=100,
        lr={"sgd": 0.1, "momentum": 0.03, "nesterov": 0.03, "adam": 0.1, "rmsprop": 0.05},
    ),
    "noisy": Landscape(
        quadratic,
        start=(-4.0, 3.0),
        window=(-5.0, 5.0, -4.0, 4.0),
        description="the quadratic with a noisy gradient: no settling at a constant lr",
        minimum=(0.0, 0.0),
        steps=150,
        noise=4.0,
        lr=_QUADRATIC_LR,
    ),
}


def _landscape(function: str) -> Landscape:
    if function not in LANDSCAPES:
        raise ConfigError(
            f"unknown landscape {function!r}", hint=did_you_mean(str(function), list(LANDSCAPES))
        )
    return LANDSCAPES[function]


def default_lr(function: str, optimizer: str) -> float:
    """The learning rate ``optimizer`` gets on ``function`` when none is given."""
    base = optimizer.removesuffix(CLIP_SUFFIX).strip().lower()
    lrs = _landscape(function).lr
    return lrs.get(base, _FALLBACK_LR.get(base, 0.01))


# ============================================================================ results
@dataclass
class Trajectory:
    """One optimizer's path: ``points[k]`` is θ after k steps, ``losses[k]`` = f(θ_k).

    ``losses`` are the noise-free f; ``diverged`` paths stop at the last finite point,
    and ``stopped_at`` is the step at which they left the finite range (else ``None``).
    """

    name: str
    optimizer: str
    lr: float
    clip_norm: float | None
    points: np.ndarray  # (n + 1, 2)
    losses: np.ndarray  # (n + 1,)
    grad_norms: np.ndarray  # (n,) norm of the (noisy) gradient before clipping
    diverged: bool = False
    stopped_at: int | None = None

    @property
    def steps(self) -> np.ndarray:
        """The length of every step, ‖θ_{k+1} − θ_k‖."""
        return np.linalg.norm(np.diff(self.points, axis=0), axis=1)


@dataclass
class LandscapeResult:
    """The paths of :func:`run_landscape` and the settings that made them."""

    function: str
    landscape: Landscape
    paths: dict[str, Trajectory]
    steps: int
    noise: float
    seed: int
    start: tuple[float, float]

    def summary(self) -> list[dict[str, Any]]:
        """One row per path: where it ended, f there, the gap to the minimum, its status."""
        f_min = self.landscape.value(*self.landscape.minimum)
        rows = []
        for t in self.paths.values():
            x, y = t.points[-1]
            rows.append(
                {
                    "optimizer": t.name,
                    "lr": t.lr,
                    "x": float(x),
                    "y": float(y),
                    "loss": float(t.losses[-1]),
                    "gap": float(t.losses[-1] - f_min),
                    "status": f"diverged at step {t.stopped_at}" if t.diverged else "ok",
                }
            )
        return rows


# ============================================================================ running
def _check_number(name: str, value: Any, *, positive: bool, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    x = float(value)
    ok = math.isfinite(x) and (x > 0 or (allow_zero and x == 0) or not positive)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name} must be a finite number {bound}, got {value!r}")
    return x


def _run_one(
    fn: Fn,
    name: str,
    optimizer: str,
    lr: float,
    start: tuple[float, float],
    steps: int,
    clip_norm: float | None,
    noise: float,
    seed: int,
) -> Trajectory:
    theta = torch.nn.Parameter(torch.tensor(start, dtype=torch.float64))
    opt = build_optimizer(optimizer, [theta], lr=lr)
    # Every path draws the same noise sequence, so differences are the optimizers' own.
    gen = torch.Generator().manual_seed(seed)
    grad_norm = [0.0]

    def closure() -> float:
        opt.zero_grad()
        loss = fn(theta[0], theta[1])
        loss.backward()
        assert theta.grad is not None
        if noise > 0:
            eps = torch.randn(2, generator=gen, dtype=torch.float64)
            theta.grad.add_(eps, alpha=noise)
        grad_norm[0] = float(theta.grad.norm())
        if clip_norm is not None:
            clip_grad_norm_([theta], clip_norm)
        return float(loss.detach())

    points = [theta.detach().numpy().copy()]
    losses = [float(fn(theta[0], theta[1]).detach())]
    norms: list[float] = []
    diverged, stopped_at = False, None
    for k in range(steps):
        try:
            opt.step(closure)
        except (RuntimeError, OverflowError):  # an inf/nan reaching a check inside a step
            diverged, stopped_at = True, k + 1
            break
        norms.append(grad_norm[0])
        with torch.no_grad():
            point = theta.detach().numpy().copy()
            loss = float(fn(theta[0], theta[1]))
        if (
            not (np.all(np.isfinite(point)) and math.isfinite(loss))
            or np.max(np.abs(point)) > DIVERGED_BEYOND
        ):
            diverged, stopped_at = True, k + 1
            break
        points.append(point)
        losses.append(loss)
    return Trajectory(
        name=name,
        optimizer=optimizer,
        lr=lr,
        clip_norm=clip_norm,
        points=np.asarray(points, dtype=np.float64).reshape(-1, 2),
        losses=np.asarray(losses, dtype=np.float64),
        grad_norms=np.asarray(norms, dtype=np.float64),
        diverged=diverged,
        stopped_at=stopped_at,
    )


def run_landscape(
    function: str = "rosenbrock",
    optimizers: Sequence[str] = DEFAULT_OPTIMIZERS,
    steps: int | None = None,
    lr: float | Mapping[str, float] | None = None,
    start: Sequence[float] | None = None,
    clip_norm: float | None = None,
    noise: float | None = None,
    seed: int = 0,
) -> LandscapeResult:
    """Run each optimizer from the same start on a 2-D landscape.

    Parameters
    ----------
    function
        A name in :data:`LANDSCAPES`.
    optimizers
        Names for :func:`descentlab.optim.build_optimizer` (``sgd``, ``momentum``,
        ``adam``, ...).  ``"NAME+clip"`` runs NAME with its gradient norm clipped at
        ``clip_norm`` (default 1.0), so clipped and unclipped paths share one plot.
    steps
        Optimizer steps per path (default: the landscape's, e.g. 2000 on Rosenbrock).
    lr
        One learning rate for all, a mapping optimizer → lr, or ``None`` for the
        per-landscape defaults (:func:`default_lr`) picked so the plot tells the story.
    start
        (x, y); default the landscape's (on the saddle: exactly on the x-axis).
    clip_norm
        Clip every path's gradient norm at this value (Algorithm of §10.11.1).
    noise
        Std σ of Gaussian noise added to every gradient, a stand-in for minibatch noise
        (default: the landscape's, 0 except for ``noisy``).
    seed
        Seeds the noise; every path sees the same draws.
    """
    land = _landscape(function)
    if isinstance(optimizers, str):
        optimizers = [o for o in optimizers.split(",") if o.strip()]
    names = [str(o).strip() for o in optimizers]
    if not names:
        raise ConfigError("no optimizers given", hint="e.g. optimizers=['sgd', 'adam']")
    if len(set(names)) != len(names):
        raise ConfigError(f"an optimizer is listed twice in {names}", hint="list each once")
    if steps is None:
        steps = land.steps
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise ConfigError(f"steps must be a whole number in [1, {MAX_STEPS}], got {steps!r}")
    noise_std = land.noise if noise is None else noise
    noise_std = _check_number("noise", noise_std, positive=True, allow_zero=True)
    if clip_norm is not None:
        clip_norm = _check_number("clip_norm", clip_norm, positive=True)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be a whole number, got {seed!r}")
    if start is None:
        start = land.start
    if len(start) != 2:
        raise ConfigError(f"start must be a point (x, y), got {start!r}")
    xy = (
        _check_number("start x", start[0], positive=False),
        _check_number("start y", start[1], positive=False),
    )
    paths: dict[str, Trajectory] = {}
    for name in names:
        clipped = name.endswith(CLIP_SUFFIX)
        base = name.removesuffix(CLIP_SUFFIX)
        if isinstance(lr, Mapping):
            rate = lr.get(name, lr.get(base, default_lr(function, base)))
        elif lr is not None:
            rate = lr
        else:
            rate = default_lr(function, base)
        rate = _check_number(f"lr of {name}", rate, positive=True)
        threshold = DEFAULT_CLIP_NORM if clipped and clip_norm is None else clip_norm
        paths[name] = _run_one(land.fn, name, base, rate, xy, steps, threshold, noise_std, seed)
    return LandscapeResult(function, land, paths, steps, noise_std, seed, xy)
