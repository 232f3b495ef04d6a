"""``Trainer``: one training run — its pieces, its progress, its checkpoints.

The trainer is thin.  It seeds the generators, has :func:`~descentlab.train.build.build`
make the pieces (data, model, objective, optimizer, schedule, averaging, early
stopping, fast path), holds the run's :class:`~descentlab.train.progress.Progress`
and the :class:`~descentlab.train.step.TrainStep`, and hands itself to
:mod:`descentlab.train.loop`, which trains.  What a resume must restore is
:meth:`Trainer.state_dict`; the data order comes from ``Batches`` with its own
generator, so the loop, data sharding and checkpointing stay separable (data-parallel
training can wrap each).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from descentlab._version import __version__
from descentlab.data import Dataset
from descentlab.errors import CheckpointError, DataError, DivergenceError
from descentlab.train.build import (
    OptimizerSpec,
    build,
    data_use_warnings,
    load_data,
    resolve_device,
    seed_everything,
)
from descentlab.train.callbacks import Callback, overrides
from descentlab.train.checkpoint import load_checkpoint, promote_previous, save_checkpoint
from descentlab.train.config import TrainConfig
from descentlab.train.distributed import GradientSync, World, barrier, setup
from descentlab.train.early_stopping import EarlyStopping
from descentlab.train.fast import DenseFastPath
from descentlab.train.interrupt import Interrupts, TrainingInterrupted
from descentlab.train.loop import fit as train_loop
from descentlab.train.loop import run_epoch
from descentlab.train.progress import Progress, load_rng_state, rng_state_dict
from descentlab.train.records import FitResult, ValidationRecord
from descentlab.train.step import GradientHook, NanPolicy, TrainStep, non_finite_tensor
from descentlab.train.threads import auto_threads

__all__ = [
    "DataError",
    "FitResult",
    "Trainer",
    "TrainingInterrupted",
    "load_data",
    "resolve_device",
]

# Checked on resume: a checkpoint of another run is refused.
_SAME_RUN_KEYS = ("model", "optimizer", "parameter_shapes", "dataset", "batches_per_epoch")


#: Inputs beyond this size make a divergence more likely the data's fault than the lr's.
LARGE_INPUT = 1e3


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
        optimizer: OptimizerSpec | None = None,
        callbacks: Sequence[Callback] = (),
        run_dir: str | Path | None = None,
        stopper: EarlyStopping | None = None,
    ) -> None:
        self.config = cfg = config
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        seed_everything(cfg.seed)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        # torchrun's environment (RANK, WORLD_SIZE, ...) makes this one rank of a
        # data-parallel job; otherwise world.size == 1 and nothing changes.
        device = resolve_device(cfg.device)
        self.world: World = setup(device, backend=cfg.backend, timeout=cfg.dist_timeout)
        if self.world.distributed and device.type == "cuda":
            device = torch.device("cuda", self.world.local_rank)
        parts = build(
            cfg,
            data=data,
            model=model,
            optimizer=optimizer,
            stopper=stopper,
            world=self.world,
            device=device,
        )
        # --threads, else the count the work and the free cores warrant (train/threads.py).
        self.thread_choice = auto_threads(
            sum(p.numel() for p in parts.model.parameters()), cfg.batch_size, cfg.threads
        )
        if parts.device.type == "cpu" or cfg.threads:
            torch.set_num_threads(self.thread_choice.count)
        self.device = parts.device
        self.data = parts.data
        self.generator = parts.generator
        self.batches = parts.batches
        self.batches_per_epoch = len(parts.batches)
        # told once the callbacks listen (on_train_start), not while building
        self.start_warnings = data_use_warnings(cfg, int(parts.data.train.y.shape[0]))
        self.model = parts.model
        self.objective = parts.objective
        self.optimizer = parts.optimizer
        self.schedule = parts.schedule
        self.averager = parts.averager
        self.stopper = parts.stopper
        self.callbacks: list[Callback] = list(callbacks)
        self.step_callbacks = [cb for cb in self.callbacks if overrides(cb, "on_step")]

        self.progress = Progress.start(self.device)
        self.epoch_rng_state = self.generator.get_state()  # the shuffle at this epoch's start
        self.interrupts = Interrupts()
        self.last_checkpoint: int | None = None  # iterations done at the newest checkpoint
        self.train_step = self._build_step(parts.fast_path, parts.fast_path_reason)

    def _build_step(self, fast_path: DenseFastPath | None, fast_path_reason: str) -> TrainStep:
        """The step of one minibatch, with the NaN policy and the gradient hook of the config."""
        cfg = self.config
        nan_policy = NanPolicy(
            cfg.on_nan,
            self.progress.faults,
            warn=self.warn,
            last_checkpoint=self.describe_last_checkpoint,
            input_scale=self.describe_input_scale,
        )
        gradient_hook = GradientHook(
            self.model,
            self.progress,
            check_finite=cfg.on_nan != "stop",
            clip_norm=cfg.clip_norm,
            clip_value=cfg.clip_value,
            log_norm=cfg.log_grad_norm,
        )
        return TrainStep(
            self.model,
            self.optimizer,
            self.objective,
            self.progress,
            nan_policy,
            gradient_hook,
            # A per-step host sync is free on the CPU; on a GPU the check moves to validation.
            check_finite=self.device.type == "cpu" or cfg.on_nan != "stop",
            fast_path=fast_path,
            fast_path_reason=fast_path_reason,
            schedule=self.schedule,
            averager=self.averager,
            gradient_sync=GradientSync(list(self.model.parameters()))
            if self.world.distributed
            else None,
        )

    # ================================================================ training
    def fit(self) -> FitResult:
        """Train until early stopping, ``max_epochs`` or an interruption."""
        return train_loop(self)

    def run_epoch(self) -> None:
        """Train the next epoch (no ``on_train_start``/``on_train_end`` events)."""
        run_epoch(self)

    def emit(self, event: str, *args: Any) -> None:
        """Call ``event`` on every callback."""
        for cb in self.callbacks:
            getattr(cb, event)(self, *args)

    def warn(self, message: str) -> None:
        """Report something that does not stop the run (the ``on_warning`` event)."""
        self.emit("on_warning", message)

    # ------------------------------------------------------ where the run stands
    @property
    def fast_path(self) -> DenseFastPath | None:
        """The hand-written backward pass in use, or None (see :attr:`fast_path_reason`)."""
        return self.train_step.fast_path

    @property
    def fast_path_reason(self) -> str:
        return self.train_step.fast_path_reason

    @property
    def _fuse_sgd(self) -> bool:  # kept for the tests written against the old trainer
        return self.train_step.fused_sgd

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.train_step(x, y)

    @property
    def epoch(self) -> int:
        """Epochs completed."""
        return self.progress.counters.epoch

    @property
    def iteration(self) -> int:
        """0-based index of the last minibatch done (the tutorial's ``iter``)."""
        return self.progress.counters.iteration

    @property
    def batch_in_epoch(self) -> int:
        return self.progress.counters.batch_in_epoch

    @property
    def history(self) -> list[ValidationRecord]:
        return self.progress.history

    @property
    def best(self) -> dict[str, Any]:
        """The best validation point so far as a dict (empty before the first)."""
        best = self.progress.best
        return best.state_dict() if best is not None else {}

    @property
    def best_state(self) -> dict[str, torch.Tensor] | None:
        return self.progress.best_state

    @property
    def stopped_because(self) -> str | None:
        return self.progress.stopped_because

    @property
    def skipped_batches(self) -> int:
        """Minibatches dropped by ``--on-nan skip-batch`` / ``lr-backoff``."""
        return self.progress.faults.skipped_batches

    # ============================================================ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything a resume needs to continue bit-identically.

        Model, optimizer, schedule, averaging and early-stopping state; the
        :class:`~descentlab.train.progress.Progress` (counters, best point, interval
        sums, faults, history, time); every random generator.  Only tensors and JSON
        values: it is written with safetensors + JSON (:mod:`descentlab.train.checkpoint`).
        """
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict() if self.schedule is not None else None,
            "averager": self.averager.state_dict() if self.averager is not None else None,
            "stopper": self.stopper.state_dict(),
            **self.progress.state_dict(),
            "rng": rng_state_dict(self.generator, self.epoch_rng_state),
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
        self.progress.load_state_dict(state, self.device)
        batch = self.progress.counters.batch_in_epoch
        if not 0 <= batch <= self.batches_per_epoch:
            raise ValueError(f"batch {batch} of an epoch of {self.batches_per_epoch} batches")
        self.epoch_rng_state = load_rng_state(state["rng"], self.generator)
        if self.progress.counters.iteration >= 0:
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
        update).  The request rides on the loop's once-per-step interrupt check.
        """
        self.interrupts.request_checkpoint()

    def save_checkpoint(self) -> Path | None:
        """Write a checkpoint into ``run_dir/checkpoint`` (atomic; keeps the previous one).

        Call it where the state is consistent (between steps, after validation).
        A diverged state is never written: non-finite parameters raise
        :class:`DivergenceError` and the last good checkpoint stays the newest.
        """
        self.interrupts.checkpoint_due = False
        if self.run_dir is None:
            return None
        bad = non_finite_tensor(self.model, grads=False)
        if bad is not None:
            raise DivergenceError(
                f"training diverged by iteration {self.iteration + 1}: {bad[1]} is non-finite; "
                f"{self.describe_last_checkpoint()}",
                hint="lower --lr or add --clip-norm",
            )
        if not self.world.is_main:  # the ranks hold the same state: rank 0 writes it
            self.last_checkpoint = self.iteration + 1
            return None
        path = save_checkpoint(
            self.run_dir / "checkpoint", self.state_dict(), self.checkpoint_meta()
        )
        self.last_checkpoint = self.iteration + 1
        self.emit("on_checkpoint", path)
        return path

    def restore_checkpoint(self, *, previous: bool = False) -> None:
        """Load the newest checkpoint of ``run_dir`` (``previous``: the one before it).

        Refuses a checkpoint of another model, optimizer, dataset or batch size,
        and reports a damaged or mismatched one as :class:`CheckpointError`.
        """
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
        self._check_same_run(meta)
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
            if self.world.distributed:
                barrier("loading the checkpoint")  # every rank has read it
            if self.world.is_main:
                promote_previous(folder)
        self.last_checkpoint = self.iteration + 1

    def _check_same_run(self, meta: dict[str, Any]) -> None:
        mine = self.checkpoint_meta()
        for key in _SAME_RUN_KEYS:
            if meta.get(key) != mine[key]:
                theirs, ours = meta.get(key), mine[key]
                if key == "parameter_shapes":
                    theirs, ours = _shape_difference(theirs, ours)
                raise CheckpointError(
                    f"the checkpoint in {self.run_dir} is of a different "
                    f"{key.replace('_', ' ')} ({theirs} in the checkpoint, {ours} in this run)",
                    hint="resume with the run's own config.toml, or start a new run",
                )

    def describe_input_scale(self) -> str | None:
        """For divergence messages: the training inputs, when far from unit scale."""
        x = self.data.train.x
        if not x.numel():
            return None
        bad = ~torch.isfinite(x)
        if bool(bad.any()):  # (the loaders refuse these; a Dataset built in Python may not)
            rows = int(bad.reshape(len(x), -1).any(1).sum())
            return (
                f"{int(bad.sum())} training input values, in {rows} of {len(x)} examples, "
                "are NaN or infinite: fix the data"
            )
        top = float(x.abs().max())
        if top <= LARGE_INPUT:
            return None
        return f"the training inputs reach |x| = {top:.3g}: scale them (--standardize)"

    def describe_last_checkpoint(self) -> str:
        """Where the last good checkpoint is, for divergence messages."""
        if self.run_dir is None:
            return "no run directory, so no checkpoint"
        if self.last_checkpoint is None:
            return "no checkpoint had been written yet"
        return (
            f"the last good checkpoint (iteration {self.last_checkpoint}) is in "
            f"{self.run_dir / 'checkpoint'}"
        )


def _shape_difference(theirs: Any, ours: dict[str, Any]) -> tuple[str, str]:
    """The first parameter whose shape differs, as two short strings."""
    theirs = theirs if isinstance(theirs, dict) else {}
    for name in sorted(set(theirs) | set(ours)):
        if theirs.get(name) != ours.get(name):
            return f"{name} {theirs.get(name)}", f"{name} {ours.get(name)}"
    return "?", "?"
