"""Console output: one line per validation, warnings, and a progress bar on a terminal."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from descentlab.train.callbacks.base import Callback

if TYPE_CHECKING:
    from descentlab.train.records import ValidationRecord
    from descentlab.train.trainer import Trainer

__all__ = ["ConsoleLogger", "ProgressBar"]


class ConsoleLogger(Callback):
    """One line per validation: epoch, train NLL, valid error, best, test at best, lr, time."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream

    def on_train_start(self, trainer: Trainer) -> None:
        cfg, where = trainer.config, trainer.run_dir
        counters = trainer.progress.counters
        what = "resuming" if counters.iteration >= 0 else "training"
        print(
            f"descentlab: {what} {cfg.model} on {cfg.dataset} with {cfg.optimizer} "
            f"(lr {cfg.lr}, batch {cfg.batch_size}) on {trainer.thread_choice.describe()}; "
            + (f"run directory {where}" if where is not None else "no run directory"),
            file=self.stream or sys.stdout,
            flush=True,
        )

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
