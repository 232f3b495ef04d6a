"""one_hot, standardization statistics, image scaling and the stratified split."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from descentlab.data import feature_stats, one_hot, scale_images, standardize, stratified_split
from descentlab.data.splits import holdout_fractions
from descentlab.errors import ConfigError, DataError


def test_one_hot_is_rows_of_the_identity() -> None:
    y = [0, 1, 0, 1, 1, 0]  # the tutorial's example
    expected = torch.from_numpy(np.eye(2, dtype=np.float32)[y])
    assert torch.equal(one_hot(y, 2), expected)
    assert torch.equal(one_hot(np.array([2, 0]), 3), torch.tensor([[0.0, 0, 1], [1, 0, 0]]))
    assert one_hot(torch.tensor([1]), 4, dtype=torch.float64).dtype == torch.float64
    assert one_hot([], 3).shape == (0, 3)


@pytest.mark.parametrize(
    "y, k, match",
    [
        ([0, 3], 3, "outside"),
        ([-1, 0], 3, "outside"),
        ([0.0, 1.0], 3, "integer"),
        ([[0, 1]], 3, "shape"),
        ([0], 0, ">= 1"),
        ([0], 2.0, "integer"),
    ],
)
def test_one_hot_errors(y: list, k: object, match: str) -> None:
    with pytest.raises(DataError, match=match):
        one_hot(y, k)  # type: ignore[arg-type]


def test_feature_stats_and_standardize() -> None:
    x = torch.tensor([[1.0, 5.0, 2.0], [3.0, 5.0, 4.0], [5.0, 5.0, 9.0]])
    mean, std = feature_stats(x)
    torch.testing.assert_close(mean, torch.tensor([3.0, 5.0, 5.0]))
    # Population std; the constant middle feature gets std 1 (centred, not divided by 0).
    torch.testing.assert_close(std, torch.tensor([np.sqrt(8 / 3), 1.0, np.sqrt(26 / 3)]).float())
    z = standardize(x, mean, std)
    torch.testing.assert_close(z.mean(0), torch.zeros(3), atol=1e-6, rtol=0)
    assert torch.all(z[:, 1] == 0)
    with pytest.raises(DataError, match="shape"):
        standardize(torch.zeros(2, 4), mean, std)
    with pytest.raises(DataError, match="empty"):
        feature_stats(torch.zeros(0, 3))


def test_scale_images() -> None:
    x = scale_images(np.array([[0, 255], [51, 102]], dtype=np.uint8))
    assert x.dtype == torch.float32
    torch.testing.assert_close(x, torch.tensor([[0.0, 1.0], [0.2, 0.4]]))
    with pytest.raises(DataError):
        scale_images(np.zeros(3, dtype=np.int32))


def test_stratified_split_exact_sizes_and_proportions() -> None:
    y = np.repeat(np.arange(3), [50, 30, 20])
    parts = stratified_split(y, [0.6, 0.2, 0.2], seed=0)
    assert [len(p) for p in parts] == [60, 20, 20]
    assert sorted(np.concatenate(parts).tolist()) == list(range(100))
    for p, f in zip(parts, (0.6, 0.2, 0.2)):
        counts = np.bincount(y[p], minlength=3)
        assert np.all(np.abs(counts - f * np.array([50, 30, 20])) <= 1)
    again = stratified_split(y, [0.6, 0.2, 0.2], seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))
    other = stratified_split(y, [0.6, 0.2, 0.2], seed=1)
    assert not np.array_equal(parts[0], other[0])


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(1, 40), min_size=1, max_size=6),
    vf=st.floats(0.05, 0.95),
    seed=st.integers(0, 2**31),
)
def test_stratified_split_partitions_property(counts: list[int], vf: float, seed: int) -> None:
    y = np.repeat(np.arange(len(counts)), counts)
    fractions = holdout_fractions(vf, with_test=True)
    parts = stratified_split(y, fractions, seed=seed)
    assert sorted(np.concatenate(parts).tolist()) == list(range(len(y)))
    for p, f in zip(parts, fractions):
        assert abs(len(p) - f * len(y)) <= 1.5  # totals are rounded shares
        per_class = np.bincount(y[p], minlength=len(counts))
        assert np.all(np.abs(per_class - f * np.array(counts)) <= 2)


@pytest.mark.parametrize("fractions", [[0.5, 0.6], [1.0, 0.0], [], [-0.2, 1.2]])
def test_stratified_split_bad_fractions(fractions: list) -> None:
    with pytest.raises(ConfigError):
        stratified_split(np.zeros(10), fractions)


def test_holdout_fractions_default_is_60_20_20() -> None:
    assert np.allclose(holdout_fractions(None, with_test=True), [0.6, 0.2, 0.2])
    assert np.allclose(holdout_fractions(0.1, with_test=False), [0.9, 0.1])
