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
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from descentlab.data import Batches, Dataset, load_dataset
from descentlab.errors import ConfigError, did_you_mean
from descentlab.models import MODEL_NAMES, build_model
from descentlab.objective import Objective
from descentlab.optim import EMA, PolyakAverage, build_optimizer, optimizer_hyperparameters
from descentlab.optim.schedules import build_schedule, parse_schedule_spec
from descentlab.train.config import TrainConfig
from descentlab.train.distributed import SINGLE, World
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
    "check_names",
    "data_use_warnings",
    "load_data",
    "resolve_device",
    "seed_everything",
    "seeds_can_differ",
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


def check_names(
    cfg: TrainConfig, *, model_given: bool = False, optimizer_given: bool = False
) -> None:
    """Refuse an unknown model, optimizer or schedule name before any data is loaded.

    The names are not checked by the config itself because ``fit`` records a given
    ``nn.Module`` or optimizer object by its class name.
    """
    if not model_given and cfg.model not in MODEL_NAMES:
        raise ConfigError(
            f"unknown model {cfg.model!r}", hint=did_you_mean(cfg.model, list(MODEL_NAMES))
        )
    if not optimizer_given:
        optimizer_hyperparameters(cfg.optimizer)
    parse_schedule_spec(cfg.schedule)
    resolve_device(cfg.device)


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
    folder = options.get("data_dir")
    if folder is not None and not Path(folder).expanduser().is_dir():
        raise ConfigError(
            f"data directory {str(folder)!r} does not exist",
            hint="pass an existing folder to --data-dir (it should hold mnist/ ...)",
        )
    return load_dataset(options.pop("dataset", cfg.dataset), **options)


def data_use_warnings(cfg: TrainConfig, n_train: int) -> list[str]:
    """What a reader should know about how the minibatches use the training set.

    One step per epoch makes early stopping and the learning curve meaningless, and
    ``drop_last`` with a batch close to the training-set size silently skips a large
    share of it (batch 600 on digits' 1,078 training examples drops 478 of them).
    """
    out: list[str] = []
    steps = n_train // cfg.batch_size if cfg.drop_last else -(-n_train // cfg.batch_size)
    dropped = n_train - steps * cfg.batch_size if cfg.drop_last else 0
    smaller = max(1, min(n_train // 10, 128))
    if steps <= 1:
        out.append(
            f"batch size {cfg.batch_size} makes one minibatch step per epoch on "
            f"{n_train} training examples (try --batch-size {smaller})"
        )
    if dropped / max(n_train, 1) > DROPPED_SHARE:
        out.append(
            f"batch size {cfg.batch_size} leaves {dropped} of {n_train} training examples "
            f"({100 * dropped / n_train:.0f}%) out of every epoch "
            f"(use --keep-last, or a smaller --batch-size such as {smaller})"
        )
    return out


#: The share of the training set dropped by ``drop_last`` above which a run warns.
DROPPED_SHARE = 0.10


def seeds_can_differ(cfg: TrainConfig) -> bool:
    """Whether runs that differ only in ``seed`` can differ at all.

    The seed drives the initialization, the shuffling and dropout; a zero-initialized
    model (logreg's default, as in the tutorial) trained in file order without dropout
    takes the same steps whatever the seed.
    """
    zero_init = (cfg.init is None and cfg.model == "logreg") or cfg.init == "zeros"
    return cfg.shuffle or cfg.dropout > 0 or not zero_init


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


def _batches(cfg: TrainConfig, data: Dataset, generator: torch.Generator, world: World) -> Batches:
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
        # data-parallel: --batch-size stays the global minibatch, each rank takes a share
        rank=world.rank,
        world_size=world.size,
        global_batch=True,
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
    world: World = SINGLE,
    device: torch.device | None = None,
) -> Components:
    """Every piece of a run, built from ``cfg`` unless given (see the module docstring).

    ``world``: this rank's place in a data-parallel job (:mod:`descentlab.train.distributed`).
    """
    check_names(cfg, model_given=model is not None, optimizer_given=optimizer is not None)
    device = device if device is not None else resolve_device(cfg.device)
    data = (data if data is not None else load_data(cfg)).to(device)
    generator = torch.Generator(device="cpu").manual_seed(cfg.seed)
    batches = _batches(cfg, data, generator, world)
    model = (model if model is not None else _model(cfg, data)).to(device)
    if world.distributed and device.type == "cuda":
        # batch statistics over the whole global batch (CUDA only; on the CPU each rank
        # normalizes by its own share: see docs/distributed.md)
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
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
