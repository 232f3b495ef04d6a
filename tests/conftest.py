"""Shared test settings: one torch thread per test process, isolated caches, data location."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

DATA_DIR = os.environ.get("DESCENTLAB_DATA")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    # Tests never read or write the user's real cache.
    cache = tmp_path_factory.getbasetemp() / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))


@pytest.fixture
def mnist_dir() -> Path:
    if not DATA_DIR or not (Path(DATA_DIR) / "mnist").is_dir():
        pytest.skip("MNIST not available: set DESCENTLAB_DATA to a folder holding mnist/")
    return Path(DATA_DIR)
