"""All chapter-8 diagnostics of one model at one point, as one JSON-ready record.

:func:`diagnose` measures, on the training cost over the given examples (eval mode):
λmax and the top-k spectrum, λmin, the Hutchinson trace, the stability bound of the
run's step rule next to its learning rate, the §8.2.1 step test and the gradient noise
scale.  Each part can be switched off; a part not measured is ``None`` in the record.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from descentlab.diagnostics.cost import CostFn, default_cost, has_stochastic_layers
from descentlab.diagnostics.hessian import (
    HessianOperator,
    hutchinson_trace,
    min_eigenvalue,
    top_eigenvalues,
)
from descentlab.diagnostics.noise import gradient_noise_scale
from descentlab.diagnostics.stability import StepRule, stability_bound, step_test
from descentlab.errors import ConfigError

__all__ = ["DiagnoseOptions", "Diagnostics", "diagnose"]


@dataclass
class Diagnostics:
    """One diagnosis.  Quantities not measured are ``None``; see docs/diagnostics.md."""

    n_examples: int  # examples the curvature and gradient were computed on
    n_parameters: int
    lr: float | None  # the run's learning rate ε
    optimizer: str | None
    lambda_max: float | None = None
    lambda_min: float | None = None
    top_eigenvalues: list[float] | None = None
    lambda_max_samples: list[float] | None = None  # one per sample, with repeats > 1
    lambda_max_spread: float | None = None  # their standard deviation
    lr_stability_bound: float | None = None
    bound_formula: str | None = None
    bound_note: str | None = None  # why there is no bound, when there is none
    trace: float | None = None  # Hutchinson estimate of tr H
    trace_stderr: float | None = None
    grad_norm: float | None = None  # ‖g‖ over the n_examples
    step_ratio: float | None = None  # ½ε²gᵀHg / εgᵀg (> 1: the step raises the cost)
    step_predicted_change: float | None = None
    step_actual_change: float | None = None
    cost: float | None = None
    noise_scale: float | None = None  # B_simple = tr(Σ)/|G|²
    critical_batch: float | None = None
    noise_batches: list[int] | None = None  # [b_small, b_big]
    noise_repeats: int | None = None
    eval_mode_note: str = "eval mode; the model has no dropout or batch norm"
    converged: dict[str, bool] = field(default_factory=dict)
    matvecs: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types; NaN and ±inf become ``None``."""
        return {k: _finite(v) for k, v in asdict(self).items()}

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class DiagnoseOptions:
    """What :func:`diagnose` measures and how hard it tries."""

    top_k: int = 1
    lambda_min: bool = True
    trace_probes: int = 0  # 0: no trace
    noise_batches: tuple[int, int] | None = (32, 1024)  # None: no noise scale
    noise_repeats: int = 10
    tol: float = 1e-4
    min_tol: float = 1e-3
    maxiter: int | None = None
    chunk_size: int = 1024
    cache_graph: bool = False  # see HessianOperator: ~2x faster, memory ∝ examples
    sample: int | None = None
    repeats: int = 1  # λmax on this many independent samples (needs sample)
    seed: int = 0

    def __post_init__(self) -> None:
        # Every count named as the option it is, before any work starts.
        for name in ("top_k", "noise_repeats", "repeats", "chunk_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}")
        if self.trace_probes != 0 and not (
            isinstance(self.trace_probes, int) and self.trace_probes >= 2
        ):
            raise ConfigError(
                f"trace_probes must be 0 (no trace) or >= 2 (a standard error needs two), "
                f"got {self.trace_probes!r}"
            )


def _curvature(
    out: Diagnostics, op: HessianOperator, rule: StepRule | None, opts: DiagnoseOptions
) -> None:
    t = time.perf_counter()
    top = top_eigenvalues(op, opts.top_k, tol=opts.tol, maxiter=opts.maxiter, seed=opts.seed)
    out.seconds["lambda_max"] = time.perf_counter() - t
    out.converged["lambda_max"] = top.converged
    out.top_eigenvalues = top.values
    out.lambda_max = top.values[0] if top.values else None
    if opts.lambda_min:
        t = time.perf_counter()
        low = min_eigenvalue(op, tol=opts.min_tol, maxiter=opts.maxiter, seed=opts.seed + 1)
        out.seconds["lambda_min"] = time.perf_counter() - t
        out.converged["lambda_min"] = low.converged
        out.lambda_min = low.values[0] if low.values else None
    if rule is not None and out.lambda_max is not None:
        bound = stability_bound(out.lambda_max, rule)
        out.lr_stability_bound = bound.lr_max
        out.bound_formula = bound.formula or None
        out.bound_note = bound.reason
    if opts.trace_probes:
        t = time.perf_counter()
        tr = hutchinson_trace(op, opts.trace_probes, seed=opts.seed + 2)
        out.seconds["trace"] = time.perf_counter() - t
        out.trace, out.trace_stderr = tr.value, tr.stderr


