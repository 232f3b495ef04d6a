"""Training events: order, arguments, ``on_step`` once per minibatch, replaceable pieces."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

import descentlab
from descentlab.train import Callback, Checkpointer, TrainConfig, Trainer


class Recorder(Callback):
    """Records every event with its arguments (on_step included: it overrides it)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, tuple[Any, ...]]] = []
        self.trainers: set[int] = set()

    def _record(self, name: str, trainer: Trainer, *args: Any) -> None:
        assert isinstance(trainer, Trainer)
        self.trainers.add(id(trainer))
        self.events.append((name, args))

    def on_train_start(self, trainer):
        self._record("train_start", trainer)

    def on_epoch_start(self, trainer, epoch):
        self._record("epoch_start", trainer, epoch)

    def on_step(self, trainer, iteration, loss):
        self._record("step", trainer, iteration, loss)

    def on_validation(self, trainer, row):
        self._record("validation", trainer, row)

    def on_epoch_end(self, trainer, epoch):
        self._record("epoch_end", trainer, epoch)

    def on_checkpoint(self, trainer, path):
        self._record("checkpoint", trainer, path)

    def on_train_end(self, trainer, result):
        self._record("train_end", trainer, result)

    def names(self) -> list[str]:
        return [name for name, _ in self.events]

    def of(self, name: str) -> list[tuple[Any, ...]]:
        return [args for n, args in self.events if n == name]


def check_grammar(rec: Recorder, result: descentlab.FitResult, batches_per_epoch: int) -> None:
    """train_start (epoch_start(e) (step | validation)* epoch_end(e))* train_end, with
    epochs counted 1, 2, ... and minibatch iterations 0, 1, ... without gaps."""
    names = rec.names()
    assert names[0] == "train_start" and names[-1] == "train_end"
    assert names.count("train_start") == names.count("train_end") == 1
    assert len(rec.trainers) == 1  # every event came from the same trainer
    epoch, iteration, in_epoch, steps_in_epoch = 0, -1, False, 0
    for name, args in rec.events[1:-1]:
        if name == "epoch_start":
            assert not in_epoch and args == (epoch + 1,)
            epoch, in_epoch, steps_in_epoch = epoch + 1, True, 0
        elif name == "step":
            assert in_epoch
            it, loss = args
            assert it == iteration + 1
            iteration, steps_in_epoch = it, steps_in_epoch + 1
            assert isinstance(loss, torch.Tensor) and loss.ndim == 0
            assert math.isfinite(float(loss))
        elif name == "validation":
            (row,) = args
            assert in_epoch and row["epoch"] == epoch and row["iteration"] == iteration
        elif name == "epoch_end":
            assert in_epoch and args == (epoch,)
            assert steps_in_epoch <= batches_per_epoch
            in_epoch = False
        else:
            pytest.fail(f"unexpected event {name}")
    assert not in_epoch
    (end_args,) = rec.of("train_end")
    assert end_args[0] is result  # on_train_end gets the very object fit returns
    assert epoch == result.summary["epochs_run"]
    assert iteration + 1 == result.summary["iterations"]
    # on_validation's rows are the history rows, in order
    assert [args[0] for args in rec.of("validation")] == result.history


def test_events_in_order_with_their_arguments(small_digits, quick):
    rec = Recorder()
    result = descentlab.fit(
        "mlp",
        small_digits,
        max_epochs=3,
        early_stopping="none",
        callbacks=[rec],
        **quick,
    )
    assert len(small_digits.train) // quick["batch_size"] == 4
    expected = ["train_start"]
    for _ in range(3):  # epochs mode validates at the end of each epoch
        expected += ["epoch_start", "step", "step", "step", "step", "validation", "epoch_end"]
    expected += ["train_end"]
    assert rec.names() == expected
    assert [a for (a,) in rec.of("epoch_start")] == [1, 2, 3]
    assert [a for (a,) in rec.of("epoch_end")] == [1, 2, 3]
    assert [args[0] for args in rec.of("step")] == list(range(12))
    rows = [row for (row,) in rec.of("validation")]
    assert [row["iteration"] for row in rows] == [3, 7, 11]
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    assert all(0.0 <= row["valid_error"] <= 1.0 for row in rows)
    check_grammar(rec, result, batches_per_epoch=4)


