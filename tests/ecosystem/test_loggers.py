"""Loggers: metrics.jsonl/.csv in the run directory, stdout lines, TensorBoard event files."""

from __future__ import annotations

import csv
import io
import json
import sys

import pytest

import descentlab
from descentlab.errors import ConfigError
from descentlab.train import ConsoleLogger, TensorBoardLogger


def _fit(data, quick, **options):
    return descentlab.fit("mlp", data, **{**quick, **options})


def test_metrics_files_hold_one_row_per_validation(small_digits, quick, tmp_path):
    result = _fit(small_digits, quick, max_epochs=3, early_stopping="none", out=str(tmp_path / "r"))
    run = tmp_path / "r"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows == json.loads(json.dumps(result.history))
    with open(run / "metrics.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 3
    assert list(table[0]) == list(result.history[0])
    for line, row in zip(table, result.history):
        assert int(line["iteration"]) == row["iteration"]
        assert float(line["valid_error"]) == pytest.approx(row["valid_error"])
        assert float(line["train_nll"]) == pytest.approx(row["train_nll"])


def test_console_logger_prints_one_line_per_validation(small_digits, quick):
    stream = io.StringIO()
    result = _fit(
        small_digits,
        quick,
        max_epochs=2,
        early_stopping="none",
        callbacks=[ConsoleLogger(stream)],
    )
    header, *lines = stream.getvalue().splitlines()
    assert header.startswith("descentlab: training")  # the run, its threads and where
    assert len(lines) == len(result.history) == 2
    for line, row in zip(lines, result.history):
        assert line.startswith(f"epoch {row['epoch']:4d}")
        assert f"valid {100 * row['valid_error']:6.3f}%" in line
        assert f"iter {row['iteration'] + 1:7d}" in line


def test_missing_tensorboard_is_a_config_error(monkeypatch):
    # None in sys.modules makes the import fail as if the package were not installed.
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ConfigError, match=r"tensorboard.*pip install 'descentlab\[tensorboard\]'"):
        TensorBoardLogger("unused")


@pytest.fixture
def event_accumulator():
    pytest.importorskip(
        "tensorboard", reason="the optional tensorboard package is not installed (descentlab[tb])"
    )
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def read(log_dir):
        acc = EventAccumulator(str(log_dir))
        acc.Reload()
        return acc

    return read


def test_tensorboard_event_files_hold_the_scalars(small_digits, quick, tmp_path, event_accumulator):
    run = tmp_path / "r"
    result = _fit(
        small_digits,
        quick,
        max_epochs=3,
        early_stopping="tutorial",
        validation_frequency=2,
        patience=10_000,
        out=str(run),
        tensorboard=True,
    )
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    acc = event_accumulator(run / "tensorboard")
    steps = [row["iteration"] + 1 for row in result.history]
    assert steps == [2, 4, 6, 8, 10, 12]
    for key in ("train_nll", "valid_error", "valid_nll", "valid_f1", "best_valid_error", "lr"):
        events = acc.Scalars(key)
        assert [e.step for e in events] == steps, key
        assert [e.value for e in events] == pytest.approx(
            [row[key] for row in result.history], rel=1e-6
        ), key
    # test_error only where a new best validation error made the trainer score the test set
    improved = [(s, row["test_error"]) for s, row in zip(steps, result.history) if row["improved"]]
    assert [(e.step, e.value) for e in acc.Scalars("test_error")] == [
        (s, pytest.approx(v, rel=1e-6)) for s, v in improved
    ]
    assert "grad_norm" not in acc.Tags()["scalars"]  # not logged unless asked for


def test_tensorboard_logs_grad_norm_when_asked(small_digits, quick, tmp_path, event_accumulator):
    run = tmp_path / "r"
    result = _fit(
        small_digits,
        quick,
        max_epochs=2,
        early_stopping="none",
        log_grad_norm=True,
        out=str(run),
        tensorboard=True,
    )
    events = event_accumulator(run / "tensorboard").Scalars("grad_norm")
    assert [e.value for e in events] == pytest.approx(
        [row["grad_norm"] for row in result.history], rel=1e-6
    )


def test_tensorboard_with_a_bad_option_leaves_no_run_directory(small_digits, quick, tmp_path):
    pytest.importorskip("tensorboard", reason="the optional tensorboard package is not installed")
    run = tmp_path / "r"
    with pytest.raises(ConfigError, match="batch size"):
        _fit(small_digits, quick, batch_size=10**6, out=str(run), tensorboard=True)
    assert not run.exists()


def test_tensorboard_resume_does_not_log_a_step_twice(quick, tmp_path, event_accumulator):
    run = tmp_path / "r"
    first = _fit(
        "digits",  # by name: the resume reloads the data from the saved config
        quick,
        subset=200,
        max_epochs=3,
        early_stopping="none",
        out=str(run),
        tensorboard=True,
    )
    # Resume from the checkpoint before the newest (end of epoch 2): epoch 3 runs again.
    again = descentlab.fit(config=first.config, resume=True, resume_previous=True)
    assert [row["iteration"] for row in again.history] == [3, 7, 11]
    events = event_accumulator(run / "tensorboard").Scalars("valid_error")
    assert [e.step for e in events] == [4, 8, 12]
    assert [e.value for e in events] == pytest.approx(
        [row["valid_error"] for row in again.history], rel=1e-6
    )
