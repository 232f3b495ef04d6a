"""Console output: one line per validation, warnings, and a progress bar on a terminal."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from descentlab.train.callbacks.base import Callback

if TYPE_CHECKING:
    from descentlab.train.records import ValidationRecord
    from descentlab.train.trainer import Trainer

__all__ = ["ConsoleLogger", "ProgressBar", "RunHeader"]


class RunHeader(Callback):
    """The first console line, printed once setup succeeded (so a bad option prints nothing).

    A fresh run names what trains and where it writes; a resumed one says where it
    continues ("resuming from epoch N").
    """

    reads_gradients = False

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream

    def on_train_start(self, trainer: Trainer) -> None:
        print(header_line(trainer), file=self.stream or sys.stdout, flush=True)


def header_line(trainer: Trainer) -> str:
    """What trains (or where it resumes), on how many threads and why, and where it writes."""
    cfg, counters = trainer.config, trainer.progress.counters
    run_dir = trainer.run_dir
    where = f"run directory {run_dir}" if run_dir is not None else "no run directory"
    threads = trainer.thread_choice.describe()
    if counters.epoch > 0 or counters.batch_in_epoch > 0:
        return (
            f"descentlab: resuming from epoch {counters.epoch + 1} "
            f"(minibatch {counters.batch_in_epoch + 1}, "
            f"{counters.iteration + 1} minibatches done) on {threads}; {where}"
        )
    return (
        f"descentlab: training {cfg.model} on {cfg.dataset} with {cfg.optimizer} "
        f"(lr {cfg.lr:g}, batch {cfg.batch_size}) on {threads}; {where}"
    )


class ConsoleLogger(Callback):
    """One line per validation: epoch, train NLL, valid error, best, test at best, lr, time."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream

    def on_train_start(self, trainer: Trainer) -> None:
        # The first line comes only now, once setup succeeded: a bad option prints only its error.
        print(header_line(trainer), file=self.stream or sys.stdout, flush=True)

    def on_validation(self, trainer: Trainer, row: ValidationRecord) -> None:
        stream = self.stream or sys.stdout
        test = row.get("test_error_at_best")
        parts = [
            f"epoch {row['epoch']:4d}",
            f"iter {row['iteration'] + 1:7d}",
            f"train nll {row['train_nll']:.4f}",
            f"valid {100 * row['valid_error']:6.3f}%",
            f"best {100 * row['best_valid_error']:6.3f}%",
            f"test@best {100 * test:6.3f}%" if test is not None else "test@best    -   ",
            f"lr {row['lr']:.3g}",
            f"{row['seconds']:7.1f}s",
        ]
        if row.get("grad_norm") is not None:
            parts.append(f"|g| {row['grad_norm']:.3g}")
        # Through tqdm: an open progress bar (the line is printed at an epoch's last
        # step, before the bar closes) is cleared first and redrawn after, instead of
        # being left behind as a stale line above every epoch line.
        tqdm.write(" | ".join(parts), file=stream)
        stream.flush()

    def on_warning(self, trainer: Trainer, message: str) -> None:
        tqdm.write(f"descentlab: warning: {message}", file=sys.stderr)


class ProgressBar(Callback):
    """A tqdm bar over the minibatches of an epoch; only on a terminal."""

    reads_gradients = False

    def __init__(self, min_batches: int = 200) -> None:
        self.min_batches = min_batches
        self._bar: Any = None

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        if not sys.stderr.isatty() or trainer.batches_per_epoch < self.min_batches:
            return
        self._bar = tqdm(
            total=trainer.batches_per_epoch,
            desc=f"epoch {epoch}",
            leave=False,
            unit="batch",
            mininterval=0.5,
        )

    def on_step(self, trainer: Trainer, iteration: int, loss: Any) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def on_epoch_end(self, trainer: Trainer, epoch: int) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    on_train_end = on_epoch_end  # type: ignore[assignment]
