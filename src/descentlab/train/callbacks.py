"""Events of a training run, and the callbacks that turn them into output.

The trainer emits events; everything that is not the arithmetic of training —
printing, progress bars, metric files, TensorBoard, checkpoints — listens to
them.  Users subclass :class:`Callback` and pass instances to ``fit`` to add
or replace behaviour.  ``on_step`` is opt-in: the trainer only calls it for
callbacks that override it, so the hot loop pays nothing otherwise.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from descentlab.train.trainer import FitResult, Trainer


class Callback:
    """Base class: override the events you care about."""

    def on_train_start(self, trainer: Trainer) -> None:
        """After setup, before the first step (also after a resume)."""

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        """Before the first minibatch of ``epoch`` (1-based)."""

    def on_step(self, trainer: Trainer, iteration: int, loss: Any) -> None:
        """After every optimizer step (opt-in: costs a call per minibatch)."""

    def on_validation(self, trainer: Trainer, row: dict[str, Any]) -> None:
        """After each validation; ``row`` is what goes to metrics.jsonl."""

    def on_epoch_end(self, trainer: Trainer, epoch: int) -> None:
        """After the last minibatch of ``epoch`` and its validation, if any."""

    def on_checkpoint(self, trainer: Trainer, path: Path) -> None:
        """After a checkpoint has been written."""

    def on_train_end(self, trainer: Trainer, result: FitResult) -> None:
        """After training stops (early stopping, max_epochs or interruption)."""


def overrides(callback: Callback, name: str) -> bool:
    return getattr(type(callback), name) is not getattr(Callback, name)


class ConsoleLogger(Callback):
    """One line per validation: epoch, train NLL, valid error, best, test at best, lr, time."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream

    def on_validation(self, trainer: Trainer, row: dict[str, Any]) -> None:
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
        print(" | ".join(parts), file=stream, flush=True)


class ProgressBar(Callback):
    """A tqdm bar over the minibatches of an epoch; only on a terminal."""

    def __init__(self, min_batches: int = 200) -> None:
        self.min_batches = min_batches
        self._bar: Any = None

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        if not sys.stderr.isatty() or trainer.batches_per_epoch < self.min_batches:
            return
        from tqdm.auto import tqdm

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


class MetricsFiles(Callback):
    """``metrics.jsonl`` (one row per validation) and the same rows as ``metrics.csv``."""

    def __init__(self, run_dir: str | Path) -> None:
        self.jsonl = Path(run_dir) / "metrics.jsonl"
        self.csv = Path(run_dir) / "metrics.csv"

    def on_train_start(self, trainer: Trainer) -> None:
        # On resume the files are rewritten from the restored history, so rows
        # written after the checkpoint (and lost with the crash) never appear twice.
        self._rewrite(trainer.history)

    def on_validation(self, trainer: Trainer, row: dict[str, Any]) -> None:
        with open(self.jsonl, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        self._rewrite_csv(trainer.history)

    def _rewrite(self, history: list[dict[str, Any]]) -> None:
        with open(self.jsonl, "w", encoding="utf-8") as f:
            for row in history:
                f.write(json.dumps(row) + "\n")
        self._rewrite_csv(history)

    def _rewrite_csv(self, history: list[dict[str, Any]]) -> None:
        if not history:
            self.csv.write_text("", encoding="utf-8")
            return
        keys = list(history[0])
        with open(self.csv, "w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(history)


class TensorBoardLogger(Callback):
    """Scalars to TensorBoard event files (needs the optional ``tensorboard`` package).

    One scalar per number of each validation row, under the row's own names
    (``train_nll``, ``valid_error``, ``best_valid_error``, ``test_error_at_best``, ``lr``,
    ...), at step = minibatch iterations done.  ``test_error`` appears only at the steps
    where a new best validation error made the trainer score the test set.
    """

    SCALARS = (
        "train_nll",
        "valid_error",
        "valid_nll",
        "valid_f1",
        "best_valid_error",
        "test_error",
        "test_error_at_best",
        "lr",
        "grad_norm",
    )

    def __init__(self, log_dir: str | Path) -> None:
        try:  # fail before any work when the optional extra is missing
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            from descentlab.errors import ConfigError

            raise ConfigError(
                "--tensorboard needs the tensorboard package",
                hint="pip install 'descentlab[tensorboard]'",
            ) from exc
        self.log_dir = Path(log_dir)
        self._writer_class = SummaryWriter
        self.writer: Any = None

    def on_train_start(self, trainer: Trainer) -> None:
        # The writer creates its folder, so it is opened only once setup has succeeded
        # (a bad option must leave no run directory behind).  On a resume, events logged
        # after the checkpoint are purged so no step appears twice.
        purge = trainer.iteration + 2 if trainer.iteration >= 0 else None
        self.writer = self._writer_class(str(self.log_dir), purge_step=purge)

    def on_validation(self, trainer: Trainer, row: dict[str, Any]) -> None:
        if self.writer is None:
            self.on_train_start(trainer)
        step = row["iteration"] + 1
        for key in self.SCALARS:
            if row.get(key) is not None:
                self.writer.add_scalar(key, row[key], step)
        self.writer.flush()

    def on_train_end(self, trainer: Trainer, result: FitResult) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class Checkpointer(Callback):
    """Write a checkpoint at the end of every epoch and, optionally, every N iterations.

    ``every_iterations=N`` asks for a checkpoint after iterations N, 2N, ...; it is
    written at the end of that step, once its validation and stopping check are
    done (:meth:`Trainer.request_checkpoint`), so a resumed run replays nothing and
    skips nothing.  Each checkpoint replaces the one before it atomically, and
    the generation before that is kept as a fallback (``--resume-previous``).
    """

    def __init__(self, every_iterations: int | None = None, every_epoch: bool = True) -> None:
        if every_iterations is not None and (
            isinstance(every_iterations, bool)
            or not isinstance(every_iterations, int)
            or every_iterations < 1
        ):
            from descentlab.errors import ConfigError

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
