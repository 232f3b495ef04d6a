"""The training loop of the Deep Learning Tutorials, readable top to bottom.

    for each epoch (until early stopping or max_epochs):
        for each minibatch (x, y):
            cost = NLL(model(x), y) + λ1·Σ|W| + λ2·ΣW²       (the closure)
            optimizer.step(closure)                          (θ ← θ + Δθ)
            every validation_frequency minibatches:
                score the validation set; on a new best, score the test set
                and keep the parameters (the test set is never used to choose)

Everything else — printing, files, checkpoints — hangs off the events in
:mod:`descentlab.train.callbacks`.  The trainer owns all state that a resume
must restore (:meth:`Trainer.state_dict`), and the data order comes from
``Batches`` with its own generator, so the loop, data sharding and
checkpointing stay separable (data-parallel training can wrap each).
"""

from __future__ import annotations

import contextlib
import math
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from descentlab._version import __version__
from descentlab.data import Batches, Dataset, load_dataset
from descentlab.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    DescentlabError,
    DivergenceError,
)
from descentlab.losses import get_loss, penalty
from descentlab.models import build_model
from descentlab.optim import EMA, PolyakAverage, build_optimizer, clip_grad_norm_, clip_grad_value_
from descentlab.optim.schedules import build_schedule
from descentlab.train.callbacks import Callback, overrides
from descentlab.train.checkpoint import load_checkpoint, save_checkpoint
from descentlab.train.config import TrainConfig
from descentlab.train.early_stopping import (
    EarlyStopping,
    EpochPatience,
    NoEarlyStopping,
    TutorialEarlyStopping,
)
from descentlab.train.evaluate import Evaluation, evaluate
from descentlab.train.fast import DenseFastPath, fast_path_for
from descentlab.train.tutorial_eval import evaluate_tutorial


class TrainingInterrupted(DescentlabError):
    """SIGINT/SIGTERM arrived; a checkpoint was written (exit 130 / 143)."""

    def __init__(self, signum: int, run_dir: Path | None) -> None:
        self.exit_code = 130 if signum == signal.SIGINT else 143
        name = signal.Signals(signum).name
        if run_dir is not None:
            super().__init__(
                f"interrupted by {name}; checkpoint written to {run_dir}",
                hint=f"continue with: descentlab train --resume {run_dir}",
            )
        else:
            super().__init__(
                f"interrupted by {name}; no run directory, nothing saved",
                hint="pass out=... to keep checkpoints",
            )


class _NonFinite(Exception):
    """Raised inside the closure so the optimizer never applies a non-finite step."""


@dataclass
class FitResult:
    """What ``fit`` returns: the summary, the per-validation history and the model.

    ``model`` holds the best parameters (by validation) when ``restore_best``
    is on, else the final ones.  ``best_state`` is always the best.
    """

    summary: dict[str, Any]
    history: list[dict[str, Any]]
    model: nn.Module
    best_state: dict[str, torch.Tensor] | None
    config: TrainConfig
    run_dir: Path | None = None
    test_predictions: torch.Tensor | None = None
    data: Dataset | None = field(default=None, repr=False)

    @property
    def test_error(self) -> float | None:
        return self.summary.get("test_error")

    @property
    def best_valid_error(self) -> float | None:
        return self.summary.get("best_valid_error")


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


