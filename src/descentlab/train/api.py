"""``fit``: the one-call Python API over :class:`~descentlab.train.trainer.Trainer`."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from descentlab.data import Dataset
from descentlab.errors import ConfigError
from descentlab.fsio import WriterLock
from descentlab.train.callbacks import Callback, default_callbacks
from descentlab.train.config import TrainConfig, from_mapping
from descentlab.train.distributed import barrier, shutdown
from descentlab.train.early_stopping import EarlyStopping
from descentlab.train.records import FitResult
from descentlab.train.run_dir import (
    check_run_dir,
    prepare_run_dir,
    unfinished_without_checkpoint,
)
from descentlab.train.trainer import Trainer

#: Options served by a callback from a layer above ``train`` (``diagnostics``: measured
#: by :mod:`descentlab.diagnostics`, which imports ``train`` and so cannot be imported
#: from here).  That package registers a factory when it is imported; :func:`fit` adds
#: the callback whenever the option is set.
OPTION_CALLBACKS: dict[str, Callable[[TrainConfig], Callback]] = {}
_PROVIDERS = {"diagnostics": "descentlab.diagnostics"}


def register_option_callback(option: str, factory: Callable[[TrainConfig], Callback]) -> None:
    """Serve the option ``option`` with ``factory(cfg)`` in every later :func:`fit`."""
    OPTION_CALLBACKS[option] = factory


def option_callbacks(cfg: TrainConfig, given: Sequence[Callback] = ()) -> list[Callback]:
    """The callbacks of the options set in ``cfg`` that none of ``given`` serves already."""
    out: list[Callback] = []
    for name, package in _PROVIDERS.items():
        if getattr(cfg, name) is None or any(
            getattr(cb, "serves_option", None) == name for cb in given
        ):
            continue
        factory = OPTION_CALLBACKS.get(name)
        if factory is None:
            raise ConfigError(
                f"the option {name} is measured by {package}, which is not imported",
                hint=f"import {package} before training (the command line does)",
            )
        out.append(factory(cfg))
    return out


def _check_arguments(model: Any, data: Any, optimizer: Any, config: Any) -> None:
    """Refuse arguments of the wrong kind with one line (not an AttributeError later)."""
    checks = (
        (
            "model",
            model,
            (str, nn.Module),
            "a model name ('logreg', 'mlp', 'lenet') or an nn.Module",
        ),
        ("data", data, (str, os.PathLike, Dataset), "a dataset name, a path or a Dataset"),
        ("config", config, (TrainConfig,), "a TrainConfig"),
    )
    for name, value, kinds, expected in checks:
        if value is not None and not isinstance(value, kinds):
            raise ConfigError(
                f"fit(): {name} must be {expected}, got {type(value).__name__} {value!r:.60}",
                hint="e.g. fit('logreg', 'digits')" if name != "config" else None,
            )
    if optimizer is not None and not (
        isinstance(optimizer, str | torch.optim.Optimizer) or callable(optimizer)
    ):
        raise ConfigError(
            f"fit(): optimizer must be a name, an optimizer or a params -> optimizer "
            f"callable, got {type(optimizer).__name__}",
            hint="e.g. optimizer='adam'",
        )


def _named_arguments(
    model: Any, data: Any, optimizer: Any, extra: dict[str, Any]
) -> dict[str, Any]:
    """The options that record what ``fit``'s model, data and optimizer arguments were."""
    values: dict[str, Any] = {}
    if isinstance(model, str):
        values["model"] = model
    elif model is not None:
        values["model"] = type(model).__name__
    if isinstance(data, str):
        values["dataset"] = data
    elif data is not None:
        values["dataset"] = data.name
        # the name alone cannot rebuild this data: a resume must be given the object again
        values["extra"] = {**extra, "in_memory_dataset": True}
    if isinstance(optimizer, str):
        values["optimizer"] = optimizer
    elif optimizer is not None:
        values["optimizer"] = (
            type(optimizer).__name__
            if isinstance(optimizer, torch.optim.Optimizer)
            else getattr(optimizer, "__name__", "custom")
        )
    return values


def fit(
    model: nn.Module | str | None = None,
    data: Dataset | str | None = None,
    *,
    optimizer: str | torch.optim.Optimizer | Callable[..., torch.optim.Optimizer] | None = None,
    config: TrainConfig | None = None,
    callbacks: Sequence[Callback] = (),
    stopper: EarlyStopping | None = None,
    default_callbacks_: bool = True,
    resume: bool = False,
    resume_previous: bool = False,
    **options: Any,
) -> FitResult:
    """Train a classifier the Deep Learning Tutorials' way and return a :class:`FitResult`.

    ``model`` is a model name (``"logreg"``, ``"mlp"``, ``"lenet"``) or any
    ``nn.Module`` returning logits; ``data`` a dataset name, a file path or a
    :class:`~descentlab.data.Dataset`; ``optimizer`` a name (``"adam"``,
    ``"torch.AdamW"``...), an optimizer instance, or a ``params -> Optimizer``
    callable.  Every other keyword is a :class:`TrainConfig` option
    (``lr=0.01, batch_size=20, max_epochs=50, out="runs/x"``...).

    Files are written only when ``out`` is given; ``quiet=True`` silences the
    console.  ``stopper`` replaces the early-stopping rule (see
    :mod:`descentlab.train.early_stopping`).  ``resume=True`` continues the run
    in ``out`` from its newest checkpoint (``resume_previous=True``: from the
    one before, if the newest is damaged).
    """
    _check_arguments(model, data, optimizer, config)
    if isinstance(data, os.PathLike):
        data = os.fspath(data)
    values = config.to_dict() if config is not None else {}
    values.update(_named_arguments(model, data, optimizer, values.get("extra", {})))
    values.update(options)
    cfg = from_mapping(values)
    if resume and cfg.out and unfinished_without_checkpoint(Path(cfg.out)):
        resume = False  # stopped before its first checkpoint: nothing to resume, start over
    run_dir = check_run_dir(cfg.out, resume=resume) if cfg.out is not None else None
    cbs = (default_callbacks(cfg, run_dir) if default_callbacks_ else []) + list(callbacks)
    cbs = option_callbacks(cfg, callbacks) + cbs
    # Callbacks that fill in a row run before the ones that write it (stable order).
    cbs.sort(key=lambda cb: not getattr(cb, "fills_rows", False))
    trainer = Trainer(
        cfg,
        data=data if isinstance(data, Dataset) else None,
        model=model if isinstance(model, nn.Module) else None,
        optimizer=None if optimizer is None or isinstance(optimizer, str) else optimizer,
        callbacks=cbs,
        run_dir=run_dir,
        stopper=stopper,
    )
    try:
        if run_dir is not None and trainer.world.is_main:
            prepare_run_dir(run_dir, resume=resume)
        if trainer.world.distributed:
            barrier("waiting for rank 0 to prepare the run directory")
        # One writer per run directory (rank 0 writes it): a second train/--resume of it is
        # refused while this one runs; the kernel drops the lock if this process dies.
        with contextlib.ExitStack() as stack:
            if run_dir is not None and trainer.world.is_main:
                stack.enter_context(WriterLock(run_dir, "run"))
            if resume:
                trainer.restore_checkpoint(previous=resume_previous)
            return trainer.fit()
    finally:
        shutdown(trainer.world)
