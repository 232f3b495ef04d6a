"""The loop of :mod:`descentlab.train.loop`, stepping every active member of a group at once.

Every member *is* a :class:`~descentlab.train.Trainer`, built exactly as a separate run
builds it (same seeding, so the same initial parameters; its own shuffling generator,
so its own minibatch order; its own schedule, early-stopping rule, callbacks and run
directory).  The group replaces the training step, and the scoring of the members
validated at the same iteration: one batched forward per split (:mod:`.scoring`;
``eval_style`` "tutorial" members are scored by the trainer's own
:func:`~descentlab.train.loop.validate`).  What is done with the scores is the trainer's
own :func:`~descentlab.train.loop.judge_validation` and
:func:`~descentlab.train.loop.record_validation`, and the end of a run its own
:func:`~descentlab.train.loop.finish`, so ``metrics.jsonl``, ``summary.json``,
``model.safetensors`` and ``test_predictions.npy`` are those of a separate run.

A member leaves the group when it stops (early stopping, ``max_epochs``) or fails (a
non-finite cost: the :class:`~descentlab.errors.DivergenceError` its separate run
raises, with the same message); its rows are removed from the stacked tensors
(``index_select``) and it costs no more compute.  The others go on.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from descentlab.data import Dataset
from descentlab.errors import ConfigError, DescentlabError
from descentlab.fsio import WriterLock
from descentlab.optim.schedules import Constant
from descentlab.train.build import load_data
from descentlab.train.callbacks import Callback, MetricsFiles, RunDirectory
from descentlab.train.config import TrainConfig
from descentlab.train.evaluate import Evaluation
from descentlab.train.fused.group import FusedGroup
from descentlab.train.fused.rules import fuse_problem, group_key
from descentlab.train.fused.scoring import score_members
from descentlab.train.fused.updates import algorithm_key
from descentlab.train.interrupt import TrainingInterrupted
from descentlab.train.loop import (
    finish,
    judge_validation,
    record_validation,
    scoring_threads,
    take_training_cost,
    validate,
)
from descentlab.train.records import FitResult
from descentlab.train.run_dir import (
    check_run_dir,
    prepare_run_dir,
    unfinished_without_checkpoint,
)
from descentlab.train.trainer import Trainer

__all__ = ["Outcome", "fit_fused", "fit_group"]

#: A member's result: what its separate run returns, or the error it raises.
Outcome = FitResult | DescentlabError
#: The callbacks of a member with this run directory (None: no files).
CallbackFactory = Callable[[Path | None], list[Callback]]

_DATA_OPTIONS = ("dataset", "data_dir", "offline", "standardize", "label_column", "subset")


def _member_callbacks(run_dir: Path | None) -> list[Callback]:
    return [MetricsFiles(run_dir), RunDirectory(run_dir)] if run_dir is not None else []


def _member_data(configs: Sequence[TrainConfig]) -> list[Dataset]:
    """Each member's dataset, loaded once per distinct data option (equal ones shared)."""
    loaded: dict[tuple[Any, ...], Dataset] = {}
    out = []
    for cfg in configs:
        key = (*(getattr(cfg, n) for n in _DATA_OPTIONS), cfg.seed, cfg.pixel_scale)
        if key not in loaded:
            data = load_data(cfg)
            same = next((d for d in loaded.values() if _same_data(d, data)), None)
            loaded[key] = same if same is not None else data
        out.append(loaded[key])
    sizes = {d.train.y.shape[0] for d in out}
    if len(sizes) != 1:
        raise ConfigError(
            f"the members' training sets differ in size ({sorted(sizes)})",
            hint="fuse only members whose data options give equal-sized splits",
        )
    return out


def _same_data(a: Dataset, b: Dataset) -> bool:
    pairs = ((a.train, b.train), (a.valid, b.valid), (a.test, b.test))
    return all(
        u.x.shape == v.x.shape and torch.equal(u.x, v.x) and torch.equal(u.y, v.y) for u, v in pairs
    )


