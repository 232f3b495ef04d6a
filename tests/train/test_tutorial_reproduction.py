"""`descentlab train` with no options is the tutorial's logistic regression, exactly.

The expected lines are the ones the tutorial's documentation prints (doc/logreg.txt,
collected in shared/reference/dlt-published.md), not numbers from our own runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from descentlab.cli.main import main
from descentlab.experiments.reproduce import run_reproduction

PUBLISHED_TAIL = [
    "epoch 72, minibatch 83/83, validation error 7.510417 %",
    "     epoch 72, minibatch 83/83, test error of best model 7.510417 %",
    "epoch 73, minibatch 83/83, validation error 7.500000 %",
    "     epoch 73, minibatch 83/83, test error of best model 7.489583 %",
    "Optimization complete with best validation score of 7.500000 %,"
    "with test performance 7.489583 %",
]


@pytest.mark.mnist
@pytest.mark.slow
def test_default_train_prints_the_published_lines(
    mnist_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = ["train", "--data-dir", str(mnist_dir), "--log-style", "tutorial", "--out", str(out)]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    end = next(i for i, line in enumerate(lines) if line.startswith("Optimization complete"))
    assert lines[end - 4 : end + 1] == PUBLISHED_TAIL
    assert lines[end + 1].startswith("The code run for 74 epochs, with ")


@pytest.mark.mnist
@pytest.mark.slow
def test_reproduce_writes_the_comparison(mnist_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "rep"
    result, path = run_reproduction("dlt-logreg", out, threads=1, quiet=True)
    assert result.summary["epochs_run"] == 74 and result.summary["best_epoch"] == 73
    text = path.read_text()
    assert "| best validation error | 7.500000 % | 7.500000 % | +0.000000 pt |" in text
    assert "| test error at that point | 7.489583 % | 7.489583 % | +0.000000 pt |" in text
    assert "| epoch (iteration) of the best model | 73 (6059) | 73 (6059) | +0 |" in text
