"""Checkpoints at epoch ends and every N iterations."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from descentlab.errors import ConfigError
from descentlab.train.callbacks.base import Callback

if TYPE_CHECKING:
    from descentlab.train.trainer import Trainer

__all__ = ["Checkpointer"]


class Checkpointer(Callback):
    """Write a checkpoint at the end of every epoch and, optionally, every N iterations.

    ``every_iterations=N`` asks for a checkpoint after iterations N, 2N, ...; it is
    written at the end of that step, once its validation and stopping check are
    done (:meth:`Trainer.request_checkpoint`), so a resumed run replays nothing and
    skips nothing.  Each checkpoint replaces the one before it atomically, and
    the generation before that is kept as a fallback (``--resume-previous``).
    """

    reads_gradients = False

    def __init__(self, every_iterations: int | None = None, every_epoch: bool = True) -> None:
        if every_iterations is not None and (
            isinstance(every_iterations, bool)
            or not isinstance(every_iterations, int)
            or every_iterations < 1
        ):
            raise ConfigError(
                f"checkpoint_every must be a positive integer, got {every_iterations!r}",
                hint="e.g. --checkpoint-every 500",
            )
        self.every_iterations = every_iterations or 0
        self.every_epoch = every_epoch

    def on_step(self, trainer: Trainer, iteration: int, loss: Any) -> None:
        if self.every_iterations and (iteration + 1) % self.every_iterations == 0:
            trainer.request_checkpoint()

    def on_epoch_end(self, trainer: Trainer, epoch: int) -> None:
        # The epoch's counters, schedule step and stopping decision are done: consistent.
        if self.every_epoch:
            trainer.save_checkpoint()
