"""Where a run stands: small resumable dataclasses, each with ``state_dict``.

A resume must continue bit-identically, so everything the loop counts or accumulates
lives here and travels in the checkpoint (:meth:`Progress.state_dict`), under the
same keys checkpoints have always used:

==================  ====================================================================
``counters``        epochs done, minibatches done in the current epoch, last iteration
``accumulators``    running train-cost sum/count and largest gradient norm since the
                    last validation (:class:`IntervalStats`)
``faults``          minibatches dropped by ``--on-nan skip-batch``/``lr-backoff``
``best``            the best validation point so far and its test scores (:class:`BestPoint`)
``best_state``      the parameters at that point
``history``         one :class:`~descentlab.train.records.ValidationRecord` per validation
``elapsed``         training seconds before this process (:class:`Clock`)
``target_reached``  when the test error first met ``target_error``
``rng``             every random generator (:func:`rng_state_dict`)
==================  ====================================================================
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch

from descentlab.train.records import ValidationRecord

__all__ = [
    "BestPoint",
    "Clock",
    "Counters",
    "Faults",
    "IntervalStats",
    "Progress",
    "TargetReached",
    "load_rng_state",
    "rng_state_dict",
]


class _IntFields:
    """``state_dict``/``load_state_dict`` of a dataclass whose fields are all ints."""

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            setattr(self, f.name, int(state[f.name]))


@dataclass
class Counters(_IntFields):
    """``epoch``: epochs completed; ``batch_in_epoch``: minibatches done in the current
    epoch; ``iteration``: 0-based index of the last minibatch done (the tutorial's ``iter``)."""

    epoch: int = 0
    batch_in_epoch: int = 0
    iteration: int = -1


@dataclass
class IntervalStats:
    """Sums since the last validation, kept on the device (no host sync per step)."""

    loss_sum: torch.Tensor
    loss_count: int = 0
    grad_max: torch.Tensor = field(default_factory=lambda: torch.zeros(()))

    @classmethod
    def zeros(cls, device: torch.device) -> IntervalStats:
        return cls(
            torch.zeros((), dtype=torch.float64, device=device),
            0,
            torch.zeros((), device=device),
        )

    def take(self) -> tuple[float, float]:
        """``(mean train cost, largest gradient norm)`` of the interval; starts a new one."""
        mean = (self.loss_sum / max(self.loss_count, 1)).item()
        grad_max = self.grad_max.item()
        self.loss_sum.zero_()
        self.loss_count = 0
        self.grad_max.zero_()
        return mean, grad_max

    def state_dict(self) -> dict[str, Any]:
        return {
            "loss_sum": self.loss_sum,
            "loss_count": self.loss_count,
            "grad_max": self.grad_max,
        }

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        self.loss_sum = state["loss_sum"].to(device)
        self.loss_count = int(state["loss_count"])
        self.grad_max = state["grad_max"].to(device)


@dataclass
class Faults(_IntFields):
    """Minibatches dropped for non-finite values, and the current run of them in a row."""

    skipped_batches: int = 0
    bad_streak: int = 0  # consecutive dropped minibatches
    last_bad_iteration: int = -2  # 0-based iteration of the last dropped minibatch

    def record(self, iteration: int) -> int:
        """Count a dropped minibatch at 0-based ``iteration``; returns the streak length."""
        consecutive = self.last_bad_iteration == iteration - 1
        self.bad_streak = self.bad_streak + 1 if consecutive else 1
        self.last_bad_iteration = iteration
        self.skipped_batches += 1
        return self.bad_streak


@dataclass
class BestPoint:
    """The best validation point so far, and the test set scored there."""

    epoch: int
    iteration: int
    valid_error: float
    valid_nll: float
    valid_f1: float
    test_error: float
    test_nll: float
    test_f1: float
    test_predictions: torch.Tensor

    def state_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> BestPoint | None:
        return cls(**state) if state else None


@dataclass
class TargetReached:
    """When the test error at a new best first met ``target_error``."""

    iteration: int
    epoch: int
    seconds: float


@dataclass
class Clock:
    """Training seconds: those of earlier processes (``elapsed``) plus this one's."""

    elapsed: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    def start(self) -> None:
        self.started = time.perf_counter()

    def seconds(self) -> float:
        return self.elapsed + time.perf_counter() - self.started


@dataclass
class Progress:
    """Everything of a run that is not a component (model, optimizer, ...) and must resume."""

    counters: Counters
    interval: IntervalStats
    faults: Faults = field(default_factory=Faults)
    best: BestPoint | None = None
    best_state: dict[str, torch.Tensor] | None = None
    history: list[ValidationRecord] = field(default_factory=list)
    stopped_because: str | None = None
    clock: Clock = field(default_factory=Clock)
    target: TargetReached | None = None

    @classmethod
    def start(cls, device: torch.device) -> Progress:
        return cls(Counters(), IntervalStats.zeros(device))

    def state_dict(self) -> dict[str, Any]:
        return {
            "counters": self.counters.state_dict(),
            "stopped_because": self.stopped_because,
            "best": self.best.state_dict() if self.best is not None else {},
            "best_state": self.best_state,
            "accumulators": self.interval.state_dict(),
            "faults": self.faults.state_dict(),
            "history": [row.to_row() for row in self.history],
            "elapsed": self.clock.seconds(),
            "target_reached": asdict(self.target) if self.target is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        self.counters.load_state_dict(state["counters"])
        # A run that stopped early must not train on when its last checkpoint is resumed.
        self.stopped_because = state["stopped_because"]
        self.best = BestPoint.from_state(dict(state["best"]))
        self.best_state = (
            {k: v.to(device) for k, v in state["best_state"].items()}
            if state["best_state"] is not None
            else None
        )
        self.interval.load_state_dict(state["accumulators"], device)
        self.faults.load_state_dict(state["faults"])
        self.history = [ValidationRecord.from_row(row) for row in state["history"]]
        self.clock = Clock(elapsed=float(state["elapsed"]))
        target = state["target_reached"]
        self.target = TargetReached(**target) if target is not None else None


# ------------------------------------------------------------------ random generators
def rng_state_dict(shuffle: torch.Generator, epoch_start: torch.Tensor) -> dict[str, Any]:
    """Every generator a run draws from: torch, CUDA, numpy, python and the shuffling one
    (now, and at the start of the epoch, from which ``Batches.iter_from`` replays it)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(np.asarray(keys).astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": [version, list(internal), gauss],
        "shuffle_epoch_start": epoch_start,
        "shuffle": shuffle.get_state(),
    }


def load_rng_state(state: dict[str, Any], shuffle: torch.Generator) -> torch.Tensor:
    """Restore what :func:`rng_state_dict` saved; returns the epoch-start shuffle state."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(
        (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"])
    )
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    shuffle.set_state(state["shuffle"])
    epoch_start: torch.Tensor = state["shuffle_epoch_start"]
    return epoch_start
