"""eval_style="tutorial": the mean of per-minibatch error rates over whole minibatches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from descentlab.errors import ConfigError
from descentlab.train.tutorial_eval import tutorial_error


def _per_batch_rates(wrong: np.ndarray, batch: int) -> list[float]:
    n = len(wrong) // batch
    return [float(np.mean(wrong[i * batch : (i + 1) * batch])) for i in range(n)]


def test_only_whole_minibatches_count() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 10, 10000)
    pred = np.where(rng.random(10000) < 0.075, (y + 1) % 10, y)
    pred[9600:] = (y[9600:] + 1) % 10  # the last 400 are all wrong: never scored
    ours = tutorial_error(torch.from_numpy(pred), torch.from_numpy(y), 600)
    rates = _per_batch_rates(pred != y, 600)
    assert len(rates) == 16
    assert abs(ours - float(np.mean(rates))) < 1e-15
    assert abs(ours - float((pred[:9600] != y[:9600]).mean())) < 1e-15


def test_rates_are_summed_left_to_right_as_old_numpy_did() -> None:
    # Per-minibatch error counts where the order of summation changes the last bit:
    # the tutorial's validation points tie or not on exactly such a bit.
    counts = [46, 45, 45, 49, 42, 48, 46, 40, 43, 48, 45, 40, 47, 47, 48, 41]  # 720 of 9600
    wrong = np.concatenate([np.arange(600) < c for c in counts])
    y = np.zeros(9600, dtype=np.int64)
    pred = wrong.astype(np.int64)
    sequential = 0.0
    for c in counts:
        sequential += c / 600
    sequential /= 16
    ours = tutorial_error(torch.from_numpy(pred), torch.from_numpy(y), 600)
    assert ours == sequential == 0.075
    # numpy >= 1.9 sums pairwise and lands one bit higher: the test tells them apart
    assert float(np.mean([c / 600 for c in counts])) == 0.07500000000000001


def test_mlp_and_lenet_batches_cover_the_split() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 10, 10000)
    pred = np.where(rng.random(10000) < 0.02, (y + 3) % 10, y)
    for batch in (20, 500):
        ours = tutorial_error(torch.from_numpy(pred), torch.from_numpy(y), batch)
        assert abs(ours - float((pred != y).mean())) < 1e-15


def test_split_smaller_than_a_minibatch_is_a_config_error() -> None:
    y = torch.zeros(30, dtype=torch.int64)
    with pytest.raises(ConfigError, match="whole minibatches of 50"):
        tutorial_error(y, y, 50)