def _lambda_max_spread(
    out: Diagnostics, model: nn.Module, cost: CostFn, x: Tensor, y: Tensor, opts: DiagnoseOptions
) -> None:
    """λmax on ``repeats − 1`` further samples of the same size: how much it varies."""
    values = [out.lambda_max] if out.lambda_max is not None else []
    t = time.perf_counter()
    for r in range(1, opts.repeats):
        op = HessianOperator(
            model, cost, x, y, chunk_size=opts.chunk_size, sample=opts.sample, seed=opts.seed + r
        )
        top = top_eigenvalues(op, 1, tol=opts.tol, maxiter=opts.maxiter, seed=opts.seed)
        values.extend(top.values[:1])
        out.matvecs += op.matvecs
    out.seconds["lambda_max_repeats"] = time.perf_counter() - t
    out.lambda_max_samples = values
    out.lambda_max_spread = statistics.stdev(values) if len(values) > 1 else None


def diagnose(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    cost: CostFn | None = None,
    rule: StepRule | torch.optim.Optimizer | None = None,
    options: DiagnoseOptions | None = None,
) -> Diagnostics:
    """Diagnose ``model`` on ``(x, y)`` (normally the training split).

    ``cost`` defaults to :func:`~descentlab.diagnostics.cost.default_cost` (NLL, no
    penalty); ``rule`` — a :class:`StepRule` or the run's optimizer — supplies the
    learning rate for the stability bound and the step test (both skipped without it).
    """
    opts = options or DiagnoseOptions()
    cost = cost or default_cost()
    if opts.repeats > 1 and opts.sample is None:
        raise ConfigError(
            "repeats > 1 needs a sample size: repeats on the full split give the same value",
            hint="set sample (e.g. 4096) or repeats=1",
        )
    if isinstance(rule, torch.optim.Optimizer):
        rule = StepRule.from_optimizer(rule)
    if rule is not None and not isinstance(rule, StepRule):
        raise ConfigError(f"rule must be a StepRule or an optimizer, got {type(rule).__name__}")
    op = HessianOperator(
        model,
        cost,
        x,
        y,
        chunk_size=opts.chunk_size,
        sample=opts.sample,
        seed=opts.seed,
        cache_graph=opts.cache_graph,
    )
    out = Diagnostics(op.n_examples, op.dim, rule.lr if rule else None, rule.name if rule else None)
    notes = {"dropout": "dropout off", "batch norm": "batch norm on running statistics"}
    stochastic = has_stochastic_layers(model)
    if stochastic:
        out.eval_mode_note = "eval mode: " + ", ".join(notes[k] for k in stochastic)
    _curvature(out, op, rule, opts)
    if rule is not None:
        t = time.perf_counter()
        st = step_test(op, rule.lr)
        out.seconds["step_test"] = time.perf_counter() - t
        out.grad_norm, out.step_ratio, out.cost = st.grad_norm, st.ratio, st.cost
        out.step_predicted_change, out.step_actual_change = (
            st.predicted_change,
            st.actual_change,
        )
    if opts.noise_batches is not None:
        t = time.perf_counter()
        b_small, b_big = opts.noise_batches
        ns = gradient_noise_scale(
            model,
            cost,
            x,
            y,
            b_small=b_small,
            b_big=b_big,
            repeats=opts.noise_repeats,
            seed=opts.seed + 3,
        )
        out.seconds["noise_scale"] = time.perf_counter() - t
        out.noise_scale, out.critical_batch = ns.noise_scale, ns.critical_batch
        out.noise_batches, out.noise_repeats = [b_small, b_big], ns.repeats
    out.matvecs += op.matvecs
    if opts.repeats > 1:
        _lambda_max_spread(out, model, cost, x, y, opts)
    return out
