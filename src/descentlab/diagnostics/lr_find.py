"""The learning-rate range test ("lr-find"; Smith, "Cyclical Learning Rates", 2017, §3.3).

Train a *copy* of the model for up to ``steps`` minibatch steps while the learning rate
grows geometrically from ``lr_min`` to ``lr_max``::

    ε_t = lr_min · (lr_max / lr_min)^(t / (steps − 1))

recording the minibatch cost before each step.  The raw curve is as noisy as the
minibatches, so it is smoothed twice:

* **online**, for the stop rule, by a bias-corrected exponential moving average
  (``s_t = β s_{t−1} + (1 − β) L_t``, read as ``s_t / (1 − β^{t+1})``).  The sweep stops
  once it exceeds ``diverge_factor`` (4) times its best value so far, or goes
  non-finite: past that point the rate is useless and the steps only burn time.
* **centred**, for the curve reported and plotted, by a Gaussian filter of ``window``
  steps (:func:`scipy.ndimage.gaussian_filter1d`).  An EMA lags by about ``1/(1 − β)``
  steps, and with the learning rate growing every step a lag is a shift along the lr
  axis (β = 0.98 over six decades in 300 steps: a factor of 10), which would move the
  suggestion to rates the raw curve shows are already too large.  A centred filter
  does not shift.

**Suggestion.**  The learning rate at which the centred smoothed loss falls fastest per
unit of ``log ε`` (the most negative slope ``ds/d log ε``), searched only *below* the
learning rate of the smoothed minimum.  The common alternative — the minimum's rate divided by 10
— is also reported (:attr:`LRFindResult.lr_min_over_10`), but its factor 10 is a rule of
thumb, and the minimum of a rising-lr curve sits where the loss is about to blow up, so
the rate it starts from is the least reliable point of the sweep.  The steepest-descent
point is read from where the curve is still well-behaved, and is below the divergence
point by construction.  Both are heuristics: check the plot.
"""

from __future__ import annotations

import copy
import io
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from descentlab.diagnostics.cost import CostFn, check_data
from descentlab.errors import ConfigError, DivergenceError
from descentlab.fsio import atomic_write_bytes
from descentlab.optim import SGD

__all__ = ["LRFindResult", "OptimizerFactory", "lr_find", "plot_lr_find"]

#: ``factory(params, lr) -> optimizer``; its learning rate is overwritten every step.
OptimizerFactory = Callable[[Iterable[nn.Parameter], float], torch.optim.Optimizer]


