"""pixel_scale=256: the IDX pixels become exactly the tutorial's mnist.pkl.gz values k/256."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from datahelpers import make_idx_folder

from descentlab.data import load_dataset
from descentlab.data.preprocess import scale_images


def _read_idx_independently(path: Path) -> np.ndarray:
    """IDX by its published layout: 0x0000, dtype 0x08, ndim, big-endian sizes, bytes."""
    raw = gzip.decompress(path.read_bytes())
    assert raw[:3] == b"\x00\x00\x08"
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def test_scale_images_divides_by_256_exactly() -> None:
    k = np.arange(256, dtype=np.uint8)
    got = scale_images(k, 256.0).numpy()
    # k/256 is a dyadic rational: float32 holds it exactly, so equality is exact
    assert np.array_equal(got, np.array([i / 256 for i in range(256)], dtype=np.float32))
    assert got.max() == np.float32(255 / 256) < 1.0
    assert scale_images(k).numpy().max() == 1.0  # the default stays /255


def test_idx_folder_with_pixel_scale_256(tmp_path: Path) -> None:
    arrays = make_idx_folder(tmp_path / "toy", n_train=120, n_test=30)
    ds = load_dataset(tmp_path / "toy", pixel_scale=256)
    want = arrays["train_images"][100:].astype(np.float64) / 256
    assert np.array_equal(ds.valid.x[:, 0].numpy().astype(np.float64), want)
    assert ds.scale == 256.0
    assert load_dataset(tmp_path / "toy").scale == 255.0  # default unchanged


def test_real_mnist_pixels_are_k_over_256_and_tutorial_split(
    shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DESCENTLAB_DATA", str(shared_data))
    ds = load_dataset("mnist", pixel_scale=256, quiet=True)
    images = _read_idx_independently(shared_data / "mnist" / "train-images-idx3-ubyte.gz")
    labels = _read_idx_independently(shared_data / "mnist" / "train-labels-idx1-ubyte.gz")
    assert images.shape == (60000, 28, 28)
    # train = the first 50,000 of the training file, valid = its last 10,000
    assert torch.equal(ds.train.y, torch.from_numpy(labels[:50000].astype(np.int64)))
    assert torch.equal(ds.valid.y, torch.from_numpy(labels[50000:].astype(np.int64)))
    for split, part in ((ds.train, images[:50000]), (ds.valid, images[50000:])):
        assert np.array_equal(split.x[:, 0].numpy(), (part / 256.0).astype(np.float32))
    assert float(ds.train.x.max()) == 255 / 256
