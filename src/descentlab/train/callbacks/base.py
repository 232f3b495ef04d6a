"""Events of a training run, and the base class of the callbacks that listen to them.

The trainer emits events; everything that is not the arithmetic of training —
printing, progress bars, metric files, TensorBoard, checkpoints — listens to
them.  Users subclass :class:`Callback` and pass instances to ``fit`` to add
or replace behaviour.  ``on_step`` is opt-in: the trainer only calls it for
callbacks that override it, so the hot loop pays nothing otherwise.

A callback that overrides ``on_step`` but never looks at the parameters' ``.grad``
says so with ``reads_gradients = False``: the dense fast path may then fold plain
SGD's update into its backward pass (no ``.grad`` is left to read).  The default,
``True``, is the safe answer for callbacks that do not say.

A callback whose ``on_validation`` fills in a row's optional fields (the diagnostics of
``--diagnostics N``) says ``fills_rows = True``: ``fit`` runs it before the callbacks
that write the row to disk.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from descentlab.train.records import FitResult, ValidationRecord
    from descentlab.train.trainer import Trainer

__all__ = ["Callback", "overrides"]


class Callback:
    """Base class: override the events you care about."""

    #: Whether ``on_step`` reads the parameters' gradients (see the module docstring).
    reads_gradients: ClassVar[bool] = True
    #: Whether ``on_validation`` adds values to the row (run before the files are written).
    fills_rows: ClassVar[bool] = False

    def on_train_start(self, trainer: Trainer) -> None:
        """After setup, before the first step (also after a resume)."""

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        """Before the first minibatch of ``epoch`` (1-based)."""

    def on_step(self, trainer: Trainer, iteration: int, loss: Any) -> None:
        """After every optimizer step (opt-in: costs a call per minibatch)."""

    def on_validation(self, trainer: Trainer, row: ValidationRecord) -> None:
        """After each validation; ``row`` is what goes to metrics.jsonl."""

    def on_epoch_end(self, trainer: Trainer, epoch: int) -> None:
        """After the last minibatch of ``epoch`` and its validation, if any."""

    def on_checkpoint(self, trainer: Trainer, path: Path) -> None:
        """After a checkpoint has been written."""

    def on_train_end(self, trainer: Trainer, result: FitResult) -> None:
        """After training stops (early stopping, max_epochs or interruption)."""

    def on_warning(self, trainer: Trainer, message: str) -> None:
        """Something the user should know that does not stop the run (e.g. a skipped batch)."""


def overrides(callback: Callback, name: str) -> bool:
    """Whether ``callback``'s class overrides the event ``name``."""
    return getattr(type(callback), name) is not getattr(Callback, name)
