"""One training step, and what happens when its numbers are not finite.

:class:`TrainStep` is the body of the loop for one minibatch ``(x, y)``::

    closure = the objective's autograd closure  |  the dense fast path's (train/fast.py)
    cost = optimizer.step(closure.bind(x, y))   (θ ← θ + Δθ; the closure may raise
                                                 NonFiniteCost before anything is applied)
    schedule.step()      if the schedule steps per iteration
    averager.update(k)   if Polyak averaging / EMA is on
    interval sums += cost

The closure is chosen at each epoch's start (:meth:`TrainStep.start_epoch`): the fast
path while the model qualifies (a callback may add hooks or freeze parameters), and
plain SGD's update fused into its backward pass when nothing reads ``.grad`` in
between — an explicit capability check on the configuration and on each step
callback's ``reads_gradients``.  When the closure applies the whole update (plain SGD,
or the fused Adam/AdaGrad/RMSProp kernels) and nothing hooks ``optimizer.step``, the
step calls the closure itself: ``optimizer.step`` would only have run it, behind
wrappers that cost about 50 µs a step (a tenth of a tutorial-MLP step).

:class:`NanPolicy` is ``--on-nan``: ``stop`` raises :class:`DivergenceError` naming the
iteration, learning rate and tensor; ``skip-batch`` drops the minibatch; ``lr-backoff``
drops it and halves every learning rate.  Its warnings go to the ``on_warning`` event.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import KW_ONLY, InitVar, dataclass, field
from typing import Any

import torch
import torch.optim.optimizer as _optim_module
from torch import nn

from descentlab.errors import DivergenceError
from descentlab.objective import Closure, NonFiniteCost, Objective
from descentlab.optim import clip_grad_norm_, clip_grad_value_
from descentlab.train.distributed import GradientSync, chain
from descentlab.train.fast import DenseFastPath, FastClosure
from descentlab.train.progress import Faults, Progress

__all__ = [
    "GradientHook",
    "NanPolicy",
    "TrainStep",
    "first_non_finite",
    "grads_finite",
    "non_finite_tensor",
]


def non_finite_tensor(model: nn.Module, *, grads: bool = True) -> tuple[str, str] | None:
    """``(kind, description)`` of the first non-finite parameter (or gradient), else None."""
    for name, p in model.named_parameters():
        if not bool(torch.isfinite(p).all()):
            return "parameter", f"parameter {name}"
        if grads and p.grad is not None and not bool(torch.isfinite(p.grad).all()):
            return "gradient", f"the gradient of {name}"
    return None


def first_non_finite(model: nn.Module) -> str:
    bad = non_finite_tensor(model)
    return f"{bad[1]} is non-finite" if bad is not None else ""


def grads_finite(model: nn.Module) -> bool:
    """Whether every gradient is finite (one host sync for all of them)."""
    flags = [torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None]
    return not flags or bool(torch.stack(flags).all())


@dataclass(eq=False)
class GradientHook:
    """Runs between the backward pass and the update: finiteness, clipping, norm logging."""

    model: nn.Module
    progress: Progress
    _: KW_ONLY
    check_finite: bool
    clip_norm: float | None
    clip_value: float | None
    log_norm: bool

    @property
    def needed(self) -> bool:
        return self.check_finite or self.reads_gradients

    @property
    def reads_gradients(self) -> bool:
        return self.clip_norm is not None or self.clip_value is not None or self.log_norm

    def __call__(self) -> None:
        model, interval = self.model, self.progress.interval
        if self.check_finite and not grads_finite(model):
            raise NonFiniteCost("gradient")  # skip-batch / lr-backoff: drop it unapplied
        if self.clip_norm is not None:
            norm = clip_grad_norm_(model.parameters(), self.clip_norm)
            interval.grad_max = torch.maximum(interval.grad_max, norm.detach())
        elif self.log_norm:
            norms = [
                torch.linalg.vector_norm(p.grad) for p in model.parameters() if p.grad is not None
            ]
            norm = torch.linalg.vector_norm(torch.stack(norms))
            interval.grad_max = torch.maximum(interval.grad_max, norm)
        if self.clip_value is not None:
            clip_grad_value_(model.parameters(), self.clip_value)


class NanPolicy:
    """``--on-nan``: what a minibatch with a non-finite loss or gradient does to the run.

    A non-finite *parameter* means an earlier step was already applied, which no mode
    can undo, so it always stops; so do ``MAX_BAD_STREAK`` drops in a row.
    """

    MAX_BAD_STREAK = 10  # this many dropped minibatches in a row end the run
    REPORTED = 5  # warnings for the first this many drops

    def __init__(
        self,
        mode: str,
        faults: Faults,
        *,
        warn: Callable[[str], None],
        last_checkpoint: Callable[[], str],
        input_scale: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.mode = mode
        self.faults = faults
        self.warn = warn
        self.last_checkpoint = last_checkpoint
        # A first cause to name before the learning rate: inputs far from unit scale.
        self.input_scale = input_scale

    def handle(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        schedule: Any,
        *,
        iteration: int,
        epoch: int,
    ) -> None:
        """Minibatch ``iteration`` (0-based) of ``epoch`` (1-based) gave non-finite values.

        Nothing was applied.  Raises :class:`DivergenceError`, or drops the minibatch.
        """
        lr = float(optimizer.param_groups[0]["lr"])
        bad = non_finite_tensor(model)
        what = f"{bad[1]} is non-finite" if bad is not None else "the loss is non-finite"
        where = f"iteration {iteration + 1} (epoch {epoch}, lr {lr:.3g})"
        if self.mode == "stop" or (bad is not None and bad[0] == "parameter"):
            hint = "lower --lr, add --clip-norm, or use --on-nan skip-batch or lr-backoff"
            if self.mode != "stop":
                hint = (
                    f"--on-nan {self.mode} cannot undo a step already applied; "
                    "lower --lr or add --clip-norm"
                )
            scale = self.input_scale()
            if scale:
                hint = f"{scale}; else {hint}"
            raise DivergenceError(
                f"training diverged at {where}: {what}; {self.last_checkpoint()}", hint=hint
            )
        streak = self.faults.record(iteration)
        if streak >= self.MAX_BAD_STREAK:
            raise DivergenceError(
                f"{streak} minibatches in a row gave non-finite values, the last at "
                f"{where}: {what}; {self.last_checkpoint()}",
                hint="lower --lr, add --clip-norm, or check the data",
            )
        action = "skipped it"
        if self.mode == "lr-backoff":
            for group in optimizer.param_groups:
                group["lr"] *= 0.5
            if schedule is not None and hasattr(schedule, "base_lrs"):
                schedule.base_lrs = [base * 0.5 for base in schedule.base_lrs]
            action = f"skipped it and halved the learning rate to {lr * 0.5:.3g}"
        skipped = self.faults.skipped_batches
        if skipped <= self.REPORTED:
            more = " (further skips are not reported)" if skipped == self.REPORTED else ""
            self.warn(f"at {where} {what}; {action}{more}")
        optimizer.zero_grad(set_to_none=True)


def _bare_step(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer.step`` is the class's own, with no hooks around it.

    Hooks (global or the optimizer's) and an instance-level ``step`` other than the
    learning-rate scheduler's tracker (which only sets ``_opt_called``) must run.  Where
    torch keeps its hooks is private: if it moved, say no (step is then always called).
    """
    patched = vars(optimizer).get("step")
    if patched is not None and not getattr(patched, "_wrapped_by_lr_sched", False):
        return False
    hooks = (
        getattr(optimizer, "_optimizer_step_pre_hooks", None),
        getattr(optimizer, "_optimizer_step_post_hooks", None),
        getattr(_optim_module, "_global_optimizer_pre_hooks", None),
        getattr(_optim_module, "_global_optimizer_post_hooks", None),
    )
    return all(h is not None and not h for h in hooks)


