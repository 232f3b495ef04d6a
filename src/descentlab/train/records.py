"""Typed records of a run: one row per validation, one summary per run.

These are *the* definition of what a run produces.  The trainer builds them, the
run directory writes them (``metrics.jsonl``/``metrics.csv`` hold ``ValidationRecord``
rows, ``summary.json`` holds a ``RunSummary``), and sweeps and reports read them
back with :meth:`RunSummary.from_row`.  Field names are the on-disk keys, so
files written by earlier versions read unchanged.

Both records also answer ``record["key"]`` and ``record.get("key")``, and compare
equal to a mapping with the same items: code and notebooks written against the dict
rows of earlier versions keep working.

:class:`FitResult` is what ``fit`` returns: the summary, the rows and the model.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch import nn

if TYPE_CHECKING:
    from descentlab.data import Dataset
    from descentlab.train.config import TrainConfig

_R = TypeVar("_R", bound="_Record")


class _Record:
    """Mapping-style read access and row conversion shared by the records."""

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))  # type: ignore[arg-type]

    def to_row(self) -> dict[str, Any]:
        """The record as a plain JSON-ready dict, keys in declaration order."""
        return {name: getattr(self, name) for name in self.field_names()}

    @classmethod
    def from_row(cls: type[_R], row: Mapping[str, Any]) -> _R:
        """Read a row written by :meth:`to_row` (unknown keys are ignored, missing ones default).

        Rows from older files may lack newer keys; rows from newer files may carry
        keys this version does not know.  Neither is an error.
        """
        known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
        values = {k: row[k] for k in known if k in row}
        missing = [
            f.name
            for f in known.values()
            if f.name not in values
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        for name in missing:
            values[name] = None
        return cls(**values)

    # Mapping-style access, for code written against the dict rows.
    def __getitem__(self, key: str) -> Any:
        if key not in self.field_names():
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in self.field_names() else default

    def __contains__(self, key: object) -> bool:
        return key in self.field_names()

    def keys(self) -> tuple[str, ...]:
        return self.field_names()

    def items(self) -> Iterator[tuple[str, Any]]:
        return ((name, getattr(self, name)) for name in self.field_names())

    def __iter__(self) -> Iterator[str]:
        return iter(self.field_names())

    def __len__(self) -> int:
        return len(self.field_names())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _Record):
            return type(other) is type(self) and self.to_row() == other.to_row()
        if isinstance(other, Mapping):
            return self.to_row() == dict(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dicts it stands for


@dataclass(eq=False)
class ValidationRecord(_Record):
    """One validation point: what ``metrics.jsonl`` holds a line of.

    Errors are fractions in [0, 1].  ``epoch`` and ``iteration`` are 0-based
    counters as the loop keeps them; ``test_error`` is set only where the
    validation error reached a new best (the test set is scored only there), and
    ``test_error_at_best`` carries the test error of the best point so far.

    The ``lambda_max`` ... ``diag_examples`` fields are filled only at the validations
    where ``--diagnostics N`` measured them (every N-th; see docs/diagnostics.md):
    λmax of the training cost's Hessian on ``diag_examples`` examples, the stability
    bound of the run's optimizer (``None`` for adaptive ones), ‖g‖ of the full-sample
    gradient, the §8.2.1 ratio ½ε²gᵀHg / εgᵀg and the gradient noise scale B_simple.
    Files without them read unchanged.
    """

    epoch: int
    iteration: int
    examples_seen: int
    train_nll: float
    valid_error: float
    valid_nll: float
    valid_f1: float
    best_valid_error: float
    test_error: float | None
    test_error_at_best: float | None
    improved: bool
    lr: float
    seconds: float
    grad_norm: float | None = None
    lambda_max: float | None = None
    lr_stability_bound: float | None = None
    full_grad_norm: float | None = None
    step_ratio: float | None = None
    noise_scale: float | None = None
    diag_examples: int | None = None


@dataclass(eq=False)
class RunSummary(_Record):
    """What one finished run reports: ``summary.json``, and a row of a sweep's results.

    ``test_error`` and the other ``test_*`` fields are measured at the best
    validation point (the model a user would keep), never at the end.
    """

    dataset: str
    model: str
    optimizer: str
    lr: float | None
    batch_size: int
    best_valid_error: float | None
    test_error: float | None
    best_valid_nll: float | None = None
    test_nll: float | None = None
    test_f1: float | None = None
    best_epoch: int | None = None
    best_iteration: int | None = None
    epochs_run: int = 0
    iterations: int = 0
    stopped_because: str | None = None
    train_seconds: float = 0.0
    seconds_per_epoch: float = 0.0
    seconds_to_target: float | None = None
    iterations_to_target: int | None = None
    target_error: float | None = None
    n_train: int = 0
    n_valid: int = 0
    n_test: int = 0
    n_parameters: int = 0
    seed: int = 0
    device: str = "cpu"
    descentlab_version: str = ""
    torch_version: str = ""

    @property
    def finished(self) -> bool:
        """True when the run has a finite best validation error."""
        value = self.best_valid_error
        return value is not None and math.isfinite(value)


@dataclass
class FitResult:
    """What ``fit`` returns: the summary, the per-validation history and the model.

    ``history`` holds the ``metrics.jsonl`` rows as plain dicts (JSON-ready);
    ``records`` the same rows as :class:`ValidationRecord`.  ``model`` holds the best
    parameters (by validation) when ``restore_best`` is on, else the final ones;
    ``best_state`` is always the best.
    """

    summary: RunSummary
    history: list[dict[str, Any]]
    model: nn.Module
    best_state: dict[str, torch.Tensor] | None
    config: TrainConfig
    run_dir: Path | None = None
    test_predictions: torch.Tensor | None = None
    data: Dataset | None = field(default=None, repr=False)
    records: list[ValidationRecord] = field(default_factory=list, repr=False)

    @property
    def test_error(self) -> float | None:
        return self.summary.test_error

    @property
    def best_valid_error(self) -> float | None:
        return self.summary.best_valid_error


__all__ = ["FitResult", "RunSummary", "ValidationRecord"]
