"""The run directory's callback: config first, results at the end, curves along the way."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from descentlab.train.callbacks.base import Callback
from descentlab.train.run_files import (
    model_metadata,
    plot_history,
    write_config,
    write_results,
    write_summary,
)

if TYPE_CHECKING:
    from descentlab.train.records import FitResult
    from descentlab.train.trainer import Trainer

__all__ = ["RunDirectory"]


class RunDirectory(Callback):
    """Writes config, summary, best model, predictions and the learning curve
    (the files of :mod:`descentlab.train.run_dir`)."""

    def __init__(self, path: str | Path, *, plot: bool = True) -> None:
        self.path = Path(path)
        self.plot = plot

    def on_train_start(self, trainer: Trainer) -> None:
        write_config(self.path, trainer.config)

    def on_epoch_end(self, trainer: Trainer, epoch: int) -> None:
        # Refresh the curve now and then so a long run can be watched.
        if self.plot and epoch % 10 == 0:
            plot_history(self.path, trainer.history)

    def on_train_end(self, trainer: Trainer, result: FitResult) -> None:
        metadata = model_metadata(trainer.model, trainer.data, trainer.config)
        write_results(self.path, result, metadata)
        if self.plot:
            plot_history(self.path, result.history)
        # Last: a summary.json means the run finished and everything above is in place.
        write_summary(self.path, result.summary)
