"""Early stopping: when to validate, what counts as better, when to stop.

Two rules, both small objects with the same interface so the trainer (and
users) can swap them:

``TutorialEarlyStopping`` is the Deep Learning Tutorials' rule, exactly::

    patience = 5000                  # look at this many minibatches regardless
    patience_increase = 2            # wait this much longer when a new best is found
    improvement_threshold = 0.995    # a relative improvement of this much is significant
    validation_frequency = min(n_train_batches, patience // 2)

    after minibatch `iter` (0-based, counted over all epochs):
        if (iter + 1) % validation_frequency == 0:
            if this_validation_loss < best_validation_loss:
                if this_validation_loss < best_validation_loss * improvement_threshold:
                    patience = max(patience, iter * patience_increase)
                best_validation_loss = this_validation_loss    # and score the test set
        if patience <= iter: stop

``EpochPatience`` is the Keras-style rule: validate after every epoch, stop
after ``patience`` epochs without an improvement larger than ``min_delta``.

``NeverValidate`` never validates and never stops: for driving the loop epoch by
epoch without a validation set (the scikit-learn estimator without early stopping,
the training benchmark).

The trainer calls ``validation_due`` after each step, ``update`` with each
monitored value (lower is better: the trainer turns F1 into 1 − F1), and stops
once ``iteration >= stop_iteration`` or ``should_stop_after_epoch`` says so.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Protocol

from descentlab.errors import ConfigError


class EarlyStopping(Protocol):
    """What the trainer needs from an early-stopping rule."""

    best: float
    best_iteration: int

    @property
    def stop_iteration(self) -> float: ...

    def validation_due(self, iteration: int, end_of_epoch: bool) -> bool: ...

    def update(self, iteration: int, value: float) -> bool: ...

    def should_stop_after_epoch(self) -> bool: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class _SavedState:
    """``state_dict``/``load_state_dict`` over the attributes a rule names in ``_saved``.

    The checkpoint stores exactly these (a missing one is a ``KeyError`` on load).
    """

    _saved: ClassVar[tuple[str, ...]] = ()

    def state_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._saved}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in self._saved:
            setattr(self, name, state[name])


class TutorialEarlyStopping(_SavedState):
    """Patience counted in minibatch iterations, extended on significant improvements."""

    _saved = ("patience", "best", "best_iteration", "validation_frequency")

    def __init__(
        self,
        n_train_batches: int,
        *,
        patience: int = 5000,
        patience_increase: float = 2.0,
        improvement_threshold: float = 0.995,
        validation_frequency: int | None = None,
    ) -> None:
        if patience < 1:
            raise ConfigError(f"patience must be >= 1, got {patience}")
        if n_train_batches < 1:
            raise ConfigError(
                "the training set yields no minibatch",
                hint="use a smaller --batch-size or more data",
            )
        self.patience: float = patience
        self.patience_increase = patience_increase
        self.improvement_threshold = improvement_threshold
        # patience // 2 can be 0 for patience 1; validate at least every iteration.
        self.validation_frequency = validation_frequency or max(
            1, min(n_train_batches, patience // 2)
        )
        self.best = math.inf
        self.best_iteration = -1

    @property
    def stop_iteration(self) -> float:
        return self.patience

    def validation_due(self, iteration: int, end_of_epoch: bool) -> bool:
        return (iteration + 1) % self.validation_frequency == 0

    def update(self, iteration: int, value: float) -> bool:
        if value < self.best:
            if value < self.best * self.improvement_threshold:
                self.patience = max(self.patience, iteration * self.patience_increase)
            self.best = value
            self.best_iteration = iteration
            return True
        return False

    def should_stop_after_epoch(self) -> bool:
        return False


class EpochPatience(_SavedState):
    """Validate every epoch; stop after ``patience`` epochs without a ``min_delta`` improvement."""

    _saved = ("best", "best_iteration", "epochs_without_improvement")

    def __init__(self, *, patience: int = 10, min_delta: float = 0.0) -> None:
        if patience < 1:
            raise ConfigError(f"patience must be >= 1 epoch, got {patience}")
        self.patience = patience
        self.min_delta = min_delta
        self.best = math.inf
        self.best_iteration = -1
        self.epochs_without_improvement = 0
        self.stop_iteration = math.inf

    def validation_due(self, iteration: int, end_of_epoch: bool) -> bool:
        return end_of_epoch

    def update(self, iteration: int, value: float) -> bool:
        if value < self.best - self.min_delta:
            self.best = value
            self.best_iteration = iteration
            self.epochs_without_improvement = 0
            return True
        self.epochs_without_improvement += 1
        return False

    def should_stop_after_epoch(self) -> bool:
        return self.epochs_without_improvement >= self.patience


class NoEarlyStopping(EpochPatience):
    """Validate every epoch, keep the best, never stop early (run all max_epochs)."""

    def __init__(self) -> None:
        super().__init__(patience=1)

    def should_stop_after_epoch(self) -> bool:
        return False


class NeverValidate(_SavedState):
    """No validation passes and no stopping: epochs are run as the caller asks."""

    def __init__(self) -> None:
        self.best = math.inf
        self.best_iteration = -1
        self.stop_iteration = math.inf

    def validation_due(self, iteration: int, end_of_epoch: bool) -> bool:
        return False

    def update(self, iteration: int, value: float) -> bool:
        return False

    def should_stop_after_epoch(self) -> bool:
        return False
