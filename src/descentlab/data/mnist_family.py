"""MNIST-family datasets: IDX files (with a decoded-array cache) or the tutorial's pickle.

The tutorial's split: train = the first 50,000 examples of the 60,000-example training
file, valid = its last 10,000, test = the 10,000-example test file; ``valid_fraction``
replaces the fixed validation split by a seeded stratified one.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from descentlab.data.checks import check_features, check_labels, dataset_from_raw
from descentlab.data.containers import (
    Dataset,
    LoadOptions,
    Split,
    assemble_dataset,
)
from descentlab.data.idx import read_idx
from descentlab.data.preprocess import scale_images
from descentlab.data.safe_pickle import load_mnist_pkl
from descentlab.data.sources import DatasetFiles, cache_dir, find_dataset_files
from descentlab.data.splits import holdout_fractions, stratified_split
from descentlab.errors import ConfigError, DataError, DescentlabError
from descentlab.fsio import atomic_write_bytes, sha256_bytes
from descentlab.limits import check_classes, limit

__all__ = [
    "FASHION_CLASSES",
    "MNIST_CLASSES",
    "evict_cache",
    "load_idx_dataset",
    "load_pickle_dataset",
    "named_idx_loader",
    "read_idx_cached",
]


def _decoded_cache_path(path: Path) -> Path:
    st = path.stat()
    # One cache folder per source folder (named by a hash of its absolute path), one
    # entry per file version (size and mtime in the name).
    folder = hashlib.sha256(str(path.resolve().parent).encode()).hexdigest()[:16]
    base = path.name.removesuffix(".gz")
    return cache_dir() / "decoded" / folder / f"{base}-{st.st_size}-{st.st_mtime_ns}.npy"


def read_idx_cached(path: Path, sha256: str | None = None) -> np.ndarray:
    """:func:`read_idx` with the decoded array cached as ``.npy`` in the user cache.

    The cache entry is keyed by the source's absolute path, size and mtime, so a
    changed file is decoded (and checksum-verified) afresh.  Each entry has a
    ``.sha256`` next to it, recorded when it was written and checked before every use:
    an entry that was changed (or half-written) is decoded again, never trusted.
    Entries are written atomically, and the cache is kept under
    ``DESCENTLAB_CACHE_MAX_BYTES`` (default 1 GiB) by evicting the least recently used.
    Set ``DESCENTLAB_NO_CACHE=1`` to bypass the cache; an unwritable cache is ignored.
    """
    if os.environ.get("DESCENTLAB_NO_CACHE"):
        return read_idx(path, sha256=sha256)
    try:
        cached = _decoded_cache_path(path)
    except OSError:
        return read_idx(path, sha256=sha256)
    array = _read_cache_entry(cached)
    if array is not None:
        return array
    array = read_idx(path, sha256=sha256)
    with contextlib.suppress(OSError, DescentlabError):
        _write_cache_entry(cached, array)
        # Drop entries for older versions of the same source file.
        prefix = cached.name.rsplit("-", 2)[0] + "-"
        for old in cached.parent.glob(f"{prefix}*.npy"):
            if old != cached:
                _remove_entry(old)
        evict_cache(cached.parent.parent)
    return array


def _read_cache_entry(cached: Path) -> np.ndarray | None:
    """The entry's array if its bytes match the recorded checksum, else None."""
    try:
        expected = cached.with_name(cached.name + ".sha256").read_text(encoding="ascii").strip()
        data = cached.read_bytes()
    except (OSError, UnicodeDecodeError):
        return None
    if sha256_bytes(data) != expected:
        _remove_entry(cached)
        return None
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    with contextlib.suppress(OSError):
        os.utime(cached)  # most recently used: evicted last
    return array


def _write_cache_entry(cached: Path, array: np.ndarray) -> None:
    cached.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    data = buffer.getvalue()
    # The checksum first: an entry without its checksum is never used.
    atomic_write_bytes(cached.with_name(cached.name + ".sha256"), sha256_bytes(data).encode())
    atomic_write_bytes(cached, data)


def _remove_entry(entry: Path) -> None:
    for p in (entry, entry.with_name(entry.name + ".sha256")):
        with contextlib.suppress(OSError):
            p.unlink()


def evict_cache(root: Path, max_bytes: int | None = None) -> None:
    """Remove the least recently used entries until the cache holds at most ``max_bytes``."""
    if max_bytes is None:
        max_bytes = limit("DESCENTLAB_CACHE_MAX_BYTES") or None
    if max_bytes is None:
        return
    entries = []
    for entry in root.glob("*/*.npy"):
        with contextlib.suppress(OSError):
            st = entry.stat()
            entries.append((st.st_mtime, st.st_size, entry))
    entries.sort()
    total = sum(size for _, size, _ in entries)
    # The newest entry (just written or used) is always kept.
    for _, size, entry in entries[:-1]:
        if total <= max_bytes:
            break
        _remove_entry(entry)
        total -= size


