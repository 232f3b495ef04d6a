"""The training loop end to end: MNIST subset, determinism, best-point bookkeeping, run files."""

from __future__ import annotations

import json

import pytest
import torch

import descentlab as dl
from descentlab.train import evaluate, load_run
from descentlab.train.trainer import FitResult

TIMING_KEYS = {"train_seconds", "seconds_per_epoch", "seconds_to_target"}


def small_fit(**kw) -> FitResult:
    options = dict(
        model="mlp",
        dataset="digits",
        hidden=(16,),
        lr=0.1,
        batch_size=32,
        max_epochs=4,
        shuffle=True,
        quiet=True,
        early_stopping="epochs",
        patience=10,
    )
    options.update(kw)
    return dl.fit(**options)


def test_same_seed_is_bit_identical():
    a = small_fit(seed=7, dropout=0.2)
    b = small_fit(seed=7, dropout=0.2)
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k
    strip = lambda s: {k: v for k, v in s.items() if k not in TIMING_KEYS}  # noqa: E731
    assert strip(a.summary) == strip(b.summary)
    c = small_fit(seed=8, dropout=0.2)
    assert not torch.equal(next(a.model.parameters()), next(c.model.parameters()))


def test_returned_model_is_the_best_validation_point():
    result = small_fit(max_epochs=6)
    data = result.data
    test = evaluate(result.model, data.test, n_classes=data.n_classes)
    valid = evaluate(result.model, data.valid, n_classes=data.n_classes)
    assert valid.error == pytest.approx(result.summary["best_valid_error"])
    assert test.error == pytest.approx(result.summary["test_error"])
    # the test set is scored only when validation improved
    for row in result.history:
        assert (row["test_error"] is not None) == row["improved"]


@pytest.mark.parametrize("optimizer", ["nesterov", "rmsprop-nesterov", "adam", "torch.SGD"])
def test_optimizers_train_through_the_closure(optimizer):
    lr = {"nesterov": 0.05, "rmsprop-nesterov": 1e-3, "adam": 1e-3, "torch.SGD": 0.1}[optimizer]
    result = small_fit(optimizer=optimizer, lr=lr)
    assert result.summary["best_valid_error"] < 0.5


def test_l1_l2_penalties_shrink_weights():
    plain = small_fit(seed=1)
    reg = small_fit(seed=1, l2=0.05, l1=0.001)

    def w(r):
        return sum(p.abs().sum().item() for n, p in r.model.named_parameters() if p.ndim > 1)

    assert w(reg) < w(plain)


@pytest.mark.mnist
def test_mnist_subset_end_to_end(mnist_dir, tmp_path):
    out = tmp_path / "run"
    result = dl.fit(
        "logreg",
        "mnist",
        data_dir=str(mnist_dir),
        subset=5000,
        max_epochs=15,
        quiet=True,
        out=str(out),
    )
    s = result.summary
    assert s["n_train"] == 5000 and s["n_valid"] == 5000 and s["n_test"] == 5000
    assert 0.05 < s["test_error"] < 0.16
    assert s["epochs_run"] == 15 and s["iterations"] == 15 * (5000 // 600)
    for name in (
        "config.toml",
        "metrics.jsonl",
        "metrics.csv",
        "summary.json",
        "model.safetensors",
        "learning_curve.png",
        "test_predictions.npy",
    ):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    for key in (
        "dataset",
        "model",
        "optimizer",
        "best_valid_error",
        "test_error",
        "best_epoch",
        "best_iteration",
        "epochs_run",
        "train_seconds",
        "seconds_per_epoch",
        "seed",
        "descentlab_version",
        "torch_version",
    ):
        assert key in summary, key
    assert 0 <= summary["test_error"] <= 1
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 15 and rows[-1]["epoch"] == 15
    run = load_run(out)
    test = evaluate(run.model, result.data.test, n_classes=10)
    assert test.error == pytest.approx(s["test_error"])
    # raw pixels through the saved run's own scaling give the same predictions
    raw = (result.data.test.x[:50] * 255).round()
    assert torch.equal(run.predict(raw), run.predict(raw))
    assert (run.predict(raw) == result.data.test.y[:50]).float().mean() > 0.7


def test_target_error_is_recorded():
    result = small_fit(target_error=0.5, max_epochs=3)
    assert result.summary["iterations_to_target"] is not None
    assert result.summary["seconds_to_target"] > 0


def test_stop_at_target_stops_at_the_validation_that_reached_it():
    # Same seed and options: the run that stops is the run that goes on, cut short.
    full = small_fit(target_error=0.5, max_epochs=3, validation_frequency=5)
    cut = small_fit(target_error=0.5, max_epochs=3, validation_frequency=5, stop_at_target=True)
    reached = full.summary["iterations_to_target"]
    assert reached is not None and reached < full.summary["iterations"] - 1
    assert cut.summary["stopped_because"] == "target_reached"
    assert cut.summary["iterations_to_target"] == reached
    assert cut.history[-1]["iteration"] == reached

    def untimed(rows):
        return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]

    assert untimed(cut.history) == untimed(full.history[: len(cut.history)])


def test_stop_at_target_without_a_target_is_refused():
    with pytest.raises(dl.ConfigError, match="needs a target_error"):
        dl.TrainConfig(stop_at_target=True)
