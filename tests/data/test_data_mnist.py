"""Facts about the real MNIST and Fashion-MNIST files (needs DESCENTLAB_DATA)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from descentlab.data import Batches, load_dataset, read_idx
from descentlab.data.sources import SPECS

pytestmark = pytest.mark.mnist

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def mnist() -> object:
    import os

    root = os.environ.get("DESCENTLAB_DATA")
    if not root or not (Path(root) / "mnist").is_dir():
        pytest.skip("real MNIST not available: set DESCENTLAB_DATA to a folder holding mnist/")
    return load_dataset("mnist", offline=True)


def test_label_counts_in_the_files(shared_data: Path) -> None:
    train = read_idx(shared_data / "mnist" / "train-labels-idx1-ubyte.gz")
    test = read_idx(shared_data / "mnist" / "t10k-labels-idx1-ubyte.gz")
    assert np.bincount(train).tolist() == TRAIN_COUNTS
    assert np.bincount(test).tolist() == TEST_COUNTS


def test_mean_training_pixel(shared_data: Path) -> None:
    images = read_idx(shared_data / "mnist" / "train-images-idx3-ubyte.gz")
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8
    assert images.mean() == pytest.approx(33.318, abs=1e-3)
    assert images.mean() / 255 == pytest.approx(0.1307, abs=5e-5)


def test_tutorial_split(mnist, shared_data: Path) -> None:
    ds = mnist
    assert [len(s) for _, s in ds] == [50000, 10000, 10000]
    assert ds.input_shape == (1, 28, 28) and ds.n_classes == 10 and ds.scale == 255.0
    assert ds.train.x.dtype == torch.float32 and ds.train.y.dtype == torch.int64
    assert float(ds.train.x.min()) == 0.0 and float(ds.train.x.max()) == 1.0
    labels = read_idx(shared_data / "mnist" / "train-labels-idx1-ubyte.gz")
    # train = first 50,000 of the training file, valid = its last 10,000.
    assert np.array_equal(ds.train.y.numpy(), labels[:50000])
    assert np.array_equal(ds.valid.y.numpy(), labels[50000:])
    assert np.bincount(ds.test.y.numpy()).tolist() == TEST_COUNTS
    pooled = torch.cat([ds.train.x, ds.valid.x]).double().mean()
    assert float(pooled) == pytest.approx(0.1307, abs=5e-5)


def test_tutorial_batches(mnist) -> None:
    b = Batches(mnist.train, 600, shuffle=True, generator=torch.Generator().manual_seed(0))
    assert len(b) == 83 and b.examples_per_epoch == 49800
    xb, yb = next(iter(b))
    assert xb.shape == (600, 1, 28, 28) and yb.shape == (600,)


def test_standardize_and_subset(shared_data: Path) -> None:
    ds = load_dataset("mnist", offline=True, subset=2000, standardize=True)
    assert [len(s) for _, s in ds] == [2000, 2000, 2000]
    assert ds.mean is not None and ds.mean.shape == (1, 28, 28)
    torch.testing.assert_close(ds.train.x.mean(0), torch.zeros(1, 28, 28), atol=1e-4, rtol=0)


def test_valid_fraction_gives_stratified_split(shared_data: Path) -> None:
    ds = load_dataset("mnist", offline=True, valid_fraction=1 / 6, seed=0)
    assert [len(s) for _, s in ds] == [50000, 10000, 10000]
    counts = np.bincount(ds.valid.y.numpy())
    assert np.all(np.abs(counts - np.array(TRAIN_COUNTS) / 6) <= 2)


def test_fashion_mnist_class_balance(shared_data: Path) -> None:
    folder = shared_data / "fashion-mnist"
    train = read_idx(folder / "train-labels-idx1-ubyte.gz")
    test = read_idx(folder / "t10k-labels-idx1-ubyte.gz")
    assert np.bincount(train).tolist() == [6000] * 10
    assert np.bincount(test).tolist() == [1000] * 10
    ds = load_dataset("fashion-mnist", offline=True, subset=100)
    assert ds.class_names is not None and ds.class_names[9] == "Ankle boot"


def test_builtin_checksums_match_shared_sums(shared_data: Path) -> None:
    from descentlab.data.sources import read_sums

    for name in ("mnist", "fashion-mnist"):
        sums = read_sums(shared_data / name)
        assert {f.name: f.sha256 for f in SPECS[name].files.values()} == sums
