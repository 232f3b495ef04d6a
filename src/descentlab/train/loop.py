"""The training loop of the Deep Learning Tutorials, readable top to bottom.

    for each epoch (until early stopping or max_epochs):
        for each minibatch (x, y):
            cost = NLL(model(x), y) + λ1·Σ|W| + λ2·ΣW²       (objective.py: the closure)
            optimizer.step(closure)                          (step.py: θ ← θ + Δθ)
            every validation_frequency minibatches:
                score the validation set; on a new best, score the test set
                and keep the parameters (the test set is never used to choose)

The pieces come from :mod:`~descentlab.train.build`, the step is
:mod:`~descentlab.train.step`, the counters are :mod:`~descentlab.train.progress`.
Everything else — printing, files, checkpoints — hangs off the events of
:mod:`descentlab.train.callbacks`.  Each function takes the
:class:`~descentlab.train.Trainer` that holds the run.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch

from descentlab._version import __version__
from descentlab.data import Split
from descentlab.errors import DivergenceError
from descentlab.train.distributed import SINGLE, broadcast_buffers
from descentlab.train.evaluate import Evaluation, evaluate
from descentlab.train.interrupt import TrainingInterrupted
from descentlab.train.progress import BestPoint, TargetReached
from descentlab.train.records import FitResult, RunSummary, ValidationRecord
from descentlab.train.step import first_non_finite
from descentlab.train.threads import evaluation_threads
from descentlab.train.tutorial_eval import tutorial_scored

if TYPE_CHECKING:
    from descentlab.train.trainer import Trainer

__all__ = [
    "finish",
    "fit",
    "judge_validation",
    "record_validation",
    "run_epoch",
    "score_split",
    "scoring_threads",
    "summarize",
    "take_training_cost",
    "validate",
]


def fit(trainer: Trainer) -> FitResult:
    """Train until early stopping, ``max_epochs`` or an interruption."""
    progress = trainer.progress
    progress.clock.start()
    with trainer.interrupts.caught():
        trainer.emit("on_train_start")
        if progress.counters.epoch == 0 and progress.counters.batch_in_epoch == 0:
            for message in trainer.start_warnings:
                trainer.warn(message)
        max_epochs = trainer.config.max_epochs
        while progress.counters.epoch < max_epochs and progress.stopped_because is None:
            run_epoch(trainer)
    if progress.stopped_because is None:
        progress.stopped_because = "max_epochs"
    result = finish(trainer)
    trainer.emit("on_train_end", result)
    return result


def run_epoch(trainer: Trainer) -> None:
    """The next epoch (the rest of it, after a resume mid-epoch), with its validations."""
    progress, counters = trainer.progress, trainer.progress.counters
    epoch = counters.epoch + 1
    if counters.batch_in_epoch == 0:
        trainer.epoch_rng_state = trainer.generator.get_state()
    else:  # resuming mid-epoch: replay the same permutation, skip what was done
        trainer.generator.set_state(trainer.epoch_rng_state)
    trainer.emit("on_epoch_start", epoch)
    step, stopper, interrupts = trainer.train_step, trainer.stopper, trainer.interrupts
    step_callbacks = trainer.step_callbacks
    step.start_epoch(step_callbacks)
    last = trainer.batches_per_epoch - 1
    for x, y in trainer.batches.iter_from(counters.batch_in_epoch):
        loss = step(x, y)
        counters.iteration += 1
        counters.batch_in_epoch += 1
        for cb in step_callbacks:
            cb.on_step(trainer, counters.iteration, loss)
        if stopper.validation_due(counters.iteration, counters.batch_in_epoch > last):
            validate(trainer, epoch)
        if counters.iteration >= stopper.stop_iteration:
            progress.stopped_because = "early_stopping"
            break
        if progress.target is not None and trainer.config.stop_at_target:
            progress.stopped_because = "target_reached"
            break
        if interrupts.pending is not None:
            _handle_interrupt(trainer)
    else:
        counters.epoch, counters.batch_in_epoch = epoch, 0
        if trainer.schedule is not None and trainer.schedule.interval == "epoch":
            _step_epoch_schedule(trainer)
        if stopper.should_stop_after_epoch():
            progress.stopped_because = "early_stopping"
        trainer.emit("on_epoch_end", epoch)
        return
    # stopped inside the epoch: it still counts as run
    counters.epoch, counters.batch_in_epoch = epoch, 0
    trainer.emit("on_epoch_end", epoch)


def _step_epoch_schedule(trainer: Trainer) -> None:
    schedule, history = trainer.schedule, trainer.progress.history
    if getattr(schedule, "needs_metric", False):
        if history:
            schedule.step(history[-1].valid_error)
    else:
        schedule.step()


def _handle_interrupt(trainer: Trainer) -> None:
    """End of a step with something pending: a requested checkpoint and/or a signal."""
    # After the last minibatch of an epoch, batch_in_epoch == batches_per_epoch: a resume
    # replays the (empty) rest of the epoch and then does the epoch-end work.
    signum, checkpoint_due = trainer.interrupts.take()
    if signum is not None or checkpoint_due:
        trainer.save_checkpoint()
    if signum is not None:
        raise TrainingInterrupted(signum, trainer.run_dir)


# ================================================================ validation
def _averaged(trainer: Trainer) -> contextlib.AbstractContextManager[Any]:
    if trainer.averager is not None:
        return trainer.averager.applied(trainer.model)
    return contextlib.nullcontext()


@contextlib.contextmanager
def scoring_threads(trainer: Trainer) -> Iterator[None]:
    """Score on the free cores when the thread count was chosen, not given (threads.py)."""
    cfg, training = trainer.config, torch.get_num_threads()
    if cfg.threads or trainer.device.type != "cpu" or trainer.world.distributed:
        yield
        return
    n = evaluation_threads(training)
    if n != training:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n != training:
            torch.set_num_threads(training)


def score_split(trainer: Trainer, split: Split) -> Evaluation:
    """``split`` scored as a validation scores it (the run's ``eval_style``, chunks, threads)."""
    cfg = trainer.config
    tutorial = cfg.eval_style == "tutorial"  # the mean of per-minibatch errors (tutorial_eval.py)
    # Data-parallel: each rank scores its share and the sums are all-reduced, so every
    # rank sees the same numbers and takes the same early-stopping decision.  The
    # tutorial's rule needs every prediction: each rank scores the whole split.
    with scoring_threads(trainer):
        full = evaluate(
            trainer.model,
            split,
            n_classes=trainer.data.n_classes,
            batch_size=cfg.eval_batch_size,
            world=SINGLE if tutorial else trainer.world,
        )
    return tutorial_scored(full, split.y, cfg.batch_size) if tutorial else full


def validate(trainer: Trainer, epoch: int) -> ValidationRecord:
    """Score the validation set (and, at a new best, the test set); record and emit a row.

    The scoring is here; what is done with the scores is :func:`judge_validation` and
    :func:`record_validation`, which a fused group (train/fused) calls with its own.
    """
    interval = take_training_cost(trainer)
    if trainer.world.distributed:
        broadcast_buffers(trainer.model)  # rank 0's batch-norm statistics (CPU: per rank)
    with _averaged(trainer):
        valid = score_split(trainer, trainer.data.valid)
        improved = judge_validation(trainer, valid)
        # The test set is scored only at a new best validation point.
        test = score_split(trainer, trainer.data.test) if improved else None
    return record_validation(trainer, epoch, interval, valid, test)


def take_training_cost(trainer: Trainer) -> tuple[float, float]:
    """The mean training cost and largest gradient norm since the last validation.

    Raises :class:`DivergenceError` when the cost is not finite and ``on_nan`` is "stop".
    """
    train_nll, grad_max = trainer.progress.interval.take()
    if not math.isfinite(train_nll) and trainer.config.on_nan == "stop":
        where = first_non_finite(trainer.model)
        raise DivergenceError(
            f"non-finite training loss before iteration {trainer.progress.counters.iteration + 1}"
            f"{'; ' + where if where else ''}",
            hint="lower --lr or add --clip-norm",
        )
    return train_nll, grad_max


def judge_validation(trainer: Trainer, valid: Evaluation) -> bool:
    """Hand the monitored score to early stopping; True at a new best (score the test set)."""
    monitored = {
        "valid_error": valid.error,
        "valid_nll": valid.nll,
        "valid_f1": 1.0 - valid.f1,
    }[trainer.config.monitor]
    return trainer.stopper.update(trainer.progress.counters.iteration, monitored)


def record_validation(
    trainer: Trainer,
    epoch: int,
    interval: tuple[float, float],
    valid: Evaluation,
    test: Evaluation | None,
) -> ValidationRecord:
    """Record a judged validation: best point and state (``test`` given: a new best), target,
    the :class:`ValidationRecord` row in the history, and the ``on_validation`` event.

    ``interval`` is :func:`take_training_cost`'s; the model holds the scored parameters.
    """
    cfg, progress = trainer.config, trainer.progress
    iteration = progress.counters.iteration
    train_nll, grad_max = interval
    improved = test is not None
    if test is not None:
        with _averaged(trainer):  # the parameters that were scored
            progress.best_state = {
                k: v.detach().clone() for k, v in trainer.model.state_dict().items()
            }
        progress.best = BestPoint(
            epoch, iteration, valid.error, valid.nll, valid.f1,
            test.error, test.nll, test.f1, test.predictions,
        )  # fmt: skip
    seconds = progress.clock.seconds()
    target = cfg.target_error
    if test is not None and target is not None and progress.target is None and test.error <= target:
        progress.target = TargetReached(iteration=iteration, epoch=epoch, seconds=seconds)
    best = progress.best
    row = ValidationRecord(
        epoch=epoch,
        iteration=iteration,
        examples_seen=(iteration + 1) * cfg.batch_size,
        train_nll=train_nll,
        valid_error=valid.error,
        valid_nll=valid.nll,
        valid_f1=valid.f1,
        best_valid_error=best.valid_error if best is not None else valid.error,
        test_error=test.error if test is not None else None,
        test_error_at_best=best.test_error if best is not None else None,
        improved=improved,
        lr=float(trainer.optimizer.param_groups[0]["lr"]),
        seconds=seconds,
        grad_norm=grad_max if (cfg.clip_norm or cfg.log_grad_norm) else None,
    )
    progress.history.append(row)
    trainer.emit("on_validation", row)
    return row


# ================================================================ results
def summarize(trainer: Trainer, train_seconds: float) -> RunSummary:
    """The run's :class:`RunSummary` (test numbers at the best validation point)."""
    cfg, progress, data = trainer.config, trainer.progress, trainer.data
    best, target = progress.best, progress.target
    epochs_run = progress.counters.epoch
    return RunSummary(
        dataset=data.name,
        model=cfg.model,
        optimizer=cfg.optimizer,
        lr=cfg.lr,
        batch_size=cfg.batch_size,
        best_valid_error=best.valid_error if best else None,
        test_error=best.test_error if best else None,
        best_valid_nll=best.valid_nll if best else None,
        test_nll=best.test_nll if best else None,
        test_f1=best.test_f1 if best else None,
        best_epoch=best.epoch if best else None,
        best_iteration=best.iteration if best else None,
        epochs_run=epochs_run,
        iterations=progress.counters.iteration + 1,
        stopped_because=progress.stopped_because,
        train_seconds=train_seconds,
        seconds_per_epoch=train_seconds / max(epochs_run, 1),
        seconds_to_target=target.seconds if target else None,
        iterations_to_target=target.iteration if target else None,
        target_error=cfg.target_error,
        n_train=int(data.train.y.shape[0]),
        n_valid=int(data.valid.y.shape[0]),
        n_test=int(data.test.y.shape[0]),
        n_parameters=sum(p.numel() for p in trainer.model.parameters()),
        seed=cfg.seed,
        device=str(trainer.device),
        descentlab_version=__version__,
        torch_version=torch.__version__,
    )


def finish(trainer: Trainer) -> FitResult:
    """End a run: a last validation if none ran, the best parameters restored, the result."""
    progress = trainer.progress
    if not progress.history:  # stopped before any validation: validate once for a result
        validate(trainer, max(progress.counters.epoch, 1))
    train_seconds = progress.clock.seconds()
    if trainer.config.restore_best and progress.best_state is not None:
        trainer.model.load_state_dict(progress.best_state)
    return FitResult(
        summary=summarize(trainer, train_seconds),
        history=[row.to_row() for row in progress.history],
        model=trainer.model,
        best_state=progress.best_state,
        config=trainer.config,
        run_dir=trainer.run_dir,
        test_predictions=progress.best.test_predictions if progress.best else None,
        data=trainer.data,
        records=list(progress.history),
    )