def test_step_loss_is_the_minibatch_cost(small_digits, quick):
    """The loss given to on_step is the cost of that step (its mean is the row's train NLL)."""
    rec = Recorder()
    result = descentlab.fit(
        "mlp", small_digits, max_epochs=2, early_stopping="none", callbacks=[rec], **quick
    )
    losses = [float(loss) for _, loss in rec.of("step")]
    for k, row in enumerate(result.history):
        assert row["train_nll"] == pytest.approx(sum(losses[4 * k : 4 * k + 4]) / 4, rel=1e-6)


def test_tutorial_rule_validates_every_validation_frequency_steps(small_digits, quick):
    rec = Recorder()
    result = descentlab.fit(
        "mlp",
        small_digits,
        max_epochs=3,
        early_stopping="tutorial",
        patience=10_000,
        validation_frequency=3,
        callbacks=[rec],
        **quick,
    )
    check_grammar(rec, result, batches_per_epoch=4)
    # each validation directly follows the step with (iteration + 1) % 3 == 0
    for i, (name, args) in enumerate(rec.events):
        if name == "validation":
            prev_name, prev_args = rec.events[i - 1]
            assert prev_name == "step" and (prev_args[0] + 1) % 3 == 0
            assert args[0]["iteration"] == prev_args[0]
    assert [row["iteration"] for row in result.history] == [2, 5, 8, 11]


def test_early_stop_inside_an_epoch_still_ends_the_epoch_and_the_run(small_digits, quick):
    rec = Recorder()
    # patience 1 iteration, validate every step: stops long before max_epochs, mid-epoch
    result = descentlab.fit(
        "mlp",
        small_digits,
        max_epochs=50,
        early_stopping="tutorial",
        patience=1,
        patience_increase=1.0,
        validation_frequency=1,
        callbacks=[rec],
        **{**quick, "lr": 1e-4},
    )
    assert result.summary["stopped_because"] == "early_stopping"
    check_grammar(rec, result, batches_per_epoch=4)
    assert rec.names()[-3:] == ["validation", "epoch_end", "train_end"]


@pytest.mark.parametrize(
    ("batch_size", "drop_last", "per_epoch"),
    [(50, True, 4), (60, True, 3), (60, False, 4), (1, True, 200)],
)
def test_on_step_once_per_minibatch(small_digits, quick, batch_size, drop_last, per_epoch):
    rec = Recorder()
    epochs = 2 if batch_size > 1 else 1
    result = descentlab.fit(
        "mlp",
        small_digits,
        max_epochs=epochs,
        early_stopping="none",
        callbacks=[rec],
        **{**quick, "batch_size": batch_size, "drop_last": drop_last},
    )
    steps = rec.of("step")
    assert len(steps) == epochs * per_epoch == result.summary["iterations"]
    assert [it for it, _ in steps] == list(range(epochs * per_epoch))


def test_on_step_is_not_called_when_no_callback_overrides_it(small_digits, quick, monkeypatch):
    calls = []
    monkeypatch.setattr(Callback, "on_step", lambda self, *args: calls.append(args))

    class EpochsOnly(Callback):
        def __init__(self) -> None:
            self.epochs: list[int] = []

        def on_epoch_end(self, trainer, epoch):
            self.epochs.append(epoch)

    cb = EpochsOnly()
    descentlab.fit(
        "mlp", small_digits, max_epochs=2, early_stopping="none", callbacks=[cb], **quick
    )
    assert cb.epochs == [1, 2]
    assert calls == []  # the hot loop never called the (inherited, empty) on_step