def _sgd(params: Iterable[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    return SGD(params, lr=lr)


@dataclass
class LRFindResult:
    """The sweep (``lrs``, raw and smoothed ``losses``) and what it suggests."""

    lrs: list[float]
    losses: list[float]  # raw minibatch cost before each step
    smoothed: list[float]  # centred Gaussian smoothing of ``losses``
    suggestion: float  # lr of the steepest smoothed descent below the minimum
    lr_at_min: float  # lr of the smallest smoothed loss
    diverged_at: float | None  # lr at which the stop rule fired (None: ran to lr_max)
    method: str = "steepest descent of the smoothed loss (d loss / d log lr), below its minimum"
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def lr_min_over_10(self) -> float:
        """The other common rule: the minimum's learning rate divided by 10."""
        return self.lr_at_min / 10


def _check_sweep(lr_min: float, lr_max: float, steps: int, smooth: float, window: float) -> None:
    if not window >= 0:
        raise ConfigError(f"window must be >= 0 steps, got {window}")
    if not (0 < lr_min < lr_max and math.isfinite(lr_max)):
        raise ConfigError(f"need 0 < lr_min < lr_max, got {lr_min} and {lr_max}")
    if steps < 10:
        raise ConfigError(f"steps must be >= 10 for a usable curve, got {steps}")
    if not 0 <= smooth < 1:
        raise ConfigError(f"smooth must be in [0, 1), got {smooth}")


def lr_find(
    model: nn.Module,
    cost: CostFn,
    x: Tensor,
    y: Tensor,
    *,
    optimizer: OptimizerFactory = _sgd,
    lr_min: float = 1e-5,
    lr_max: float = 10.0,
    steps: int = 300,
    batch_size: int = 64,
    smooth: float = 0.9,
    window: float = 5.0,
    diverge_factor: float = 4.0,
    seed: int = 0,
) -> LRFindResult:
    """Run the range test on a deep copy of ``model`` (the model itself is not touched).

    Minibatches of ``batch_size`` are drawn by a seeded shuffle, reshuffled after each
    pass over ``(x, y)``.  The copy trains in train mode (dropout on), as a run would.
    """
    n = check_data(x, y)
    _check_sweep(lr_min, lr_max, steps, smooth, window)
    net = copy.deepcopy(model).train()
    opt = optimizer([p for p in net.parameters() if p.requires_grad], lr_min)
    gen = torch.Generator().manual_seed(seed)
    factor = (lr_max / lr_min) ** (1 / (steps - 1))
    lrs: list[float] = []
    losses: list[float] = []
    avg, best, diverged = 0.0, math.inf, None
    order, pos = torch.randperm(n, generator=gen), 0
    for t in range(steps):
        lr = lr_min * factor**t
        if pos + batch_size > n:
            order, pos = torch.randperm(n, generator=gen), 0
        idx = order[pos : pos + batch_size].to(x.device)
        pos += batch_size
        for group in opt.param_groups:
            group["lr"] = lr
        loss = _step(opt, net, cost, x[idx], y[idx])
        avg = smooth * avg + (1 - smooth) * loss
        value = avg / (1 - smooth ** (t + 1)) if smooth else loss
        lrs.append(lr)
        losses.append(loss)
        if not math.isfinite(value) or value > diverge_factor * best:
            diverged = lr
            break
        best = min(best, value)
    return _summarize(lrs, losses, window, diverged)


def _step(
    opt: torch.optim.Optimizer, net: nn.Module, cost: CostFn, xb: Tensor, yb: Tensor
) -> float:
    """One optimizer step through a closure (Nesterov evaluates it at the look-ahead
    point); returns the minibatch cost the closure saw."""

    def closure() -> float:
        opt.zero_grad()
        loss = cost(net, xb, yb)
        loss.backward()
        return float(loss.detach())

    value = opt.step(closure)
    return float(value) if value is not None else math.nan


def _summarize(
    lrs: list[float], losses: list[float], window: float, diverged: float | None
) -> LRFindResult:
    raw = np.asarray(losses, dtype=float)
    # The sweep stops at the first non-finite loss, so only a tail can be non-finite;
    # smoothing it in would smear NaN over its neighbours.
    n_ok = len(raw) if np.isfinite(raw).all() else int(np.argmin(np.isfinite(raw)))
    if n_ok == 0:
        raise DivergenceError(
            f"the loss is not finite even at lr_min={lrs[0]:.3g}",
            hint="lower lr_min, or check the model and data",
        )
    ok = raw[:n_ok]
    from scipy.ndimage import gaussian_filter1d  # loaded on use: see diagnostics/hessian.py

    s = gaussian_filter1d(ok, window, mode="nearest") if window > 0 else ok
    i_min = int(np.argmin(s))
    if i_min < 2:  # too few points below the minimum to take a slope
        suggestion = lrs[i_min]
    else:
        slope = np.gradient(s[: i_min + 1], np.log(np.asarray(lrs[: i_min + 1])))
        suggestion = lrs[int(np.argmin(slope))]
    smoothed = s.tolist() + [math.nan] * (len(raw) - n_ok)
    return LRFindResult(lrs, losses, smoothed, suggestion, lrs[i_min], diverged)


def plot_lr_find(
    result: LRFindResult,
    path: str | os.PathLike[str],
    *,
    bound: float | None = None,
    title: str = "learning-rate range test",
) -> Path:
    """Loss against learning rate on log axes, the suggestion marked; saved to ``path``.

    ``bound`` (e.g. the curvature bound ``2/λmax`` at initialization) is drawn as a
    dashed line for comparison.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # heavy; only when plotting
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(result.lrs, result.losses, color="0.75", lw=0.8, label="minibatch loss")
    ax.plot(result.lrs, result.smoothed, color="C0", label="smoothed")
    ax.axvline(result.suggestion, color="C2", label=f"suggested lr {result.suggestion:.3g}")
    if bound is not None and math.isfinite(bound):
        ax.axvline(bound, color="C3", ls="--", label=f"stability bound {bound:.3g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training cost")
    ax.set_title(title)
    ax.legend(fontsize="small")
    fig.tight_layout()
    out = Path(path)
    buffer = io.BytesIO()  # rendered in memory, written atomically (a full disk: no half file)
    fig.savefig(buffer, dpi=120, format=out.suffix.lstrip(".").lower() or "png")
    atomic_write_bytes(out, buffer.getvalue())
    return out