@dataclass(eq=False)
class TrainStep:
    """``step(x, y)``: one minibatch of training (see the module docstring); returns its cost.

    Data-parallel (``gradient_sync``): the all-reduce comes first after the backward
    pass, so clipping, the finiteness check and the update all see the global gradient,
    identically on every rank.  The loss is not checked before the backward pass then
    (one rank alone must not skip the all-reduce): a non-finite loss shows in the gradient.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    objective: InitVar[Objective]
    progress: Progress
    nan_policy: NanPolicy
    gradient_hook: GradientHook
    _: KW_ONLY
    check_finite: InitVar[bool]
    fast_path: DenseFastPath | None
    fast_path_reason: str
    schedule: Any = None
    averager: Any = None
    gradient_sync: GradientSync | None = None
    fused_sgd: bool = field(default=False, init=False)

    def __post_init__(self, objective: Objective, check_finite: bool) -> None:
        schedule = self.schedule
        self.schedule_per_step = schedule if getattr(schedule, "interval", None) == "step" else None
        if self.gradient_sync is not None:
            self.gradient_hook.check_finite = self.gradient_hook.check_finite or check_finite
            check_finite = False
        hook = chain(self.gradient_sync, self.gradient_hook if self.gradient_hook.needed else None)
        self.autograd_closure = objective.closure(
            self.model, self.optimizer, check_finite=check_finite, after_backward=hook
        )
        self.closure: Closure | FastClosure = self.autograd_closure
        if self.fast_path is not None:
            self.closure = FastClosure(
                self.fast_path, self.optimizer, check_finite=check_finite, after_backward=hook
            )

    def start_epoch(self, step_callbacks: Sequence[Any]) -> None:
        """Choose this epoch's closure: fast path (fused SGD or not), or autograd."""
        fast = self.fast_path
        if fast is not None and not fast.still_valid():
            # A callback froze parameters or added hooks: autograd from here on.
            self.fast_path, self.fast_path_reason = None, "the model changed during training"
            self.closure = self.autograd_closure
        if isinstance(self.closure, FastClosure):
            self.fused_sgd = self.closure.fuse_sgd = self.sgd_fusable(step_callbacks)
        else:
            self.fused_sgd = False

    def sgd_fusable(self, step_callbacks: Sequence[Any]) -> bool:
        """Whether plain SGD's update may be folded into the fast backward pass.

        Only when nothing between the backward pass and the update looks at ``.grad``:
        no clipping, no gradient-norm logging, no finiteness check of the gradients
        (``on_nan`` other than stop), and no step callback that reads gradients.
        """
        hook = self.gradient_hook
        return (
            self.gradient_sync is None
            and not hook.needed
            and not any(getattr(cb, "reads_gradients", True) for cb in step_callbacks)
        )

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        sync = self.gradient_sync
        if sync is not None:
            sync.begin(int(x.shape[0]))
        try:
            closure = self.closure.bind(x, y)
            if (
                self.fused_sgd
                and isinstance(closure, FastClosure)
                and _bare_step(self.optimizer)
                and closure.applies_update()
            ):
                # optimizer.step(closure) would only run the closure (it applies the
                # update, see FastClosure): skip step's wrappers, ~50 µs a step.
                self.optimizer._opt_called = True  # type: ignore[attr-defined]
                loss: Any = closure()
            else:
                # torch's stub types the closure as returning float; ours returns the loss
                loss = self.optimizer.step(closure)  # type: ignore[arg-type]
        except NonFiniteCost:
            counters = self.progress.counters
            self.nan_policy.handle(
                self.model,
                self.optimizer,
                self.schedule,
                iteration=counters.iteration + 1,
                epoch=counters.epoch + 1,
            )
            return torch.full((), math.nan, device=x.device)
        assert loss is not None, "optimizer.step(closure) must return the closure's loss"
        if sync is not None:
            loss = sync.mean_loss(loss)
        if self.schedule_per_step is not None:
            self.schedule_per_step.step()
        if self.averager is not None:
            self.averager.update(self.progress.counters.iteration + 1)
        loss = loss.detach()
        interval = self.progress.interval
        interval.loss_sum += loss
        interval.loss_count += 1
        return loss
