"""Helpers shared by the data tests: tiny IDX datasets and matching download specs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from descentlab.data import sources
from descentlab.data.idx import write_idx

IDX_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def make_idx_folder(
    folder: Path,
    *,
    n_train: int = 120,
    n_test: int = 30,
    side: int = 28,
    n_classes: int = 10,
    gz: bool = True,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Write a small MNIST-shaped dataset as the four IDX files; return the arrays."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, side, side), dtype=np.uint8),
        "train_labels": (np.arange(n_train) % n_classes).astype(np.uint8),
        "test_images": rng.integers(0, 256, (n_test, side, side), dtype=np.uint8),
        "test_labels": (np.arange(n_test) % n_classes).astype(np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for role, arr in arrays.items():
        write_idx(folder / (IDX_NAMES[role] + (".gz" if gz else "")), arr)
    return arrays


def idx_spec(folder: Path, name: str = "toy", mirrors: tuple[str, ...] = ()) -> sources.FilesetSpec:
    """A FilesetSpec whose checksums are those of the .gz files in ``folder``."""
    files = {}
    for role, base in IDX_NAMES.items():
        gz = (folder / f"{base}.gz").read_bytes()
        files[role] = sources.FileSpec(
            base,
            hashlib.md5(gz, usedforsecurity=False).hexdigest(),
            sources.decompressed_sha256(folder / f"{base}.gz"),
        )
    return sources.FilesetSpec(name=name, files=files, mirrors=mirrors)
