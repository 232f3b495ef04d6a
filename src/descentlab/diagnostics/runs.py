"""Diagnostics of a training run on disk, and the range test of a run about to start.

:func:`load_point` reads a run directory at one of its two saved points — ``best``
(``model.safetensors``: the parameters at the best validation point) or ``last`` (the
newest checkpoint: the parameters when the run last checkpointed, which is at its end
unless it stopped mid-epoch; the iteration is reported) — with the run's own training
split (loaded and preprocessed as in training), its cost (loss, λ1, λ2 from
``config.toml``), and its optimizer at the learning rate it used at that point (from
``metrics.jsonl``; a schedule may have changed it).  :func:`diagnose_run` diagnoses
that point; :func:`lr_find_config` runs the learning-rate range test for a
:class:`~descentlab.train.TrainConfig` from a freshly initialized model, with the
curvature bound at the initialization beside it.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from descentlab.diagnostics.cost import CostFn, default_cost
from descentlab.diagnostics.hessian import HessianOperator, top_eigenvalues
from descentlab.diagnostics.lr_find import LRFindResult, lr_find
from descentlab.diagnostics.report import DiagnoseOptions, Diagnostics, diagnose
from descentlab.diagnostics.stability import StepRule, stability_bound
from descentlab.errors import CheckpointError, ConfigError
from descentlab.optim import build_optimizer
from descentlab.train import TrainConfig, load_run
from descentlab.train.build import build, load_data, seed_everything
from descentlab.train.checkpoint import load_checkpoint

__all__ = [
    "MIN_SAMPLE",
    "LRFindReport",
    "RunPoint",
    "check_sample",
    "diagnose_run",
    "load_point",
    "lr_find_config",
]

#: The smallest sample a curvature estimate is taken on unless the split is smaller:
#: below it λmax varies too much from one sample to the next to be read alone.
MIN_SAMPLE = 4096
POINTS = ("best", "last")


@dataclass
class RunPoint:
    """One saved point of a run, ready to diagnose."""

    path: Path
    at: str  # "best" or "last"
    iteration: int | None  # minibatch iterations done at that point
    config: TrainConfig
    model: nn.Module
    x: Tensor  # the training split, as training saw it
    y: Tensor
    cost: CostFn
    rule: StepRule


def check_sample(sample: int | None, n_train: int) -> int | None:
    """``None`` (the whole split) or a sample size of at least :data:`MIN_SAMPLE`."""
    if sample is None or sample >= n_train:
        return None
    if sample < MIN_SAMPLE:
        raise ConfigError(
            f"a sample of {sample} examples is too small for a curvature estimate "
            f"(λmax varies a lot between small samples)",
            hint=f"use --sample {MIN_SAMPLE} or more, or --sample all for the whole split",
        )
    return sample


def _lr_at(history: list[dict[str, Any]], iteration: int | None, default: float | None) -> Any:
    rows = [r for r in history if iteration is None or r.get("iteration", -1) + 1 <= iteration]
    return rows[-1].get("lr", default) if rows else default


def load_point(path: str | Path, at: str = "best") -> RunPoint:
    """The run in ``path`` at its ``best`` or ``last`` saved parameters (on the CPU)."""
    if at not in POINTS:
        raise ConfigError(f"unknown point {at!r}", hint="use --at best or --at last")
    run = load_run(path)
    cfg = run.config
    model = run.model
    iteration: int | None
    if at == "best":
        best = run.summary.get("best_iteration")
        iteration = best + 1 if isinstance(best, int) else None
    else:
        state, meta = load_checkpoint(Path(path) / "checkpoint")
        model = copy.deepcopy(model)
        try:
            model.load_state_dict(state["model"])
        except (KeyError, RuntimeError) as exc:
            raise CheckpointError(
                f"the checkpoint in {path} does not fit the run's model ({type(exc).__name__})",
                hint="diagnose --at best instead",
            ) from None
        iteration = meta.get("iteration")
    data = load_data(cfg, quiet=True)
    lr = _lr_at(run.history, iteration, cfg.lr)
    hparams = {**cfg.optimizer_hparams(), "lr": lr} if lr is not None else cfg.optimizer_hparams()
    probe = copy.deepcopy(model)  # the optimizer is built only to read its step rule
    rule = StepRule.from_optimizer(build_optimizer(cfg.optimizer, probe.parameters(), **hparams))
    cost = default_cost(cfg.loss, cfg.l1, cfg.l2)
    return RunPoint(Path(path), at, iteration, cfg, model, data.train.x, data.train.y, cost, rule)


def diagnose_run(
    path: str | Path,
    *,
    at: str = "best",
    sample: int | None = MIN_SAMPLE,
    options: DiagnoseOptions | None = None,
) -> tuple[RunPoint, Diagnostics]:
    """Diagnose the run in ``path`` at ``at`` on ``sample`` training examples (None: all).

    ``options.sample`` is replaced by the checked ``sample``.
    """
    point = load_point(path, at)
    opts = options or DiagnoseOptions()
    n = int(point.x.shape[0])
    opts = DiagnoseOptions(**{**opts.__dict__, "sample": check_sample(sample, n)})
    result = diagnose(point.model, point.x, point.y, cost=point.cost, rule=point.rule, options=opts)
    return point, result


@dataclass
class LRFindReport:
    """The range test of a config, with the curvature bound at initialization."""

    result: LRFindResult
    lambda_max_init: float | None
    bound_at_init: float | None  # the optimizer's stability bound at λmax(θ₀)
    bound_note: str | None
    n_examples: int  # examples λmax(θ₀) was computed on


def lr_find_config(
    cfg: TrainConfig,
    *,
    lr_min: float = 1e-5,
    lr_max: float = 10.0,
    steps: int = 300,
    sample: int | None = MIN_SAMPLE,
) -> LRFindReport:
    """Range test for ``cfg`` (dataset, model, optimizer, batch size, cost) from θ₀."""
    seed_everything(cfg.seed)
    parts = build(cfg.replace(device="cpu"))
    x, y = parts.data.train.x, parts.data.train.y
    hparams = cfg.optimizer_hparams()

    def factory(params: Any, lr: float) -> torch.optim.Optimizer:
        return build_optimizer(cfg.optimizer, params, **{**hparams, "lr": lr})

    result = lr_find(
        parts.model,
        parts.objective.cost,
        x,
        y,
        optimizer=factory,
        lr_min=lr_min,
        lr_max=lr_max,
        steps=steps,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
    )
    op = HessianOperator(
        parts.model, parts.objective.cost, x, y, sample=check_sample(sample, int(x.shape[0]))
    )
    top = top_eigenvalues(op, 1, tol=1e-3)
    lam = top.values[0] if top.values else None
    bound, note = None, None
    if lam is not None and math.isfinite(lam):
        rule = StepRule.from_optimizer(parts.optimizer)
        sb = stability_bound(lam, rule)
        bound, note = sb.lr_max, sb.reason
    return LRFindReport(result, lam, bound, note, op.n_examples)
