"""From a config to the pieces of a run: data, model, cost, optimizer, schedule, ...

:func:`build` is the factory the :class:`~descentlab.train.Trainer` calls; each piece
may be given ready-made instead (a :class:`~descentlab.data.Dataset`, an
``nn.Module``, an optimizer or a ``params -> Optimizer`` callable, an early-stopping
rule).  Nothing here trains: the loop is :mod:`descentlab.train.loop`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from descentlab.data import Batches, Dataset, load_dataset
from descentlab.errors import ConfigError
from descentlab.models import build_model
from descentlab.objective import Objective
from descentlab.optim import EMA, PolyakAverage, build_optimizer
from descentlab.optim.schedules import build_schedule
from descentlab.train.config import TrainConfig
from descentlab.train.early_stopping import (
    EarlyStopping,
    EpochPatience,
    NoEarlyStopping,
    TutorialEarlyStopping,
)
from descentlab.train.fast import DenseFastPath, fast_path_for

__all__ = [
    "Components",
    "OptimizerSpec",
    "build",
    "build_stopper",
    "load_data",
    "resolve_device",
    "seed_everything",
]

#: An optimizer instance, or a ``params -> Optimizer`` callable.
OptimizerSpec = torch.optim.Optimizer | Callable[..., torch.optim.Optimizer]


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(
            f"unknown device {name!r}", hint="use auto, cpu, cuda or cuda:N"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device {name!r} asked for, but CUDA is not available",
            hint="use --device cpu or --device auto",
        )
    return device


def load_data(cfg: TrainConfig, **overrides: Any) -> Dataset:
    """The dataset a config names, loaded with the config's data options (or ``overrides``)."""
    options: dict[str, Any] = {
        "data_dir": cfg.data_dir,
        "offline": cfg.offline,
        "standardize": cfg.standardize,
        "label_column": cfg.label_column,
        "seed": cfg.seed,
        "subset": cfg.subset,
        "pixel_scale": cfg.pixel_scale,
    }
    options.update(overrides)
    return load_dataset(options.pop("dataset", cfg.dataset), **options)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_stopper(cfg: TrainConfig, batches_per_epoch: int) -> EarlyStopping:
    """The configured early-stopping rule."""
    if cfg.early_stopping == "tutorial":
        return TutorialEarlyStopping(
            batches_per_epoch,
            patience=cfg.effective_patience,
            patience_increase=cfg.patience_increase,
            improvement_threshold=cfg.improvement_threshold,
            validation_frequency=cfg.validation_frequency,
        )
    if cfg.early_stopping == "epochs":
        return EpochPatience(patience=cfg.effective_patience, min_delta=cfg.min_delta)
    return NoEarlyStopping()


@dataclass
class Components:
    """The pieces of one run (everything :func:`build` makes)."""

    device: torch.device
    data: Dataset
    generator: torch.Generator  # the shuffling generator (its own stream)
    batches: Batches
    model: nn.Module
    objective: Objective
    optimizer: torch.optim.Optimizer
    schedule: Any  # our schedules add `.interval` to torch's LRScheduler interface
    averager: PolyakAverage | EMA | None
    stopper: EarlyStopping
    fast_path: DenseFastPath | None
    fast_path_reason: str


def _batches(cfg: TrainConfig, data: Dataset, generator: torch.Generator) -> Batches:
    n_train = data.train.y.shape[0]
    if cfg.batch_size > n_train:
        raise ConfigError(
            f"batch size {cfg.batch_size} is larger than the training set ({n_train} examples)",
            hint=f"use --batch-size {n_train} or less",
        )
    return Batches(
        data.train,
        cfg.batch_size,
        shuffle=cfg.shuffle,
        generator=generator,
        drop_last=cfg.drop_last,
    )


def _model(cfg: TrainConfig, data: Dataset) -> nn.Module:
    return build_model(
        cfg.model,
        data.input_shape,
        data.n_classes,
        hidden=cfg.hidden,
        activation=cfg.activation,
        dropout=cfg.dropout,
        batch_norm=cfg.batch_norm,
        init=cfg.init,
    )


def _optimizer(
    cfg: TrainConfig, params: list[nn.Parameter], given: OptimizerSpec | None
) -> torch.optim.Optimizer:
    if given is None:
        return build_optimizer(cfg.optimizer, params, **cfg.optimizer_hparams())
    if isinstance(given, torch.optim.Optimizer):
        return given
    return given(params)


def _averager(cfg: TrainConfig, model: nn.Module) -> PolyakAverage | EMA | None:
    if cfg.polyak_start is not None:
        return PolyakAverage(model, start=cfg.polyak_start)
    if cfg.ema is not None:
        return EMA(model, decay=cfg.ema)
    return None


def build(
    cfg: TrainConfig,
    *,
    data: Dataset | None = None,
    model: nn.Module | None = None,
    optimizer: OptimizerSpec | None = None,
    stopper: EarlyStopping | None = None,
) -> Components:
    """Every piece of a run, built from ``cfg`` unless given (see the module docstring)."""
    device = resolve_device(cfg.device)
    data = (data if data is not None else load_data(cfg)).to(device)
    generator = torch.Generator(device="cpu").manual_seed(cfg.seed)
    batches = _batches(cfg, data, generator)
    model = (model if model is not None else _model(cfg, data)).to(device)
    model.train()
    objective = Objective(cfg.loss, l1=cfg.l1, l2=cfg.l2)
    # The fast path (train/fast.py) computes the same cost and gradients without autograd
    # when the model is a plain dense classifier on the NLL; else it is None and the
    # reason says why.
    fast: DenseFastPath | None = None
    reason = "disabled by fast_path=False"
    if cfg.fast_path:
        fast, reason = fast_path_for(model, objective)
    opt = _optimizer(cfg, list(model.parameters()), optimizer)
    schedule = build_schedule(cfg.schedule, opt, steps_per_epoch=len(batches))
    return Components(
        device=device,
        data=data,
        generator=generator,
        batches=batches,
        model=model,
        objective=objective,
        optimizer=opt,
        schedule=schedule,
        averager=_averager(cfg, model),
        stopper=stopper if stopper is not None else build_stopper(cfg, len(batches)),
        fast_path=fast,
        fast_path_reason=reason,
    )