def _same_split(a: Any, b: Any) -> bool:
    """The same examples (the same tensors, or equal ones: each trainer may hold a copy)."""
    if a.x.data_ptr() == b.x.data_ptr() and a.y.data_ptr() == b.y.data_ptr():
        return True
    return a.x.shape == b.x.shape and torch.equal(a.y, b.y) and torch.equal(a.x, b.x)


def _scoring_key(t: Trainer) -> tuple[Any, ...]:
    """Members with equal keys are scored together: the same validation and test tensors."""
    valid, test = t.data.valid, t.data.test
    splits = (valid.x.data_ptr(), valid.y.data_ptr(), test.x.data_ptr(), test.y.data_ptr())
    return (*splits, t.config.threads)


def _check_group(configs: Sequence[TrainConfig]) -> None:
    if not configs:
        raise ConfigError("a fused group needs at least one configuration")
    for cfg in configs:
        why = fuse_problem(cfg)
        if why:
            raise ConfigError(f"cannot fuse a run with {why}", hint="train it on its own")
    if len({group_key(cfg) for cfg in configs}) != 1:
        raise ConfigError(
            "the configurations differ in more than the options a member may set alone "
            "(lr, optimizer hyperparameters, penalties, schedule, seed, stopping)",
            hint="group them with descentlab.train.fused.group_key",
        )


def fit_group(
    configs: Sequence[TrainConfig],
    *,
    data: Dataset | None = None,
    out: Sequence[str | Path | None] | None = None,
    callbacks: CallbackFactory = _member_callbacks,
    checkpoint_seconds: float | None = None,
    resume: bool | Sequence[bool] = False,
) -> list[Outcome]:
    """Train ``configs`` as one fused group; each member's :class:`FitResult` or error.

    ``out`` gives each member's run directory (default: each config's ``out``; None
    writes nothing); ``callbacks(run_dir)`` each member's callbacks.  ``data`` is
    shared by all members; without it each member gets the data its config names
    (loaded once per distinct data option: on datasets split by seed, members with
    other seeds train on other splits, as their separate runs do).  A member that
    fails (diverges) or is interrupted gets the error its separate run would raise.

    ``checkpoint_seconds``: at epoch ends, at most this often, and when interrupted
    (SIGINT/SIGTERM), every member in the group writes its own checkpoint into its run
    directory (its parameters and its optimizer state in the optimizer's own schema), so
    ``fit(..., resume=True)`` continues each member as a separate run, exactly.

    ``resume`` (one flag, or one per member): continue each such member from the
    checkpoint in its run directory, as ``fit(..., resume=True)`` would, but still as one
    group.  The members must stand at the same point of training (the same iteration
    and epoch: a group interrupted together does), else :class:`ConfigError`.
    """
    _check_group(configs)
    dirs = list(out) if out is not None else [cfg.out for cfg in configs]
    flags = [resume] * len(configs) if isinstance(resume, bool) else list(resume)
    if isinstance(resume, str) or not all(isinstance(f, bool) for f in flags):
        raise ConfigError(f"resume must be True, False or one of them per member, not {resume!r}")
    if len(dirs) != len(configs) or len(flags) != len(configs):
        raise ConfigError(
            f"{len(configs)} configurations but {len(dirs)} run directories "
            f"and {len(flags)} resume flags"
        )
    datasets = [data] * len(configs) if data is not None else _member_data(configs)
    trainers = []
    # One writer per run directory, as for a separate run (descentlab.fsio.WriterLock).
    with contextlib.ExitStack() as locks:
        for cfg, folder, shared, again in zip(configs, dirs, datasets, flags):
            if again and folder and unfinished_without_checkpoint(Path(folder)):
                again = False  # stopped before its first checkpoint: start it over
            run_dir = check_run_dir(folder, resume=again) if folder else None
            cbs = callbacks(run_dir)
            cbs.sort(key=lambda cb: not getattr(cb, "fills_rows", False))
            trainer = Trainer(cfg, data=shared, callbacks=cbs, run_dir=run_dir)
            if run_dir is not None:
                prepare_run_dir(run_dir, resume=again)
                locks.enter_context(WriterLock(run_dir, "run"))
            if again:
                trainer.restore_checkpoint()
            trainers.append(trainer)
        _check_same_point(trainers)
        return _FusedLoop(trainers, checkpoint_seconds).run()