def _idx_arrays(found: DatasetFiles, expected_sums: dict[str, str]) -> dict[str, np.ndarray]:
    arrays = {}
    for role, path in found.files.items():
        arrays[role] = read_idx_cached(path, expected_sums.get(role))
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        where = f"{found.folder} ({part} files)"
        if images.ndim != 3 or labels.ndim != 1:
            raise DataError(
                f"{where}: images have shape {images.shape} and labels {labels.shape}; "
                "expected (N, rows, cols) and (N,)",
                hint="fix: use the images-idx3 and labels-idx1 files",
            )
        if images.shape[0] != labels.shape[0]:
            raise DataError(
                f"{where}: {images.shape[0]} images but {labels.shape[0]} labels",
                hint="fix: the images and labels files must come from the same release",
            )
    return arrays


def load_idx_dataset(
    name: str,
    found: DatasetFiles,
    opts: LoadOptions,
    *,
    expected_sums: dict[str, str],
    n_classes: int | None,
    class_names: list[str] | None,
) -> Dataset:
    """IDX files found by :func:`~descentlab.data.sources.find_dataset_files` as a Dataset."""
    valid_fraction, seed, subset = opts.valid_fraction, opts.seed, opts.subset
    a = _idx_arrays(found, expected_sums)
    divisor = 255.0 if opts.pixel_scale is None else float(opts.pixel_scale)
    tr_x, tr_y = a["train_images"], a["train_labels"]
    if valid_fraction is None:
        # The tutorial's split: the last sixth of the training file (10,000 of 60,000).
        n_valid = round(tr_x.shape[0] / 6)
        tr_idx = np.arange(tr_x.shape[0] - n_valid)
        va_idx = np.arange(tr_x.shape[0] - n_valid, tr_x.shape[0])
    else:
        fractions = holdout_fractions(valid_fraction, with_test=False)
        tr_idx, va_idx = stratified_split(check_labels(tr_y, name), fractions, seed=seed)
    if subset is not None:
        tr_idx, va_idx = tr_idx[:subset], va_idx[:subset]
        te = slice(0, subset)
    else:
        te = slice(None)

    def take(images: np.ndarray, idx: Any) -> np.ndarray:
        # Basic slices stay views of the decoded file; only the kept part is scaled.
        if isinstance(idx, np.ndarray) and idx.size and np.all(np.diff(idx) == 1):
            idx = slice(int(idx[0]), int(idx[-1]) + 1)
        return images[idx]

    raw = {
        "train": (take(tr_x, tr_idx), take(tr_y, tr_idx)),
        "valid": (take(tr_x, va_idx), take(tr_y, va_idx)),
        "test": (a["test_images"][te], a["test_labels"][te]),
    }
    splits = {}
    for split, (x, y) in raw.items():
        where = f"{found.folder} ({split} split)"
        if x.shape[0] == 0:
            raise DataError(f"{where}: split is empty", hint="fix: provide more examples")
        labels = check_labels(y, where, n_classes)
        if x.dtype == np.uint8:
            xt = scale_images(x, divisor)
        else:
            xt = torch.from_numpy(check_features(x, where).astype(np.float32))
        splits[split] = Split(xt.unsqueeze(1), torch.from_numpy(labels))
    if n_classes is None:
        n_classes = max(1 + int(s.y.max()) for s in splits.values())
        check_classes(n_classes, sum(len(s.y) for s in splits.values()), str(found.folder))
    return assemble_dataset(
        name,
        splits,
        n_classes=n_classes,
        class_names=class_names,
        standardize_inputs=opts.standardize,
        scale=divisor if a["train_images"].dtype == np.uint8 else None,
        source=str(found.folder),
        info={"format": "idx", "where": found.where, "downloaded": found.downloaded},
    )


def load_pickle_dataset(
    name: str, path: Path, opts: LoadOptions, class_names: list[str] | None = None
) -> Dataset:
    """The tutorial's ``mnist.pkl.gz`` (already split in three) as a Dataset."""
    if opts.valid_fraction is not None:
        raise ConfigError(
            f"valid_fraction does not apply to {path.name}: it is already split into "
            "train/valid/test",
            hint="fix: leave valid_fraction unset",
        )
    (xtr, ytr), (xva, yva), (xte, yte) = load_mnist_pkl(path)

    def prepare(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x
        if x.ndim == 2 and x.shape[1] == 784:
            x = x.reshape(-1, 1, 28, 28)  # the tutorial stores flattened 28x28 images
        return x

    return dataset_from_raw(
        name,
        {"train": (xtr, ytr), "valid": (xva, yva), "test": (xte, yte)},
        opts,
        source=str(path),
        n_classes=10 if name == "mnist" else None,
        class_names=class_names,
        scale=255.0 if xtr.dtype == np.uint8 else None,
        info={"format": "pickle"},
        prepare=prepare,
    )


MNIST_CLASSES = [str(d) for d in range(10)]
FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


def named_idx_loader(class_names: list[str]) -> Callable[[str, LoadOptions], Dataset]:
    """The loader of a built-in MNIST-family dataset: find (or download) its files, load them."""

    def load(name: str, opts: LoadOptions) -> Dataset:
        found = find_dataset_files(
            name, data_dir=opts.data_dir, offline=opts.offline, quiet=opts.quiet
        )
        if found.format == "pickle":
            return load_pickle_dataset(name, found.files["pickle"], opts, class_names)
        return load_idx_dataset(
            name,
            found,
            opts,
            expected_sums=found.checksums,
            n_classes=len(class_names),
            class_names=class_names,
        )

    return load