class StopAfterValidations:
    """A custom early-stopping rule: validate every ``every`` steps, stop after ``n`` of them."""

    def __init__(self, every: int, n: int) -> None:
        self.every, self.n = every, n
        self.seen: list[tuple[int, float]] = []
        self.best = math.inf
        self.best_iteration = -1
        self.stop_iteration = math.inf

    def validation_due(self, iteration: int, end_of_epoch: bool) -> bool:
        return (iteration + 1) % self.every == 0

    def update(self, iteration: int, value: float) -> bool:
        self.seen.append((iteration, value))
        if len(self.seen) >= self.n:
            self.stop_iteration = iteration
        if value < self.best:
            self.best, self.best_iteration = value, iteration
            return True
        return False

    def should_stop_after_epoch(self) -> bool:
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"seen": list(self.seen), "best": self.best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seen, self.best = list(state["seen"]), state["best"]


def test_custom_early_stopping_rule_on_a_trainer(small_digits, quick):
    config = TrainConfig(dataset="digits", model="mlp", max_epochs=20, **quick)
    trainer = Trainer(config, data=small_digits)
    rule = StopAfterValidations(every=3, n=3)
    trainer.stopper = rule
    result = trainer.fit()
    assert [it for it, _ in rule.seen] == [2, 5, 8]
    assert result.summary["stopped_because"] == "early_stopping"
    assert result.summary["iterations"] == 9
    assert [row["iteration"] for row in result.history] == [2, 5, 8]
    assert [row["valid_error"] for row in result.history] == [v for _, v in rule.seen]


def test_custom_early_stopping_rule_through_fit(small_digits, quick):
    """``fit`` has no stopper argument; a callback can install one at on_train_start."""
    rule = StopAfterValidations(every=2, n=2)

    class UseRule(Callback):
        def on_train_start(self, trainer):
            trainer.stopper = rule

    result = descentlab.fit("mlp", small_digits, max_epochs=20, callbacks=[UseRule()], **quick)
    assert [it for it, _ in rule.seen] == [1, 3]
    assert result.summary["iterations"] == 4


def test_console_logger_and_progress_bar_are_replaceable(small_digits, quick, capsys):
    options = {**quick, "quiet": False}
    descentlab.fit("mlp", small_digits, max_epochs=2, early_stopping="none", **options)
    header, *lines = capsys.readouterr().out.splitlines()
    assert header.startswith("descentlab: training mlp")  # the run, its threads, where
    assert len(lines) == 2 and all(line.startswith("epoch") for line in lines)

    rec = Recorder()
    descentlab.fit(
        "mlp",
        small_digits,
        max_epochs=2,
        early_stopping="none",
        callbacks=[rec],
        default_callbacks_=False,
        **options,
    )
    assert capsys.readouterr().out == ""  # the default stdout logger is gone ...
    assert len(rec.of("validation")) == 2  # ... and the user's callback got the rows


def test_checkpointing_is_a_callback(small_digits, quick, tmp_path):
    # Without the default callbacks nothing but the (empty) run directory is written ...
    out = tmp_path / "bare"
    descentlab.fit(
        "mlp",
        small_digits,
        max_epochs=2,
        early_stopping="none",
        out=str(out),
        default_callbacks_=False,
        **quick,
    )
    # (the one-writer lock of issue 13 is the run directory's own, not a callback's output)
    assert [p.name for p in out.iterdir() if p.name != ".descentlab.lock"] == []
    # ... and a Checkpointer alone writes checkpoints (and emits on_checkpoint) each epoch.
    rec = Recorder()
    out = tmp_path / "ckpt"
    descentlab.fit(
        "mlp",
        small_digits,
        max_epochs=2,
        early_stopping="none",
        out=str(out),
        default_callbacks_=False,
        callbacks=[Checkpointer(), rec],
        **quick,
    )
    assert (out / "checkpoint").is_dir()
    assert [n for n in rec.names() if n in ("checkpoint", "epoch_end")] == [
        "checkpoint",
        "epoch_end",
        "checkpoint",
        "epoch_end",
    ]