def _check_same_point(trainers: Sequence[Trainer]) -> None:
    """The members step together: each must resume where the others do."""
    points = {
        (
            t.progress.counters.iteration,
            t.progress.counters.epoch,
            t.progress.counters.batch_in_epoch,
        )
        for t in trainers
    }
    if len(points) > 1:
        described = ", ".join(f"iteration {i} (epoch {e}, batch {b})" for i, e, b in sorted(points))
        raise ConfigError(
            f"the members of a fused group stand at different points of training: {described}",
            hint="resume them separately, or group members checkpointed together",
        )


def fit_fused(
    configs: Sequence[TrainConfig],
    *,
    data: Dataset | None = None,
    out: Sequence[str | Path | None] | None = None,
) -> list[FitResult]:
    """:func:`fit_group`, raising the first member's error (after every member ended)."""
    outcomes = fit_group(configs, data=data, out=out)
    for outcome in outcomes:
        if isinstance(outcome, DescentlabError):
            raise outcome
    return [o for o in outcomes if isinstance(o, FitResult)]


class _FusedLoop:
    """The loop of :mod:`descentlab.train.loop` for every member still in the group."""

    def __init__(self, trainers: list[Trainer], checkpoint_seconds: float | None = None) -> None:
        self.trainers = trainers
        self.checkpoint_seconds = checkpoint_seconds
        self.last_checkpoint = time.monotonic()
        # Member index of each stacked row: each optimizer algorithm's members adjacent,
        # so that its update runs on one block of rows (MixedUpdate).
        self.active = sorted(
            range(len(trainers)), key=lambda m: algorithm_key(trainers[m].optimizer)
        )
        self.group = FusedGroup([trainers[m] for m in self.active])
        self.outcomes: list[Outcome | None] = [None] * len(trainers)
        first = trainers[0]
        # Distinct training sets, stacked (M, N, ...) when members train on different ones.
        sources: list[Any] = []
        self.source = []  # which of them each member trains on
        for t in trainers:
            same = next((i for i, s in enumerate(sources) if _same_split(s, t.data.train)), None)
            if same is None:
                sources.append(t.data.train)
                same = len(sources) - 1
            self.source.append(same)
        self.train = first.data.train
        self.train_x = torch.stack([s.x for s in sources]) if len(sources) > 1 else None
        self.shared = False  # all members on one minibatch this epoch (set per epoch)
        self.order_rows = torch.empty(0)
        self.train_y = torch.stack([s.y for s in sources]) if len(sources) > 1 else None
        self.batch_size = first.config.batch_size
        self.n_batches = first.batches_per_epoch
        self.device = first.device
        # The separate run checks every step's cost on the CPU, at validation on a GPU.
        self.check_each_step = self.device.type == "cpu"
        self.scheduled = any(not isinstance(t.schedule, Constant) for t in trainers)
        # The training cost since each member's last validation (a resumed one's from its
        # checkpoint).
        self.loss_sums = torch.tensor(
            [float(t.progress.interval.loss_sum) for t in trainers],
            dtype=torch.float64,
            device=self.device,
        )
        self.loss_counts = [t.progress.interval.loss_count for t in trainers]
        self._member_index: Tensor | None = None  # self.active as a tensor (_account)
        self.leaving: dict[int, Outcome | str] = {}  # row → error, or why it stopped

    def run(self) -> list[Outcome]:
        for t in self.trainers:
            # The group steps the optimizers' numbers, not the optimizers: tell their
            # schedules that the optimizer did step (torch warns otherwise).
            t.optimizer._opt_called = True  # type: ignore[attr-defined]
            t.progress.clock.start()
            t.emit("on_train_start")
            counters = t.progress.counters
            if counters.epoch == 0 and counters.batch_in_epoch == 0:  # not again on a resume
                for message in t.start_warnings:
                    t.warn(message)
        # Resumed from a checkpoint written after a member's last epoch (its process was
        # killed before the summary): it ends now, as its separate run would, no step more.
        for row, m in enumerate(self.active):
            progress, cfg = self.trainers[m].progress, self.trainers[m].config
            if progress.stopped_because is not None or progress.counters.epoch >= cfg.max_epochs:
                self.leaving[row] = progress.stopped_because or "max_epochs"
        self._leave(None)
        interrupts = self.trainers[0].interrupts
        epoch = self.trainers[0].progress.counters.epoch  # all equal (_check_same_point)
        with interrupts.caught():
            while self.active:
                epoch += 1
                self._epoch(epoch, interrupts)
        outcomes = [o for o in self.outcomes if o is not None]
        assert len(outcomes) == len(self.trainers)
        return outcomes

    # ------------------------------------------------------------------ an epoch
    def _epoch(self, epoch: int, interrupts: Any) -> None:
        """The epoch (its rest, after a resume mid-epoch) for every member still in."""
        orders = []
        start = self.trainers[self.active[0]].progress.counters.batch_in_epoch
        for m in self.active:
            t = self.trainers[m]
            if start == 0:
                t.epoch_rng_state = t.generator.get_state()
            else:  # resuming mid-epoch: replay the same permutation, skip what was done
                t.generator.set_state(t.epoch_rng_state)
            t.emit("on_epoch_start", epoch)
            order = t.batches.epoch_order()
            orders.append(order if order is not None else torch.arange(self.train.y.shape[0]))
        self.order_rows = torch.stack(orders).to(self.train.x.device)
        # Members with one seed draw one order: then they share each minibatch.
        self.shared = self.train_x is None and bool((self.order_rows == self.order_rows[:1]).all())
        b, last = self.batch_size, self.n_batches - 1
        for k in range(start, self.n_batches):
            self._step(self.order_rows[:, k * b : (k + 1) * b], epoch)
            due = []
            for row, m in enumerate(self.active):
                if row in self.leaving:
                    continue
                counters = self.trainers[m].progress.counters
                counters.iteration += 1
                counters.batch_in_epoch += 1
                if self.trainers[m].stopper.validation_due(
                    counters.iteration, counters.batch_in_epoch > last
                ):
                    due.append(row)
            if due:
                self._validate(due, epoch)
            for row, m in enumerate(self.active):
                t = self.trainers[m]
                if (
                    row not in self.leaving
                    and t.progress.counters.iteration >= t.stopper.stop_iteration
                ):
                    self.leaving[row] = "early_stopping"
            if interrupts.pending is not None:
                self._interrupted(interrupts)
            self._leave(epoch)
            if not self.active:
                return
        self._end_epoch(epoch)
        self._leave(epoch)
        every = self.checkpoint_seconds
        if every is not None and time.monotonic() - self.last_checkpoint >= every:
            self._checkpoint()
            self._leave(epoch)

    def _checkpoint(self) -> None:
        """Every member in the group writes its own checkpoint (as its separate run would)."""
        for row, m in enumerate(self.active):
            t = self.trainers[m]
            if t.run_dir is None or row in self.leaving:
                continue
            self.group.export_member(row, t)
            self._take_interval(m)
            try:
                t.save_checkpoint()
            except DescentlabError as exc:  # non-finite parameters are never written
                self.leaving[row] = exc
        self.last_checkpoint = time.monotonic()

    def _step(self, idx: Tensor, epoch: int) -> None:
        cost = self.group.forward(*self._minibatches(idx))
        if self.check_each_step:
            finite = torch.isfinite(cost.detach())
            if not bool(finite.all()):
                for row in (~finite).nonzero().flatten().tolist():
                    self._diverged(row, epoch)
        self.group.update(cost)
        self._account(cost.detach())
        if self.scheduled:
            lrs = []
            for m in self.active:
                schedule = self.trainers[m].schedule
                if getattr(schedule, "interval", None) == "step":
                    schedule.step()
                lrs.append(float(self.trainers[m].optimizer.param_groups[0]["lr"]))
            self.group.optim.set_lr(lrs)

    def _minibatches(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        """Row r's minibatch from its member's training set: (K, B, ...) and (K, B).

        (B, ...) and (B,) when every member draws the same one (:attr:`shared`).
        """
        k, b = idx.shape
        if self.shared:
            return self.train.x.index_select(0, idx[0]), self.train.y.index_select(0, idx[0])
        if self.train_x is None or self.train_y is None:
            x, y, flat = self.train.x, self.train.y, idx.reshape(-1)
        else:  # the stacked sets (M, N, ...) as one (M·N, ...) table
            n = self.train_x.shape[1]
            src = torch.tensor([self.source[m] for m in self.active], device=idx.device)
            flat = (idx + n * src[:, None]).reshape(-1)
            x, y = self.train_x.flatten(0, 1), self.train_y.flatten(0, 1)
        # index_select on a flat index: one gather, much cheaper than x[idx] with a 2-D idx
        xs = x.index_select(0, flat).view(k, b, *x.shape[1:])
        return xs, y.index_select(0, flat).view(k, b)

    def _account(self, cost: Tensor) -> None:
        # The member index of each row, as a tensor made once per set of members (a new
        # one each step would be a host-to-device copy, and a wait, per step on a GPU).
        if self._member_index is None:
            self._member_index = torch.tensor(self.active, device=cost.device)
        self.loss_sums.index_add_(0, self._member_index, cost.double())
        for m in self.active:
            self.loss_counts[m] += 1

    def _take_interval(self, m: int) -> None:
        """Hand member ``m``'s summed training cost to its trainer (as its own steps do)."""
        interval = self.trainers[m].progress.interval
        interval.loss_sum.fill_(float(self.loss_sums[m]))
        interval.loss_count = self.loss_counts[m]

    def _validate(self, rows: list[int], epoch: int) -> None:
        """Validate the members at ``rows``: scored together where they can be (batched)."""
        batches: dict[tuple[Any, ...], list[tuple[int, tuple[float, float]]]] = {}
        for row in rows:
            m = self.active[row]
            t = self.trainers[m]
            self.group.write_member(row, t)  # callbacks, best state, near ties read it
            self._take_interval(m)
            self.loss_sums[m] = 0.0
            self.loss_counts[m] = 0
            if t.config.eval_style == "tutorial":  # its own rule over minibatches
                self._validate_alone(row, t, epoch)
                continue
            try:
                interval = take_training_cost(t)
            except DescentlabError as exc:
                self.leaving[row] = exc
                continue
            batches.setdefault(_scoring_key(t), []).append((row, interval))
        for batch in batches.values():
            self._validate_batch(batch, epoch)

    def _validate_alone(self, row: int, t: Trainer, epoch: int) -> None:
        try:
            validate(t, epoch)
        except DescentlabError as exc:
            self.leaving[row] = exc

    def _validate_batch(self, batch: list[tuple[int, tuple[float, float]]], epoch: int) -> None:
        """Members sharing their validation and test sets: one batched scoring per split."""
        rows = [row for row, _ in batch]
        trainers = [self.trainers[self.active[row]] for row in rows]
        valids = self._score(rows, trainers, "valid")
        improved = [judge_validation(t, v) for t, v in zip(trainers, valids)]
        better = [i for i, up in enumerate(improved) if up]
        tests: list[Evaluation | None] = [None] * len(rows)
        if better:
            scored = self._score([rows[i] for i in better], [trainers[i] for i in better], "test")
            for i, scores in zip(better, scored):
                tests[i] = scores
        for (row, interval), t, valid, at_best in zip(batch, trainers, valids, tests):
            try:
                record_validation(t, epoch, interval, valid, at_best)
            except DescentlabError as exc:
                self.leaving[row] = exc

    def _score(self, rows: list[int], trainers: list[Trainer], split: str) -> list[Evaluation]:
        first = trainers[0]
        index = torch.tensor(rows, device=self.device)
        with scoring_threads(first):
            return score_members(
                [p.detach().index_select(0, index) for p in self.group.params],
                [t.model for t in trainers],
                getattr(first.data, split),
                n_classes=first.data.n_classes,
                batch_size=first.config.eval_batch_size,
                activation=self.group.activation,
            )

    def _diverged(self, row: int, epoch: int) -> None:
        """Member ``row``'s cost is not finite: what its own NaN policy does (on_nan stop)."""
        t = self.trainers[self.active[row]]
        self.group.write_member(row, t)  # before the update, as the separate run sees it
        counters = t.progress.counters
        try:
            t.train_step.nan_policy.handle(
                t.model, t.optimizer, t.schedule,
                iteration=counters.iteration + 1, epoch=counters.epoch + 1,
            )  # fmt: skip
        except DescentlabError as exc:
            self.leaving[row] = exc
            return
        raise AssertionError("a fused member's on_nan policy must stop it")

    def _interrupted(self, interrupts: Any) -> None:
        signum, _checkpoint_due = interrupts.take()
        if signum is None:
            return
        self._checkpoint()
        for row, m in enumerate(self.active):
            self.leaving.setdefault(row, TrainingInterrupted(signum, self.trainers[m].run_dir))

    def _end_epoch(self, epoch: int) -> None:
        """The end of an epoch for every member still in: schedules, stopping, events."""
        for row, m in enumerate(self.active):
            if row in self.leaving:
                continue
            t = self.trainers[m]
            t.progress.counters.epoch, t.progress.counters.batch_in_epoch = epoch, 0
            schedule = t.schedule
            if getattr(schedule, "interval", None) == "epoch" and self.scheduled:
                if getattr(schedule, "needs_metric", False):
                    if t.progress.history:
                        schedule.step(t.progress.history[-1].valid_error)
                else:
                    schedule.step()
            if t.stopper.should_stop_after_epoch():
                self.leaving[row] = "early_stopping"
            elif epoch >= t.config.max_epochs:
                self.leaving[row] = "max_epochs"
            else:
                t.emit("on_epoch_end", epoch)
        if self.scheduled and self.active:
            self.group.optim.set_lr(
                [float(self.trainers[m].optimizer.param_groups[0]["lr"]) for m in self.active]
            )

    def _leave(self, epoch: int | None) -> None:
        """Finish (or fail) the members in :attr:`leaving` and drop their rows.

        ``epoch``: the epoch they leave in (None: before any step of this process).
        """
        if not self.leaving:
            return
        for row, why in sorted(self.leaving.items()):
            m = self.active[row]
            if isinstance(why, DescentlabError):
                self.outcomes[m] = why
                continue
            t = self.trainers[m]
            self.group.write_member(row, t)
            assert isinstance(why, str)
            t.progress.stopped_because = why
            if epoch is not None:
                counters = t.progress.counters
                counters.epoch, counters.batch_in_epoch = epoch, 0
                t.emit("on_epoch_end", epoch)
            self._take_interval(m)
            result = finish(t)
            t.emit("on_train_end", result)
            self.outcomes[m] = result
        keep = [r for r in range(len(self.active)) if r not in self.leaving]
        self.active = [self.active[r] for r in keep]
        self._member_index = None
        if self.order_rows.numel():  # (none drawn yet before the first epoch)
            self.order_rows = self.order_rows[keep]
        self.leaving = {}
        if keep:
            self.group.keep(torch.tensor(keep, device=self.device))
