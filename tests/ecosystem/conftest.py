"""Small, fast datasets for the ecosystem tests (digits ships with scikit-learn)."""

from __future__ import annotations

import pytest

from descentlab.data import Dataset, load_dataset


@pytest.fixture(scope="session")
def digits() -> Dataset:
    """The 8×8 digits: 1078 / 359 / 360 examples, 10 classes, pixels in [0, 1]."""
    return load_dataset("digits")


@pytest.fixture(scope="session")
def small_digits() -> Dataset:
    """The first 200 examples of each digits split (a few milliseconds per epoch)."""
    return load_dataset("digits", subset=200)


@pytest.fixture
def quick() -> dict:
    """Options for a quick, deterministic MLP run (4 minibatches per epoch on small_digits)."""
    return {
        "optimizer": "adam",
        "lr": 1e-2,
        "batch_size": 50,
        "hidden": (16,),
        "shuffle": True,
        "quiet": True,
        "seed": 0,
    }
