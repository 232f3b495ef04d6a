"""Metric files: ``metrics.jsonl``/``metrics.csv`` and TensorBoard event files."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from descentlab.errors import ConfigError
from descentlab.fsio import atomic_write_text, atomic_writer
from descentlab.train.callbacks.base import Callback

if TYPE_CHECKING:
    from descentlab.train.records import FitResult, ValidationRecord
    from descentlab.train.trainer import Trainer

__all__ = ["MetricsFiles", "TensorBoardLogger"]


class MetricsFiles(Callback):
    """``metrics.jsonl`` (one row per validation) and the same rows as ``metrics.csv``."""

    def __init__(self, run_dir: str | Path) -> None:
        self.jsonl = Path(run_dir) / "metrics.jsonl"
        self.csv = Path(run_dir) / "metrics.csv"

    def on_train_start(self, trainer: Trainer) -> None:
        # On resume the files are rewritten from the restored history, so rows
        # written after the checkpoint (and lost with the crash) never appear twice.
        self._rewrite(trainer.history)

    def on_validation(self, trainer: Trainer, row: ValidationRecord) -> None:
        self._rewrite(trainer.history)

    def _rewrite(self, history: Sequence[ValidationRecord]) -> None:
        # Rewritten whole and atomically (a few hundred rows at most): a full disk or a
        # kill leaves the previous complete file, never a half row.
        atomic_write_text(self.jsonl, "".join(json.dumps(r.to_row()) + "\n" for r in history))
        self._rewrite_csv(history)

    def _rewrite_csv(self, history: Sequence[ValidationRecord]) -> None:
        if not history:
            atomic_write_text(self.csv, "")
            return
        keys = list(history[0].keys())
        with atomic_writer(self.csv, "w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(row.to_row() for row in history)


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
        # --diagnostics N: only at the validations that measured them
        "lambda_max",
        "lr_stability_bound",
        "full_grad_norm",
        "noise_scale",
    )

    def __init__(self, log_dir: str | Path) -> None:
        try:  # optional extra: imported here to fail before any work when it is missing
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
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

    def on_validation(self, trainer: Trainer, row: ValidationRecord) -> None:
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
