"""Console lines in the Deep Learning Tutorials' own format (``log_style="tutorial"``).

So a run can be diffed line by line against the tutorial's documentation::

    epoch 72, minibatch 83/83, validation error 7.510417 %
         epoch 72, minibatch 83/83, test error of best model 7.510417 %

and, at the end, the closing lines of the script the model comes from
(``logistic_sgd.py`` for logreg, ``mlp.py`` for mlp, ``convolutional_mlp.py`` for
lenet), with the same wording, spacing and ``%f`` formats.  ``convolutional_mlp.py``
also prints ``training @ iter =  N`` before every 100th minibatch; so does this logger
for lenet.  The scripts' timing lines go to stderr, as theirs do (except
``logistic_sgd.py``'s epochs/sec line, which it prints to stdout).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from descentlab.train.callbacks.base import Callback

if TYPE_CHECKING:
    from descentlab.train.records import FitResult, RunSummary, ValidationRecord
    from descentlab.train.trainer import Trainer

__all__ = ["LeNetTutorialLogger", "TutorialLogger", "closing_lines"]


class TutorialLogger(Callback):
    """Validation, test and closing lines as the tutorial scripts print them."""

    def __init__(self, model: str, stream: Any = None, err_stream: Any = None) -> None:
        self.model = model
        self.stream = stream
        self.err_stream = err_stream

    @staticmethod
    def for_model(model: str, stream: Any = None, err_stream: Any = None) -> TutorialLogger:
        """The logger of the script ``model`` comes from (lenet's also prints iterations)."""
        cls = LeNetTutorialLogger if model == "lenet" else TutorialLogger
        return cls(model, stream, err_stream)

    def _out(self, line: str, *, err: bool = False) -> None:
        stream = (self.err_stream or sys.stderr) if err else (self.stream or sys.stdout)
        print(line, file=stream, flush=True)

    def on_validation(self, trainer: Trainer, row: ValidationRecord) -> None:
        where = f"epoch {row.epoch}, minibatch {trainer.batch_in_epoch}/"
        where += str(trainer.batches_per_epoch)
        self._out(f"{where}, validation error {100.0 * row.valid_error:f} %")
        if row.improved and row.test_error is not None:
            self._out(f"     {where}, test error of best model {100.0 * row.test_error:f} %")

    def on_train_end(self, trainer: Trainer, result: FitResult) -> None:
        out, err = closing_lines(self.model, result.summary)
        for line in out:
            self._out(line)
        for line in err:
            self._out(line, err=True)


class LeNetTutorialLogger(TutorialLogger):
    """``convolutional_mlp.py`` also prints ``training @ iter =  N`` every 100 minibatches.

    A separate class so that the other models' loggers have no ``on_step`` (the loop
    calls ``on_step`` only for callbacks that override it).  It never reads gradients.
    """

    reads_gradients = False

    def on_step(self, trainer: Trainer, iteration: int, loss: Any) -> None:
        if iteration % 100 == 0:
            self._out(f"training @ iter =  {iteration}")


def closing_lines(model: str, summary: RunSummary | dict[str, Any]) -> tuple[list[str], list[str]]:
    """(stdout lines, stderr lines) the tutorial script of ``model`` ends with."""
    valid = 100.0 * (summary.get("best_valid_error") or 0.0)
    test = 100.0 * (summary.get("test_error") or 0.0)
    best_iter = summary.get("best_iteration") or 0  # 0-based, the scripts print +1
    seconds = float(summary.get("train_seconds") or 0.0)
    epochs = int(summary.get("epochs_run") or 0)
    minutes = f"{seconds / 60.0:.2f}m"
    if model == "mlp":
        return [
            f"Optimization complete. Best validation score of {valid:f} % obtained at "
            f"iteration {best_iter + 1}, with test performance {test:f} %"
        ], [f"The code for file mlp.py ran for {minutes}"]
    if model == "lenet":
        return [
            "Optimization complete.",
            f"Best validation score of {valid:f} % obtained at iteration {best_iter + 1},"
            f"with test performance {test:f} %",
        ], [f"The code for file convolutional_mlp.py ran for {minutes}"]
    rate = epochs / seconds if seconds > 0 else float("inf")
    return [
        f"Optimization complete with best validation score of {valid:f} %,"
        f"with test performance {test:f} %",
        f"The code run for {epochs} epochs, with {rate:f} epochs/sec",
    ], []