class Trainer:
    """One training run: set up from a config, then :meth:`fit`.

    Pieces may be given ready-made (``data``, ``model``, ``optimizer``); the
    rest are built from ``config``.  ``run_dir`` is where files go (None:
    nothing is written and no checkpoints are kept).  ``stopper`` replaces the
    configured early-stopping rule with any object following the
    :class:`~descentlab.train.early_stopping.EarlyStopping` protocol.
    """

    def __init__(
        self,
        config: TrainConfig,
        *,
        data: Dataset | None = None,
        model: nn.Module | None = None,
        optimizer: torch.optim.Optimizer | Callable[..., torch.optim.Optimizer] | None = None,
        callbacks: Sequence[Callback] = (),
        run_dir: str | Path | None = None,
        stopper: EarlyStopping | None = None,
    ) -> None:
        self.config = cfg = config
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        seed_everything(cfg.seed)
        self.device = resolve_device(cfg.device)
        self.run_dir = Path(run_dir) if run_dir is not None else None

        # dataset → batches
        if data is None:
            data = load_data(cfg)
        self.data = data.to(self.device)
        n_train = self.data.train.y.shape[0]
        if cfg.batch_size > n_train:
            raise ConfigError(
                f"batch size {cfg.batch_size} is larger than the training set ({n_train} examples)",
                hint=f"use --batch-size {n_train} or less",
            )
        self.generator = torch.Generator(device="cpu").manual_seed(cfg.seed)
        self.batches = Batches(
            self.data.train,
            cfg.batch_size,
            shuffle=cfg.shuffle,
            generator=self.generator,
            drop_last=cfg.drop_last,
        )
        self.batches_per_epoch = len(self.batches)

        # model
        if model is None:
            model = build_model(
                cfg.model,
                self.data.input_shape,
                self.data.n_classes,
                hidden=cfg.hidden,
                activation=cfg.activation,
                dropout=cfg.dropout,
                batch_norm=cfg.batch_norm,
                init=cfg.init,
            )
        self.model = model.to(self.device)
        self.model.train()

        # loss (the surrogate being minimized) and the penalty terms
        self.loss_fn = get_loss(cfg.loss)
        self.has_penalty = cfg.l1 > 0 or cfg.l2 > 0
        # The fast path (train/fast.py) computes the same cost and gradients without
        # autograd when the model is a plain dense classifier on the NLL; else it is None
        # and fast_path_reason says why.  It is re-checked at every epoch's start.
        self.fast_path: DenseFastPath | None = None
        self.fast_path_reason = "disabled by fast_path=False"
        self._fuse_sgd = False  # decided at each epoch's start (_sgd_fusable)
        if cfg.fast_path:
            self.fast_path, self.fast_path_reason = fast_path_for(
                self.model, self.loss_fn, l1=cfg.l1, l2=cfg.l2
            )

        # optimizer, schedule, averaging
        params = list(self.model.parameters())
        if optimizer is None:
            self.optimizer = build_optimizer(cfg.optimizer, params, **cfg.optimizer_hparams())
        elif isinstance(optimizer, torch.optim.Optimizer):
            self.optimizer = optimizer
        else:
            self.optimizer = optimizer(params)
        # Any: our schedules add `.interval` to torch's LRScheduler interface
        self.schedule: Any = build_schedule(
            cfg.schedule, self.optimizer, steps_per_epoch=self.batches_per_epoch
        )
        self.averager: PolyakAverage | EMA | None = None
        if cfg.polyak_start is not None:
            self.averager = PolyakAverage(self.model, start=cfg.polyak_start)
        elif cfg.ema is not None:
            self.averager = EMA(self.model, decay=cfg.ema)

        # early stopping (a user-supplied rule replaces the configured one)
        self.stopper: EarlyStopping
        if stopper is not None:
            self.stopper = stopper
        elif cfg.early_stopping == "tutorial":
            self.stopper = TutorialEarlyStopping(
                self.batches_per_epoch,
                patience=cfg.effective_patience,
                patience_increase=cfg.patience_increase,
                improvement_threshold=cfg.improvement_threshold,
                validation_frequency=cfg.validation_frequency,
            )
        elif cfg.early_stopping == "epochs":
            self.stopper = EpochPatience(patience=cfg.effective_patience, min_delta=cfg.min_delta)
        else:
            self.stopper = NoEarlyStopping()

        self.callbacks: list[Callback] = list(callbacks)
        self._step_callbacks = [cb for cb in self.callbacks if overrides(cb, "on_step")]

        # progress (all of it is restored on resume)
        self.epoch = 0  # epochs completed
        self.batch_in_epoch = 0  # minibatches done in the current epoch
        self.iteration = -1  # 0-based index of the last minibatch done (tutorial's `iter`)
        self.history: list[dict[str, Any]] = []
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best: dict[str, Any] = {}
        self.stopped_because: str | None = None
        self.elapsed = 0.0  # seconds spent in fit() before this process (resume)
        self._epoch_rng_state = self.generator.get_state()
        self._loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self._loss_count = 0
        self._grad_max = torch.zeros((), device=self.device)
        self._interrupt: int | None = None
        self._t0 = time.perf_counter()
        self._target_reached: dict[str, Any] | None = None

    # ================================================================ the loop
    def fit(self) -> FitResult:
        """Train until early stopping, ``max_epochs`` or an interruption."""
        cfg = self.config
        self._t0 = time.perf_counter()
        with self._signals_caught():
            self._emit("on_train_start")
            while self.epoch < cfg.max_epochs and self.stopped_because is None:
                self._run_epoch(self.epoch + 1)
        if self.stopped_because is None:
            self.stopped_because = "max_epochs"
        result = self._finish()
        self._emit("on_train_end", result)
        return result

    def _run_epoch(self, epoch: int) -> None:
        if self.batch_in_epoch == 0:
            self._epoch_rng_state = self.generator.get_state()
        else:  # resuming mid-epoch: replay the same permutation, skip what was done
            self.generator.set_state(self._epoch_rng_state)
        self._emit("on_epoch_start", epoch)
        if self.fast_path is not None and not self.fast_path.still_valid():
            # A callback froze parameters or added hooks: autograd from here on.
            self.fast_path, self.fast_path_reason = None, "the model changed during training"
        self._fuse_sgd = self.fast_path is not None and self._sgd_fusable()
        last = self.batches_per_epoch - 1
        for x, y in self.batches.iter_from(self.batch_in_epoch):
            loss = self._step(x, y)
            self.iteration += 1
            self.batch_in_epoch += 1
            end_of_epoch = self.batch_in_epoch > last
            for cb in self._step_callbacks:
                cb.on_step(self, self.iteration, loss)
            if self.stopper.validation_due(self.iteration, end_of_epoch):
                self._validate(epoch)
            if self.iteration >= self.stopper.stop_iteration:
                self.stopped_because = "early_stopping"
                break
            if self._interrupt is not None:
                self._handle_interrupt()
        else:
            self.epoch = epoch
            self.batch_in_epoch = 0
            if self.schedule is not None and self.schedule.interval == "epoch":
                self._step_epoch_schedule()
            if self.stopper.should_stop_after_epoch():
                self.stopped_because = "early_stopping"
            self._emit("on_epoch_end", epoch)
            return
        # stopped inside the epoch: it still counts as run
        self.epoch, self.batch_in_epoch = epoch, 0
        self._emit("on_epoch_end", epoch)

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One minibatch: θ ← θ + Δθ(∇(cost)), with the cost built in a closure."""
        cfg = self.config
        model, opt, fast = self.model, self.optimizer, self.fast_path

        def closure() -> torch.Tensor:
            if fast is not None:
                # Same cost and gradients, by hand; .grad tensors are overwritten in place.
                cost = fast.forward(x, y)
                if self._check_finite and not math.isfinite(cost.item()):
                    opt.zero_grad(set_to_none=True)  # as the plain path leaves them
                    raise _NonFinite("loss")
                rates = fast.sgd_rates(opt) if self._fuse_sgd else None
                if rates is not None:
                    fast.backward_sgd_(rates)  # θ ← θ − ε∇ done here; opt.step finds no .grad
                    return cost
                fast.backward()
            else:
                opt.zero_grad(set_to_none=True)
                cost = self.loss_fn(model(x), y)
                if self.has_penalty:
                    cost = cost + penalty(model, l1=cfg.l1, l2=cfg.l2)
                if self._check_finite and not torch.isfinite(cost):
                    raise _NonFinite("loss")
                cost.backward()
            if cfg.on_nan != "stop" and not _grads_finite(model):
                raise _NonFinite("gradient")  # skip-batch / lr-backoff: drop it unapplied
            if cfg.clip_norm is not None:
                norm = clip_grad_norm_(model.parameters(), cfg.clip_norm)
                self._grad_max = torch.maximum(self._grad_max, norm.detach())
            elif cfg.log_grad_norm:
                norm = torch.linalg.vector_norm(
                    torch.stack(
                        [
                            torch.linalg.vector_norm(p.grad)
                            for p in model.parameters()
                            if p.grad is not None
                        ]
                    )
                )
                self._grad_max = torch.maximum(self._grad_max, norm)
            if cfg.clip_value is not None:
                clip_grad_value_(model.parameters(), cfg.clip_value)
            return cost

        try:
            # torch's stub types the closure as returning float; ours returns the loss tensor
            loss: Any = opt.step(closure)  # type: ignore[arg-type]
        except _NonFinite:
            return self._non_finite(x)
        assert loss is not None, "optimizer.step(closure) must return the closure's loss"
        if self.schedule is not None and self.schedule.interval == "step":
            self.schedule.step()
        if self.averager is not None:
            self.averager.update(self.iteration + 1)
        loss = loss.detach()
        self._loss_sum += loss
        self._loss_count += 1
        return loss

    def _sgd_fusable(self) -> bool:
        """Whether plain SGD's update may be folded into the fast backward pass.

        Only when nothing between the backward pass and the update looks at ``.grad``:
        no clipping, no gradient-norm logging, no finiteness check of the gradients
        (``on_nan`` other than stop), and no step callbacks but descentlab's own.
        """
        cfg = self.config
        return (
            cfg.clip_norm is None
            and cfg.clip_value is None
            and not cfg.log_grad_norm
            and cfg.on_nan == "stop"
            and all(type(cb).__module__ == Callback.__module__ for cb in self._step_callbacks)
        )

    @property
    def _check_finite(self) -> bool:
        # A per-step host sync is free on the CPU; on a GPU the check moves to validation.
        return self.device.type == "cpu" or self.config.on_nan != "stop"

    MAX_BAD_STREAK = 10  # this many dropped minibatches in a row end the run

    def _non_finite(self, x: torch.Tensor) -> torch.Tensor:
        """A minibatch gave a non-finite loss or gradient; nothing was applied yet.

        ``--on-nan stop`` raises :class:`DivergenceError` naming the iteration, the
        learning rate and the tensor.  ``skip-batch`` drops the minibatch;
        ``lr-backoff`` drops it and halves every learning rate (schedules included).
        A non-finite *parameter* means an earlier step was already applied, which no
        mode can undo, so it always stops; so do ``MAX_BAD_STREAK`` drops in a row.
        """
        cfg = self.config
        lr = float(self.optimizer.param_groups[0]["lr"])
        bad = _non_finite_tensor(self.model)
        what = f"{bad[1]} is non-finite" if bad is not None else "the loss is non-finite"
        where = f"iteration {self.iteration + 2} (epoch {self.epoch + 1}, lr {lr:.3g})"
        if cfg.on_nan == "stop" or (bad is not None and bad[0] == "parameter"):
            hint = "lower --lr, add --clip-norm, or use --on-nan skip-batch or lr-backoff"
            if cfg.on_nan != "stop":
                hint = (
                    f"--on-nan {cfg.on_nan} cannot undo a step already applied; "
                    "lower --lr or add --clip-norm"
                )
            raise DivergenceError(
                f"training diverged at {where}: {what}; {self._last_good_checkpoint()}",
                hint=hint,
            )
        consecutive = self._last_bad_iteration == self.iteration
        self._bad_streak = self._bad_streak + 1 if consecutive else 1
        self._last_bad_iteration = self.iteration + 1
        self.skipped_batches += 1
        if self._bad_streak >= self.MAX_BAD_STREAK:
            raise DivergenceError(
                f"{self._bad_streak} minibatches in a row gave non-finite values, the last at "
                f"{where}: {what}; {self._last_good_checkpoint()}",
                hint="lower --lr, add --clip-norm, or check the data",
            )
        action = "skipped it"
        if cfg.on_nan == "lr-backoff":
            for group in self.optimizer.param_groups:
                group["lr"] *= 0.5
            if self.schedule is not None and hasattr(self.schedule, "base_lrs"):
                self.schedule.base_lrs = [base * 0.5 for base in self.schedule.base_lrs]
            action = f"skipped it and halved the learning rate to {lr * 0.5:.3g}"
        if not cfg.quiet and self.skipped_batches <= 5:
            more = " (further skips are not reported)" if self.skipped_batches == 5 else ""
            print(f"descentlab: warning: at {where} {what}; {action}{more}", file=sys.stderr)
        self.optimizer.zero_grad(set_to_none=True)
        return torch.full((), math.nan, device=x.device)

    def _step_epoch_schedule(self) -> None:
        if getattr(self.schedule, "needs_metric", False):
            if self.history:
                self.schedule.step(self.history[-1]["valid_error"])  # type: ignore[union-attr]
        else:
            self.schedule.step()  # type: ignore[union-attr]

    # ============================================================ validation
    def _averaged(self) -> contextlib.AbstractContextManager[Any]:
        if self.averager is not None:
            return self.averager.applied(self.model)
        return contextlib.nullcontext()

    def _validate(self, epoch: int) -> dict[str, Any]:
        cfg = self.config
        train_nll = (self._loss_sum / max(self._loss_count, 1)).item()
        grad_max = self._grad_max.item() if (cfg.clip_norm or cfg.log_grad_norm) else None
        self._loss_sum.zero_()
        self._loss_count = 0
        self._grad_max.zero_()
        if not math.isfinite(train_nll) and cfg.on_nan == "stop":
            where = _first_non_finite(self.model)
            raise DivergenceError(
                f"non-finite training loss before iteration {self.iteration + 1}"
                f"{'; ' + where if where else ''}",
                hint="lower --lr or add --clip-norm",
            )
        with self._averaged():
            valid = self._evaluate(self.data.valid)
            monitored = {
                "valid_error": valid.error,
                "valid_nll": valid.nll,
                "valid_f1": 1.0 - valid.f1,
            }[cfg.monitor]
            improved = self.stopper.update(self.iteration, monitored)
            test: Evaluation | None = None
            if improved:
                # The test set is scored only at a new best validation point.
                test = self._evaluate(self.data.test)
                self.best_state = {
                    k: v.detach().clone() for k, v in self.model.state_dict().items()
                }
                self.best = {
                    "epoch": epoch,
                    "iteration": self.iteration,
                    "valid_error": valid.error,
                    "valid_nll": valid.nll,
                    "valid_f1": valid.f1,
                    "test_error": test.error,
                    "test_nll": test.nll,
                    "test_f1": test.f1,
                    "test_predictions": test.predictions,
                }
        seconds = self.elapsed + time.perf_counter() - self._t0
        if (
            test is not None
            and cfg.target_error is not None
            and self._target_reached is None
            and test.error <= cfg.target_error
        ):
            self._target_reached = {"iteration": self.iteration, "epoch": epoch, "seconds": seconds}
        row = {
            "epoch": epoch,
            "iteration": self.iteration,
            "examples_seen": (self.iteration + 1) * cfg.batch_size,
            "train_nll": train_nll,
            "valid_error": valid.error,
            "valid_nll": valid.nll,
            "valid_f1": valid.f1,
            "best_valid_error": self.best.get("valid_error", valid.error),
            "test_error": test.error if test is not None else None,
            "test_error_at_best": self.best.get("test_error"),
            "improved": improved,
            "lr": float(self.optimizer.param_groups[0]["lr"]),
            "seconds": seconds,
            "grad_norm": grad_max,
        }
        self.history.append(row)
        self._emit("on_validation", row)
        return row

    def _evaluate(self, split: Any) -> Evaluation:
        if self.config.eval_style == "tutorial":
            return evaluate_tutorial(
                self.model,
                split,
                n_classes=self.data.n_classes,
                batch_size=self.config.batch_size,
                eval_batch_size=self.config.eval_batch_size,
            )
        return evaluate(
            self.model, split, n_classes=self.data.n_classes, batch_size=self.config.eval_batch_size
        )

    # ================================================================ results
    def _finish(self) -> FitResult:
        cfg = self.config
        if not self.history:  # stopped before any validation: validate once so there is a result
            self._validate(max(self.epoch, 1))
        train_seconds = self.elapsed + time.perf_counter() - self._t0
        if cfg.restore_best and self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        epochs_run = self.epoch
        summary = {
            "dataset": self.data.name,
            "model": cfg.model,
            "optimizer": cfg.optimizer,
            "lr": cfg.lr,
            "batch_size": cfg.batch_size,
            "best_valid_error": self.best.get("valid_error"),
            "test_error": self.best.get("test_error"),
            "best_valid_nll": self.best.get("valid_nll"),
            "test_nll": self.best.get("test_nll"),
            "test_f1": self.best.get("test_f1"),
            "best_epoch": self.best.get("epoch"),
            "best_iteration": self.best.get("iteration"),
            "epochs_run": epochs_run,
            "iterations": self.iteration + 1,
            "stopped_because": self.stopped_because,
            "train_seconds": train_seconds,
            "seconds_per_epoch": train_seconds / max(epochs_run, 1),
            "seconds_to_target": (self._target_reached or {}).get("seconds"),
            "iterations_to_target": (self._target_reached or {}).get("iteration"),
            "target_error": cfg.target_error,
            "n_train": int(self.data.train.y.shape[0]),
            "n_valid": int(self.data.valid.y.shape[0]),
            "n_test": int(self.data.test.y.shape[0]),
            "n_parameters": sum(p.numel() for p in self.model.parameters()),
            "seed": cfg.seed,
            "device": str(self.device),
            "descentlab_version": __version__,
            "torch_version": torch.__version__,
        }
        return FitResult(
            summary=summary,
            history=self.history,
            model=self.model,
            best_state=self.best_state,
            config=cfg,
            run_dir=self.run_dir,
            test_predictions=self.best.get("test_predictions"),
            data=self.data,
        )

    # ============================================================ checkpoints
    # Set on instances when used; class-level defaults keep __init__ (and the loop) as is.
    _signal: int | None = None  # SIGINT/SIGTERM received, handled at the end of the step
    _checkpoint_due: bool = False  # a callback asked for a checkpoint at the end of the step
    _last_checkpoint: int | None = None  # iterations done at the newest checkpoint
    skipped_batches: int = 0  # minibatches dropped by --on-nan skip-batch / lr-backoff
    _bad_streak: int = 0  # consecutive dropped minibatches
    _last_bad_iteration: int = -2  # 0-based iteration of the last dropped minibatch

    def state_dict(self) -> dict[str, Any]:
        """Everything a resume needs to continue bit-identically.

        Model, optimizer, schedule, averaging and early-stopping state; the counters;
        every random generator (torch, CUDA, numpy, python, the shuffling generator
        and its state at the start of the epoch, from which ``Batches.iter_from``
        replays the epoch's permutation); the best point so far, the running loss
        and gradient-norm accumulators of the current validation interval, the
        history and the fault counters.  Only tensors and JSON values: it is
        written with safetensors + JSON (:mod:`descentlab.train.checkpoint`).
        """
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict() if self.schedule is not None else None,
            "averager": self.averager.state_dict() if self.averager is not None else None,
            "stopper": self.stopper.state_dict(),
            "counters": {
                "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch,
                "iteration": self.iteration,
            },
            "stopped_because": self.stopped_because,
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "numpy": _numpy_rng_state(),
                "python": _python_rng_state(),
                "shuffle_epoch_start": self._epoch_rng_state,
                "shuffle": self.generator.get_state(),
            },
            "best": dict(self.best),
            "best_state": self.best_state,
            "accumulators": {
                "loss_sum": self._loss_sum,
                "loss_count": self._loss_count,
                "grad_max": self._grad_max,
            },
            "faults": {
                "skipped_batches": self.skipped_batches,
                "bad_streak": self._bad_streak,
                "last_bad_iteration": self._last_bad_iteration,
            },
            "history": self.history,
            "elapsed": self.elapsed + time.perf_counter() - self._t0,
            "target_reached": self._target_reached,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (the pieces must have the same shapes)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.schedule is not None and state["schedule"] is not None:
            self.schedule.load_state_dict(state["schedule"])
        if self.averager is not None and state["averager"] is not None:
            self.averager.load_state_dict(state["averager"])
        self.stopper.load_state_dict(state["stopper"])
        counters = state["counters"]
        self.epoch = int(counters["epoch"])
        self.batch_in_epoch = int(counters["batch_in_epoch"])
        self.iteration = int(counters["iteration"])
        if not 0 <= self.batch_in_epoch <= self.batches_per_epoch:
            raise ValueError(
                f"batch {self.batch_in_epoch} of an epoch of {self.batches_per_epoch} batches"
            )
        # A run that stopped early must not train on when its last checkpoint is resumed.
        self.stopped_because = state["stopped_because"]
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        _set_numpy_rng_state(rng["numpy"])
        _set_python_rng_state(rng["python"])
        self._epoch_rng_state = rng["shuffle_epoch_start"]
        self.generator.set_state(rng["shuffle"])
        self.best = dict(state["best"])
        self.best_state = (
            {k: v.to(self.device) for k, v in state["best_state"].items()}
            if state["best_state"] is not None
            else None
        )
        acc = state["accumulators"]
        self._loss_sum = acc["loss_sum"].to(self.device)
        self._loss_count = int(acc["loss_count"])
        self._grad_max = acc["grad_max"].to(self.device)
        faults = state["faults"]
        self.skipped_batches = int(faults["skipped_batches"])
        self._bad_streak = int(faults["bad_streak"])
        self._last_bad_iteration = int(faults["last_bad_iteration"])
        self.history = list(state["history"])
        self.elapsed = float(state["elapsed"])
        self._target_reached = state["target_reached"]
        if self.iteration >= 0:
            # torch warns when a scheduler steps before the optimizer did *in this
            # process*; after a resume at an epoch's end that is the right order.
            self.optimizer._opt_called = True  # type: ignore[attr-defined]

    def checkpoint_meta(self) -> dict[str, Any]:
        """What the checkpoint is of: checked on resume, shown in messages."""
        return {
            "model": self.config.model,
            "optimizer": self.config.optimizer,
            "parameter_shapes": {k: list(v.shape) for k, v in self.model.state_dict().items()},
            "dataset": self.data.name,
            "batches_per_epoch": self.batches_per_epoch,
            "iteration": self.iteration + 1,
            "epoch": self.epoch,
            "descentlab_version": __version__,
            "torch_version": torch.__version__,
        }

    def request_checkpoint(self) -> None:
        """Checkpoint at the end of the current step, after its validation and stopping check.

        Callbacks call this from ``on_step`` instead of :meth:`save_checkpoint`: in
        ``on_step`` the step's validation has not run yet, so a checkpoint written
        there would make a resumed run skip that validation (and its early-stopping
        update).  The request rides on the loop's once-per-step ``_interrupt`` check.
        """
        self._checkpoint_due = True
        if self._interrupt is None:
            self._interrupt = 0  # not a signal number: "work to do at the end of this step"

    def save_checkpoint(self) -> Path | None:
        """Write a checkpoint into ``run_dir/checkpoint`` (atomic; keeps the previous one).

        Call it where the state is consistent (between steps, after validation).
        A diverged state is never written: non-finite parameters raise
        :class:`DivergenceError` and the last good checkpoint stays the newest.
        """
        self._checkpoint_due = False
        if self.run_dir is None:
            return None
        bad = _non_finite_tensor(self.model, grads=False)
        if bad is not None:
            raise DivergenceError(
                f"training diverged by iteration {self.iteration + 1}: {bad[1]} is non-finite; "
                f"{self._last_good_checkpoint()}",
                hint="lower --lr or add --clip-norm",
            )
        path = save_checkpoint(
            self.run_dir / "checkpoint", self.state_dict(), self.checkpoint_meta()
        )
        self._last_checkpoint = self.iteration + 1
        self._emit("on_checkpoint", path)
        return path

    def restore_checkpoint(self, *, previous: bool = False) -> None:
        """Load the newest checkpoint of ``run_dir`` (``previous``: the one before it).

        Refuses a checkpoint of another model, optimizer, dataset or batch size,
        and reports a damaged or mismatched one as :class:`CheckpointError`.
        """
        from descentlab.train.checkpoint import promote_previous

        if self.run_dir is None:
            raise CheckpointError("no run directory to resume from", hint="pass out=RUN_DIR")
        folder = self.run_dir / "checkpoint"
        if not folder.is_dir():
            raise CheckpointError(
                f"{self.run_dir} has no checkpoint (the run stopped before its first one)",
                hint=f"start it again: descentlab train --config {self.run_dir / 'config.toml'}"
                " --out NEW_DIR",
            )
        state, meta = load_checkpoint(folder, previous=previous)
        mine = self.checkpoint_meta()
        for key in ("model", "optimizer", "parameter_shapes", "dataset", "batches_per_epoch"):
            if meta.get(key) != mine[key]:
                theirs, ours = meta.get(key), mine[key]
                if key == "parameter_shapes":
                    theirs, ours = _shape_difference(theirs, ours)
                raise CheckpointError(
                    f"the checkpoint in {self.run_dir} is of a different "
                    f"{key.replace('_', ' ')} ({theirs} in the checkpoint, {ours} in this run)",
                    hint="resume with the run's own config.toml, or start a new run",
                )
        try:
            self.load_state_dict(state)
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
            detail = " ".join(str(exc).split())[:200]
            raise CheckpointError(
                f"the checkpoint in {self.run_dir} does not fit this run "
                f"({type(exc).__name__}: {detail})",
                hint="resume with the descentlab version and config that wrote it",
            ) from None
        if previous:
            # Training continues from the previous generation: make it the newest, so the
            # next checkpoint replaces the damaged one and never the one resumed from.
            promote_previous(folder)
        self._last_checkpoint = self.iteration + 1

    def _last_good_checkpoint(self) -> str:
        if self.run_dir is None:
            return "no run directory, so no checkpoint"
        if self._last_checkpoint is None:
            return "no checkpoint had been written yet"
        return (
            f"the last good checkpoint (iteration {self._last_checkpoint}) is in "
            f"{self.run_dir / 'checkpoint'}"
        )

    # ============================================================== plumbing
    def _emit(self, event: str, *args: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, event)(self, *args)

    @contextlib.contextmanager
    def _signals_caught(self) -> Iterator[None]:
        """SIGINT/SIGTERM: finish the current step, checkpoint, stop (exit 130 / 143).

        The handler only records the signal; the loop looks at ``_interrupt`` once
        per step, where the state is consistent, and :meth:`_handle_interrupt` does
        the rest.  A second signal while the first is pending (a stuck write, an
        impatient user) stops at once with KeyboardInterrupt: every checkpoint write
        is atomic, so the previous checkpoint is still intact.
        """
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        self._signal = None

        def handler(signum: int, frame: Any) -> None:
            if self._signal is not None:
                raise KeyboardInterrupt
            self._signal = signum
            self._interrupt = signum

        old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    def _handle_interrupt(self) -> None:
        """End of a step with something pending: a requested checkpoint and/or a signal."""
        # After the last minibatch of an epoch, batch_in_epoch == batches_per_epoch: a resume
        # replays the (empty) rest of the epoch and then does the epoch-end work.
        # Reset first, read the signal once: a signal arriving after this read sets
        # _interrupt again and is handled at the end of the next step.
        self._interrupt = None
        signum = self._signal
        if signum is not None or self._checkpoint_due:
            self.save_checkpoint()
        if signum is not None:
            raise TrainingInterrupted(signum, self.run_dir)


def _non_finite_tensor(model: nn.Module, *, grads: bool = True) -> tuple[str, str] | None:
    """``(kind, description)`` of the first non-finite parameter (or gradient), else None."""
    for name, p in model.named_parameters():
        if not bool(torch.isfinite(p).all()):
            return "parameter", f"parameter {name}"
        if grads and p.grad is not None and not bool(torch.isfinite(p.grad).all()):
            return "gradient", f"the gradient of {name}"
    return None


def _first_non_finite(model: nn.Module) -> str:
    bad = _non_finite_tensor(model)
    return f"{bad[1]} is non-finite" if bad is not None else ""


def _grads_finite(model: nn.Module) -> bool:
    """Whether every gradient is finite (one host sync for all of them)."""
    flags = [torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None]
    return not flags or bool(torch.stack(flags).all())


def _shape_difference(theirs: Any, ours: dict[str, Any]) -> tuple[str, str]:
    """The first parameter whose shape differs, as two short strings."""
    theirs = theirs if isinstance(theirs, dict) else {}
    for name in sorted(set(theirs) | set(ours)):
        if theirs.get(name) != ours.get(name):
            return f"{name} {theirs.get(name)}", f"{name} {ours.get(name)}"
    return "?", "?"


def _numpy_rng_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "name": name,
        "keys": torch.from_numpy(np.asarray(keys).astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached": float(cached),
    }


def _set_numpy_rng_state(state: dict[str, Any]) -> None:
    np.random.set_state(
        (
            state["name"],
            state["keys"].numpy().astype(np.uint32),
            state["pos"],
            state["has_gauss"],
            state["cached"],
        )
    )


def _python_rng_state() -> list[Any]:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _set_python_rng_state(state: list[Any]) -> None:
    random.setstate((state[0], tuple(state[1]), state[2]))


__all__ = ["DataError", "FitResult", "Trainer", "TrainingInterrupted", "resolve_device"]
