"""Named datasets and user files -> :class:`Dataset` of three on-device splits.

Built-in datasets (``DATASETS``):

=================  =====================  ==========================  =========================
name               input_shape            split                       preprocessing
=================  =====================  ==========================  =========================
``mnist``          (1, 28, 28)            50,000 / 10,000 / 10,000    pixels / 255 -> [0, 1] (*)
``fashion-mnist``  (1, 28, 28)            50,000 / 10,000 / 10,000    pixels / 255 -> [0, 1] (*)
``digits``         (1, 8, 8)              60 / 20 / 20 % stratified   pixels / 16 -> [0, 1]
``iris``           (4,)                   60 / 20 / 20 % stratified   standardized (train stats)
``wine``           (13,)                  60 / 20 / 20 % stratified   standardized (train stats)
``breast-cancer``  (30,)                  60 / 20 / 20 % stratified   standardized (train stats)
=================  =====================  ==========================  =========================

(*) ``pixel_scale=256`` divides by 256 instead: the values of the tutorial's
``mnist.pkl.gz`` (k/256), which the tutorial presets use.

MNIST-style data uses the Deep Learning Tutorials' split: train = the first 50,000
examples of the 60,000-example training file, valid = its last 10,000, test = the
10,000-example test file.  The scikit-learn datasets ship inside scikit-learn (no
download) and are split by :func:`~descentlab.data.splits.stratified_split`.

User data is a path: a ``.npz``, a ``.csv``, a tutorial ``mnist.pkl.gz``, or a folder
holding the four IDX files or ``mnist.pkl.gz``.  See ``docs/data.md`` for the formats.
Every problem with the data raises :class:`~descentlab.errors.DataError`.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from descentlab.data.idx import read_idx
from descentlab.data.preprocess import feature_stats, scale_images, standardize
from descentlab.data.safe_pickle import load_mnist_pkl
from descentlab.data.sources import (
    SPECS,
    SUMS_FILE,
    DatasetFiles,
    FilesetSpec,
    cache_dir,
    decompressed_sha256,
    find_dataset_files,
    read_sums,
)
from descentlab.data.splits import holdout_fractions, stratified_split
from descentlab.errors import ConfigError, DataError, did_you_mean

__all__ = [
    "DATASETS",
    "Dataset",
    "DatasetInfo",
    "Split",
    "describe_datasets",
    "load_dataset",
]

SPLITS = ("train", "valid", "test")

# ---------------------------------------------------------------------------------------
# Containers
# ---------------------------------------------------------------------------------------


@dataclass
class Split:
    """One split, resident on one device.

    ``x``: float32, shape ``(N, *input_shape)``; ``y``: int64 class indices, shape ``(N,)``.
    """

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if self.x.shape[0] != self.y.shape[0]:
            raise DataError(
                f"split has {self.x.shape[0]} inputs but {self.y.shape[0]} labels",
                hint="fix: every example needs exactly one label",
            )

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def device(self) -> torch.device:
        return self.x.device

    def to(self, device: torch.device | str) -> Split:
        """A copy of this split on ``device`` (this split itself if it is already there)."""
        return Split(self.x.to(device), self.y.to(device))


@dataclass
class Dataset:
    """Three splits plus what a model needs to know about them.

    ``scale``, ``mean`` and ``std`` record the input transform that was applied, so
    that a saved model can apply the same one to new raw inputs (:meth:`prepare`):
    ``x = (raw / scale - mean) / std``, each step only if set.
    """

    name: str
    train: Split
    valid: Split
    test: Split
    n_classes: int
    input_shape: tuple[int, ...]
    class_names: list[str] | None = None
    scale: float | None = None  # raw inputs were divided by this (255 for MNIST pixels)
    mean: torch.Tensor | None = None  # per-feature training mean, shape input_shape
    std: torch.Tensor | None = None  # per-feature training std (constant features: 1)
    source: str = ""  # where the data came from (a folder, file, or "scikit-learn")
    info: dict[str, Any] = field(default_factory=dict)

    def splits(self) -> dict[str, Split]:
        return {"train": self.train, "valid": self.valid, "test": self.test}

    def __iter__(self) -> Iterator[tuple[str, Split]]:
        return iter(self.splits().items())

    def to(self, device: torch.device | str) -> Dataset:
        """A copy with every split (and the standardization statistics) on ``device``."""
        return replace(
            self,
            train=self.train.to(device),
            valid=self.valid.to(device),
            test=self.test.to(device),
            mean=None if self.mean is None else self.mean.to(device),
            std=None if self.std is None else self.std.to(device),
        )

    def prepare(self, raw: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Apply this dataset's input transform to new raw inputs ``(N, *input_shape)``."""
        x = torch.as_tensor(np.asarray(raw) if not isinstance(raw, torch.Tensor) else raw)
        x = x.to(torch.float32)
        if tuple(x.shape[1:]) != self.input_shape:
            raise DataError(
                f"inputs have shape {tuple(x.shape[1:])} per example but {self.name} "
                f"expects {self.input_shape}"
            )
        if self.scale is not None:
            x = x / self.scale
        if self.mean is not None and self.std is not None:
            x = standardize(x, self.mean, self.std)
        return x

    def preprocessing(self) -> dict[str, Any]:
        """The input transform as plain data (for checkpoints): scale, mean, std."""
        return {
            "scale": self.scale,
            "mean": None if self.mean is None else self.mean.detach().cpu(),
            "std": None if self.std is None else self.std.detach().cpu(),
        }

    def __repr__(self) -> str:
        sizes = "/".join(str(len(s)) for _, s in self)
        return (
            f"Dataset({self.name!r}, train/valid/test={sizes}, n_classes={self.n_classes}, "
            f"input_shape={self.input_shape}, device={self.train.device})"
        )


@dataclass(frozen=True)
class DatasetInfo:
    """What is known about a built-in dataset before loading it."""

    name: str
    kind: str  # "image" or "tabular"
    n_classes: int
    input_shape: tuple[int, ...]
    description: str
    standardize: bool  # the default when load_dataset(standardize=None)
    loader: Callable[..., Dataset] = field(repr=False, compare=False)
    class_names: tuple[str, ...] | None = None


# ---------------------------------------------------------------------------------------
# Validation shared by every source
# ---------------------------------------------------------------------------------------

# Raw arrays of one split before they become tensors.
RawSplits = dict[str, tuple[np.ndarray, np.ndarray]]


def check_labels(y: Any, where: str, n_classes: int | None = None) -> np.ndarray:
    """Labels as an int64 vector, or :class:`DataError` saying what is wrong with them.

    Accepts integer (or bool) arrays and float arrays whose values are all integers
    (CSV files parse to floats); refuses fractional, negative, NaN and, when
    ``n_classes`` is known, too-large labels.
    """
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise DataError(f"{where}: labels must have shape (N,), got {arr.shape}")
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            raise DataError(
                f"{where}: {int(bad.sum())} labels are not integers (e.g. {arr[bad][0]!r})",
                hint="fix: labels must be class indices 0, 1, ..., n_classes-1",
            )
    elif arr.dtype.kind not in "biu":
        raise DataError(
            f"{where}: labels have dtype {arr.dtype}; they must be integer class indices",
            hint="fix: map class names to 0, 1, ..., n_classes-1 before saving",
        )
    # Anything this large is not a class index (and would overflow int64).
    if arr.size and arr.dtype.kind in "uf" and arr.max() >= 2**62:
        raise DataError(f"{where}: label {arr.max()!r} is out of range")
    labels = arr.astype(np.int64)
    if labels.size and labels.min() < 0:
        raise DataError(
            f"{where}: {int((labels < 0).sum())} labels are negative (e.g. {labels.min()})",
            hint="fix: labels must be class indices 0, 1, ..., n_classes-1",
        )
    if n_classes is not None and labels.size and labels.max() >= n_classes:
        raise DataError(
            f"{where}: label {labels.max()} is out of range for {n_classes} classes "
            f"(valid: 0..{n_classes - 1})",
            hint="fix: labels must be class indices 0, 1, ..., n_classes-1",
        )
    return labels


def check_features(x: Any, where: str) -> np.ndarray:
    """Inputs as a numeric array of shape ``(N, ...)``; refuses empty and non-finite data."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise DataError(
            f"{where}: inputs have dtype {arr.dtype}; they must be numbers",
            hint="fix: encode every feature as a number",
        )
    if arr.ndim == 1:
        arr = arr[:, None]  # one feature per example
    if arr.ndim == 0 or arr.shape[0] == 0:
        raise DataError(f"{where}: split is empty", hint="fix: provide at least one example")
    if arr.dtype.kind == "f":
        finite = np.isfinite(arr)
        if not finite.all():
            bad = ~finite
            n_rows = int(bad.reshape(bad.shape[0], -1).any(axis=1).sum())
            raise DataError(
                f"{where}: {int(bad.sum())} input values are NaN or infinite "
                f"(in {n_rows} of {arr.shape[0]} examples)",
                hint="fix: impute or drop those examples before loading",
            )
    return arr


def _validate(raw: RawSplits, source: str, n_classes: int | None) -> tuple[RawSplits, int]:
    """Check every split; return the checked arrays and the number of classes."""
    out: RawSplits = {}
    for split in SPLITS:
        x, y = raw[split]
        where = f"{source} ({split} split)"
        xa = check_features(x, where)
        ya = check_labels(y, where, n_classes)
        if xa.shape[0] != ya.shape[0]:
            raise DataError(
                f"{where}: {xa.shape[0]} inputs but {ya.shape[0]} labels",
                hint="fix: every example needs exactly one label",
            )
        out[split] = (xa, ya)
    shapes = {split: out[split][0].shape[1:] for split in SPLITS}
    if len(set(shapes.values())) != 1:
        raise DataError(
            f"{source}: splits have different input shapes {shapes}",
            hint="fix: every example must have the same features",
        )
    if n_classes is None:
        n_classes = 1 + max(int(out[s][1].max()) for s in SPLITS)
    if n_classes < 2:
        raise DataError(
            f"{source}: all labels are 0, so there is only one class",
            hint="fix: a classifier needs at least two classes",
        )
    return out, n_classes


def _check_subset(subset: int | None) -> None:
    if subset is None:
        return
    if isinstance(subset, bool) or not isinstance(subset, int | np.integer) or subset <= 0:
        raise ConfigError(
            f"subset must be a positive integer or None, got {subset!r}",
            hint="fix: e.g. subset=1000 keeps the first 1000 examples of each split",
        )


def _to_split(x: np.ndarray, y: np.ndarray, subset: int | None) -> Split:
    if subset is not None:
        x, y = x[:subset], y[:subset]
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return Split(xt, torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)))


def _finish(
    name: str,
    splits: dict[str, Split],
    *,
    n_classes: int,
    class_names: list[str] | None,
    standardize_inputs: bool,
    scale: float | None,
    source: str,
    info: dict[str, Any] | None = None,
) -> Dataset:
    input_shape = tuple(int(d) for d in splits["train"].x.shape[1:])
    mean = std = None
    if standardize_inputs:
        # Statistics of the training split only; applied unchanged to valid and test.
        mean, std = feature_stats(splits["train"].x)
        splits = {k: Split(standardize(s.x, mean, std), s.y) for k, s in splits.items()}
    return Dataset(
        name=name,
        train=splits["train"],
        valid=splits["valid"],
        test=splits["test"],
        n_classes=n_classes,
        input_shape=input_shape,
        class_names=class_names,
        scale=scale,
        mean=mean,
        std=std,
        source=source,
        info=info or {},
    )


def _split_unsplit(
    x: np.ndarray, y: np.ndarray, valid_fraction: float | None, seed: int
) -> RawSplits:
    fractions = holdout_fractions(valid_fraction, with_test=True)
    idx = stratified_split(check_labels(y, "labels"), fractions, seed=seed)
    return {s: (x[i], y[i]) for s, i in zip(SPLITS, idx)}


# ---------------------------------------------------------------------------------------
# IDX (MNIST-family) datasets, with a decoded-array cache
# ---------------------------------------------------------------------------------------


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
    changed file is decoded (and checksum-verified) afresh.  Entries are written to a
    temporary file, ``fsync``-ed and renamed into place, so processes loading at the
    same time each see either no entry or a complete one.  Set
    ``DESCENTLAB_NO_CACHE=1`` to bypass the cache; an unwritable cache is ignored.
    """
    if os.environ.get("DESCENTLAB_NO_CACHE"):
        return read_idx(path, sha256=sha256)
    try:
        cached = _decoded_cache_path(path)
    except OSError:
        return read_idx(path, sha256=sha256)
    if cached.is_file():
        try:
            return np.load(cached, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            pass  # a damaged entry is rebuilt below
    array = read_idx(path, sha256=sha256)
    with contextlib.suppress(OSError):
        cached.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cached.parent, prefix=f".{cached.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, array, allow_pickle=False)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, cached)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        # Drop entries for older versions of the same source file.
        prefix = cached.name.rsplit("-", 2)[0] + "-"
        for old in cached.parent.glob(f"{prefix}*.npy"):
            if old != cached:
                with contextlib.suppress(OSError):
                    old.unlink()
    return array


def _idx_raw(found: DatasetFiles, expected_sums: dict[str, str]) -> dict[str, np.ndarray]:
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


def _load_idx_dataset(
    name: str,
    found: DatasetFiles,
    *,
    expected_sums: dict[str, str],
    n_classes: int | None,
    class_names: list[str] | None,
    valid_fraction: float | None,
    seed: int,
    subset: int | None,
    standardize_inputs: bool,
    pixel_scale: float | None = None,
) -> Dataset:
    a = _idx_raw(found, expected_sums)
    divisor = 255.0 if pixel_scale is None else float(pixel_scale)
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
    return _finish(
        name,
        splits,
        n_classes=n_classes,
        class_names=class_names,
        standardize_inputs=standardize_inputs,
        scale=divisor if a["train_images"].dtype == np.uint8 else None,
        source=str(found.folder),
        info={"format": "idx", "where": found.where, "downloaded": found.downloaded},
    )


def _load_pickle_dataset(
    name: str,
    path: Path,
    *,
    valid_fraction: float | None,
    subset: int | None,
    standardize_inputs: bool,
    class_names: list[str] | None,
) -> Dataset:
    if valid_fraction is not None:
        raise ConfigError(
            f"valid_fraction does not apply to {path.name}: it is already split into "
            "train/valid/test",
            hint="fix: leave valid_fraction unset",
        )
    (xtr, ytr), (xva, yva), (xte, yte) = load_mnist_pkl(path)
    raw: RawSplits = {"train": (xtr, ytr), "valid": (xva, yva), "test": (xte, yte)}
    checked, n_classes = _validate(raw, str(path), 10 if name == "mnist" else None)
    splits = {}
    for split, (x, y) in checked.items():
        x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x
        if x.ndim == 2 and x.shape[1] == 784:
            x = x.reshape(-1, 1, 28, 28)  # the tutorial stores flattened 28x28 images
        splits[split] = _to_split(x, y, subset)
    return _finish(
        name,
        splits,
        n_classes=n_classes,
        class_names=class_names,
        standardize_inputs=standardize_inputs,
        scale=255.0 if xtr.dtype == np.uint8 else None,
        source=str(path),
        info={"format": "pickle"},
    )


_MNIST_CLASSES = [str(d) for d in range(10)]
_FASHION_CLASSES = [
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


def _named_idx_loader(name: str, class_names: list[str]) -> Callable[..., Dataset]:
    def load(
        *,
        data_dir: str | os.PathLike[str] | None,
        offline: bool,
        standardize_inputs: bool,
        valid_fraction: float | None,
        seed: int,
        subset: int | None,
        quiet: bool,
        pixel_scale: float | None = None,
        **_: Any,
    ) -> Dataset:
        found = find_dataset_files(name, data_dir=data_dir, offline=offline, quiet=quiet)
        if found.format == "pickle":
            return _load_pickle_dataset(
                name,
                found.files["pickle"],
                valid_fraction=valid_fraction,
                subset=subset,
                standardize_inputs=standardize_inputs,
                class_names=class_names,
            )
        return _load_idx_dataset(
            name,
            found,
            expected_sums=found.checksums,
            n_classes=len(class_names),
            class_names=class_names,
            valid_fraction=valid_fraction,
            seed=seed,
            subset=subset,
            standardize_inputs=standardize_inputs,
            pixel_scale=pixel_scale,
        )

    return load


# ---------------------------------------------------------------------------------------
# scikit-learn's bundled datasets
# ---------------------------------------------------------------------------------------


def _sklearn_loader(fn_name: str, *, image_side: int | None = None) -> Callable[..., Dataset]:
    def load(
        *,
        name: str,
        standardize_inputs: bool,
        valid_fraction: float | None,
        seed: int,
        subset: int | None,
        **_: Any,
    ) -> Dataset:
        import sklearn.datasets

        bunch = getattr(sklearn.datasets, fn_name)()
        x = np.asarray(bunch.data, dtype=np.float64)
        scale = None
        if image_side is not None:
            # digits: 8x8 images with intensities 0..16.
            scale = 16.0
            x = (x / scale).reshape(-1, 1, image_side, image_side)
        y = np.asarray(bunch.target)
        raw = _split_unsplit(x, y, valid_fraction, seed)
        checked, n_classes = _validate(raw, name, len(bunch.target_names))
        splits = {s: _to_split(*checked[s], subset) for s in SPLITS}
        return _finish(
            name,
            splits,
            n_classes=n_classes,
            class_names=[str(c) for c in bunch.target_names],
            standardize_inputs=standardize_inputs,
            scale=scale,
            source="scikit-learn",
            info={"format": "sklearn", "seed": seed},
        )

    return load


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(
        "mnist",
        "image",
        10,
        (1, 28, 28),
        "MNIST handwritten digits (LeCun, Cortes, Burges), 28x28 grey",
        False,
        _named_idx_loader("mnist", _MNIST_CLASSES),
        tuple(_MNIST_CLASSES),
    ),
    "fashion-mnist": DatasetInfo(
        "fashion-mnist",
        "image",
        10,
        (1, 28, 28),
        "Fashion-MNIST clothing images (Xiao, Rasul, Vollgraf 2017), 28x28 grey",
        False,
        _named_idx_loader("fashion-mnist", _FASHION_CLASSES),
        tuple(_FASHION_CLASSES),
    ),
    "digits": DatasetInfo(
        "digits",
        "image",
        10,
        (1, 8, 8),
        "scikit-learn's 8x8 handwritten digits (UCI optdigits test set), 1797 images",
        False,
        _sklearn_loader("load_digits", image_side=8),
    ),
    "iris": DatasetInfo(
        "iris",
        "tabular",
        3,
        (4,),
        "Fisher's iris flowers, 150 examples, 4 measurements",
        True,
        _sklearn_loader("load_iris"),
    ),
    "wine": DatasetInfo(
        "wine",
        "tabular",
        3,
        (13,),
        "UCI wine cultivars, 178 examples, 13 chemical measurements",
        True,
        _sklearn_loader("load_wine"),
    ),
    "breast-cancer": DatasetInfo(
        "breast-cancer",
        "tabular",
        2,
        (30,),
        "Wisconsin diagnostic breast cancer, 569 examples, 30 features",
        True,
        _sklearn_loader("load_breast_cancer"),
    ),
}

_ALIASES = {
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "fmnist": "fashion-mnist",
    "breast_cancer": "breast-cancer",
    "breastcancer": "breast-cancer",
}


def _canonical_name(name: str) -> str | None:
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    return key if key in DATASETS else None


# ---------------------------------------------------------------------------------------
# User files: .npz, .csv
# ---------------------------------------------------------------------------------------

_PRESPLIT = ("x_train", "y_train", "x_valid", "y_valid", "x_test", "y_test")
_TRAIN_TEST = ("x_train", "y_train", "x_test", "y_test")


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of a ``.npz`` (loaded with ``allow_pickle=False``), or :class:`DataError`."""
    hint = "fix: save numeric arrays with np.savez(path, x=..., y=...)"
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            raise DataError(f"{path} is a .npy file holding one array, not named arrays", hint=hint)
        with loaded as archive:
            return {key: archive[key] for key in archive.files}
    except DataError:
        raise
    except Exception as exc:
        # np.load on a damaged archive can raise many types (zipfile, zlib, ValueError
        # for pickled object arrays, ...); all of them mean the file cannot be used.
        raise DataError(
            f"{path} is not a readable .npz archive ({type(exc).__name__}: {exc})", hint=hint
        ) from exc


def _npz_raw(
    path: Path, valid_fraction: float | None, seed: int
) -> tuple[RawSplits, list[str] | None]:
    arrays = read_npz(path)
    class_names = None
    if "class_names" in arrays:
        names = arrays["class_names"]
        if names.ndim != 1 or names.dtype.kind not in "US":
            raise DataError(f"{path}: class_names must be a 1-D array of strings")
        class_names = [str(n) for n in names.tolist()]
    keys = set(arrays)
    if keys >= set(_PRESPLIT):
        if valid_fraction is not None:
            raise ConfigError(
                f"valid_fraction does not apply to {path.name}: it is already split",
                hint="fix: leave valid_fraction unset",
            )
        raw = {s: (arrays[f"x_{s}"], arrays[f"y_{s}"]) for s in SPLITS}
        return raw, class_names
    if keys >= set(_TRAIN_TEST) and not keys & {"x_valid", "y_valid"}:
        x, y = arrays["x_train"], arrays["y_train"]
        if len(x) != len(y):
            raise DataError(f"{path}: x_train has {len(x)} examples but y_train {len(y)}")
        fractions = holdout_fractions(valid_fraction, with_test=False)
        tr, va = stratified_split(check_labels(y, f"{path} (y_train)"), fractions, seed=seed)
        raw = {"train": (x[tr], y[tr]), "valid": (x[va], y[va])}
        raw["test"] = (arrays["x_test"], arrays["y_test"])
        return raw, class_names
    wanted: tuple[str, ...]
    if any(k in keys for k in _PRESPLIT):
        wanted = _TRAIN_TEST if not keys & {"x_valid", "y_valid"} else _PRESPLIT
    else:
        wanted = ("x", "y")
    missing = [k for k in wanted if k not in keys]
    if not missing:  # x and y present
        x, y = arrays["x"], arrays["y"]
        if np.ndim(x) == 0 or np.ndim(y) == 0 or len(x) != len(y):
            raise DataError(
                f"{path}: x has shape {np.shape(x)} but y has shape {np.shape(y)}",
                hint="fix: x must be (N, ...) and y (N,)",
            )
        if len(y) == 0:
            raise DataError(f"{path}: x and y are empty", hint="fix: provide examples")
        return _split_unsplit(x, y, valid_fraction, seed), class_names
    found = ", ".join(sorted(keys)) or "none"
    raise DataError(
        f"{path} has no array {missing[0]!r}"
        + (f" (also missing: {', '.join(missing[1:])})" if len(missing) > 1 else "")
        + f"; arrays found: {found}",
        hint="fix: save arrays x and y, or x_train, y_train, x_valid, y_valid, x_test, y_test",
    )


def read_csv(path: Path, label_column: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Features, labels and feature names of a CSV with a header row.

    Comma-separated; the column named ``label_column`` holds the class index, every other
    column must be numeric.
    """
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(
            f"cannot read {path} as UTF-8 text ({exc})", hint="fix: save the CSV as UTF-8"
        ) from exc
    try:
        header = next(csv.reader(io.StringIO(text)), None)
    except csv.Error as exc:
        raise DataError(f"{path}: malformed header row ({exc})") from exc
    if not header or all(not h.strip() for h in header):
        raise DataError(
            f"{path} is empty or has no header row",
            hint=f"fix: the first line must name the columns, including {label_column!r}",
        )
    columns = [h.strip() for h in header]
    if label_column not in columns:
        raise DataError(
            f"{path} has no label column {label_column!r} (columns: {', '.join(columns)})",
            hint=f"fix: name the label column {label_column!r} or pass label_column=...; "
            + did_you_mean(label_column, columns),
        )
    if columns.count(label_column) > 1:
        raise DataError(f"{path} has more than one column named {label_column!r}")
    if len(columns) < 2:
        raise DataError(f"{path} has a label column but no feature columns")
    body = text.split("\n", 1)[1] if "\n" in text else ""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "input contained no data" is handled below
            table = np.loadtxt(
                io.StringIO(body),
                delimiter=",",
                dtype=np.float64,
                ndmin=2,
                comments=None,
                quotechar='"',
            )
    except Exception as exc:
        # np.loadtxt reports the row and column of the bad value in its message.
        raise DataError(
            f"{path}: {exc}",
            hint="fix: every row needs one numeric value per column, comma-separated",
        ) from exc
    if table.shape[0] == 0:
        raise DataError(f"{path} has a header but no data rows", hint="fix: add examples")
    if table.shape[1] != len(columns):
        raise DataError(
            f"{path}: the header has {len(columns)} columns but the rows have {table.shape[1]}",
            hint="fix: every row needs one value per header column",
        )
    li = columns.index(label_column)
    x = np.delete(table, li, axis=1)
    names = [c for i, c in enumerate(columns) if i != li]
    return x, table[:, li], names


# ---------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------


def _looks_like_path(text: str) -> bool:
    return (
        os.sep in text
        or "/" in text
        or text.lower().endswith((".npz", ".csv", ".gz", ".pkl"))
        or os.path.exists(text)
    )


def load_dataset(
    name_or_path: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str] | None = None,
    offline: bool = False,
    standardize: bool | None = None,
    label_column: str = "label",
    valid_fraction: float | None = None,
    seed: int = 0,
    subset: int | None = None,
    quiet: bool = False,
    pixel_scale: float | None = None,
) -> Dataset:
    """Load a built-in dataset by name, or a user file / folder by path.

    Parameters
    ----------
    name_or_path:
        ``mnist``, ``fashion-mnist``, ``digits``, ``iris``, ``wine``, ``breast-cancer``,
        or a path to a ``.npz``, ``.csv``, ``mnist.pkl.gz`` or a folder holding IDX files
        or ``mnist.pkl.gz``.
    data_dir:
        Searched first for MNIST-family files (see :mod:`descentlab.data.sources`).
    offline:
        Never download; fail with a message listing where files were looked for.
    standardize:
        Zero mean / unit variance per feature with *training-split* statistics, stored
        as ``Dataset.mean`` / ``Dataset.std``.  ``None`` (default) means the dataset's
        own default: on for the tabular built-ins (iris, wine, breast-cancer), off for
        images and user files.
    label_column:
        CSV column holding the labels.
    valid_fraction:
        For data that is not already split: the share of the training pool (every
        example not held out for testing) that becomes validation; default 0.25, which
        with the 20 % test hold-out gives 60 / 20 / 20.  For MNIST-family data it
        replaces the tutorial's fixed last-10,000 validation split with a seeded
        stratified one.
    seed:
        Seed of every stratified split (the same seed gives the same split).
    subset:
        Keep only the first ``subset`` examples of each split (quick runs and tests).
    quiet:
        No download progress bar.
    pixel_scale:
        For MNIST-family IDX files: divide the uint8 pixels k by this.  ``None`` (default)
        means 255 (pixels in [0, 1]); 256 gives exactly the values of the Deep Learning
        Tutorials' ``mnist.pkl.gz`` (k/256), as the tutorial presets use.  Other datasets
        ignore it.
    """
    _check_subset(subset)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ConfigError(f"seed must be an integer, got {seed!r}")
    if standardize is not None and not isinstance(standardize, bool):
        raise ConfigError(f"standardize must be True, False or None, got {standardize!r}")
    if valid_fraction is not None:
        holdout_fractions(valid_fraction, with_test=False)  # validates the value
    text = os.fspath(name_or_path)
    # A built-in name always means the built-in dataset (found by the search order),
    # even if the working directory happens to hold a folder of that name: write
    # "./mnist" to load such a folder as a path.
    canonical = _canonical_name(text) if isinstance(name_or_path, str) else None
    if canonical is not None:
        info = DATASETS[canonical]
        return info.loader(
            name=canonical,
            data_dir=data_dir,
            offline=offline,
            standardize_inputs=info.standardize if standardize is None else standardize,
            valid_fraction=valid_fraction,
            seed=int(seed),
            subset=subset,
            quiet=quiet,
            pixel_scale=pixel_scale,
        )
    if not _looks_like_path(text):
        raise DataError(
            f"unknown dataset {text!r}",
            hint=f"{did_you_mean(text, list(DATASETS))} (or give a path to a .npz, .csv, "
            "mnist.pkl.gz or a folder of IDX files)",
        )
    return _load_path(
        Path(text).expanduser(),
        standardize_inputs=bool(standardize),
        label_column=label_column,
        valid_fraction=valid_fraction,
        seed=int(seed),
        subset=subset,
        pixel_scale=pixel_scale,
    )


def _load_path(
    path: Path,
    *,
    standardize_inputs: bool,
    label_column: str,
    valid_fraction: float | None,
    seed: int,
    subset: int | None,
    pixel_scale: float | None = None,
) -> Dataset:
    if not path.exists():
        raise DataError(
            f"{path} does not exist",
            hint=f"fix: check the path, or use a built-in dataset: {', '.join(DATASETS)}",
        )
    name = path.name.removesuffix(".gz").removesuffix(".pkl").removesuffix(".npz")
    name = name.removesuffix(".csv")
    if path.is_dir():
        return _load_folder(
            path,
            standardize_inputs=standardize_inputs,
            valid_fraction=valid_fraction,
            seed=seed,
            subset=subset,
            pixel_scale=pixel_scale,
        )
    suffixes = "".join(path.suffixes[-2:]).lower()
    if suffixes.endswith((".pkl.gz", ".pkl")):
        return _load_pickle_dataset(
            name,
            path,
            valid_fraction=valid_fraction,
            subset=subset,
            standardize_inputs=standardize_inputs,
            class_names=None,
        )
    class_names: list[str] | None = None
    if path.suffix.lower() == ".npz":
        raw, class_names = _npz_raw(path, valid_fraction, seed)
    elif path.suffix.lower() == ".csv":
        x, y, _ = read_csv(path, label_column)
        raw = _split_unsplit(x, y, valid_fraction, seed)
    else:
        raise DataError(
            f"don't know how to read {path.name}",
            hint="fix: use a .npz, .csv, mnist.pkl.gz or a folder of IDX files",
        )
    checked, n_classes = _validate(raw, str(path), len(class_names) if class_names else None)
    splits = {s: _to_split(*checked[s], subset) for s in SPLITS}
    return _finish(
        name,
        splits,
        n_classes=n_classes,
        class_names=class_names,
        standardize_inputs=standardize_inputs,
        scale=None,
        source=str(path),
        info={"format": path.suffix.lower().lstrip("."), "seed": seed},
    )


def _load_folder(
    folder: Path,
    *,
    standardize_inputs: bool,
    valid_fraction: float | None,
    seed: int,
    subset: int | None,
    pixel_scale: float | None = None,
) -> Dataset:
    name = folder.name
    known = _canonical_name(name)
    spec: FilesetSpec = SPECS.get(known or "", SPECS["mnist"])
    found = None
    for candidate in (folder, *(folder / sub for sub in spec.subfolders())):
        if candidate.is_dir():
            files = {r: _idx_file(candidate, f.name) for r, f in spec.files.items()}
            if all(files.values()):
                paths = {r: p for r, p in files.items() if p is not None}
                found = DatasetFiles(name, candidate, paths, "idx", "path")
                break
            if (candidate / "mnist.pkl.gz").is_file():
                return _load_pickle_dataset(
                    known or name,
                    candidate / "mnist.pkl.gz",
                    valid_fraction=valid_fraction,
                    subset=subset,
                    standardize_inputs=standardize_inputs,
                    class_names=None,
                )
    if found is None:
        wanted = ", ".join(f"{f.name}[.gz]" for f in spec.files.values())
        raise DataError(
            f"{folder} holds neither mnist.pkl.gz nor the IDX files {wanted}",
            hint="fix: point at a folder with those files, or at a .npz/.csv file",
        )
    # A folder's own SHA256SUMS.uncompressed (if any) is checked while decoding.
    sums = read_sums(found.folder)
    expected = {role: sums[f.name] for role, f in spec.files.items() if f.name in sums}
    info = DATASETS.get(known or "")
    return _load_idx_dataset(
        known or name,
        found,
        expected_sums=expected,
        n_classes=info.n_classes if info else None,
        class_names=list(info.class_names) if info and info.class_names else None,
        valid_fraction=valid_fraction,
        seed=seed,
        subset=subset,
        standardize_inputs=standardize_inputs,
        pixel_scale=pixel_scale,
    )


def _idx_file(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


# ---------------------------------------------------------------------------------------
# `descentlab datasets`
# ---------------------------------------------------------------------------------------


def describe_datasets(
    data_dir: str | os.PathLike[str] | None = None, *, verify: bool = True
) -> list[dict[str, Any]]:
    """One row per built-in dataset for ``descentlab datasets``; never downloads.

    Each row has: ``name``, ``kind``, ``description``, ``where`` (folder, or
    ``"not found"``, or ``"bundled with scikit-learn"``), ``found_via`` (which search
    location), ``files`` (file names), ``bytes`` (their total size), ``checksums``
    (``{file: "ok" | "mismatch" | "unverified"}``), ``status`` (``"ok"``, ``"mismatch"``,
    ``"unverified"``, ``"not found"`` or ``"bundled"``), ``sizes``
    (``{"train": n, "valid": n, "test": n}``), ``n_classes`` and ``input_shape``.
    With ``verify=False`` checksums are not computed (all ``"unverified"``).
    """
    rows = []
    for name, info in DATASETS.items():
        row: dict[str, Any] = {
            "name": name,
            "kind": info.kind,
            "description": info.description,
            "n_classes": info.n_classes,
            "input_shape": info.input_shape,
        }
        if name in SPECS:
            row.update(_describe_files(name, data_dir, verify))
        else:
            ds = load_dataset(name)
            row.update(
                where="bundled with scikit-learn",
                found_via="scikit-learn",
                files=[],
                bytes=0,
                checksums={},
                status="bundled",
                sizes={s: len(split) for s, split in ds},
            )
        rows.append(row)
    return rows


def _describe_files(
    name: str, data_dir: str | os.PathLike[str] | None, verify: bool
) -> dict[str, Any]:
    try:
        found = find_dataset_files(name, data_dir=data_dir, offline=True)
    except DataError:
        return {
            "where": "not found",
            "found_via": None,
            "files": [],
            "bytes": 0,
            "checksums": {},
            "status": "not found",
            "sizes": {},
        }
    checksums = {}
    for role, path in found.files.items():
        want = found.checksums.get(role) or read_sums(found.folder).get(
            path.name.removesuffix(".gz")
        )
        if not verify or not want:
            checksums[path.name] = "unverified"
            continue
        try:
            ok = decompressed_sha256(path) == want
        except DataError:
            ok = False
        checksums[path.name] = "ok" if ok else "mismatch"
    values = set(checksums.values())
    status = "mismatch" if "mismatch" in values else "ok" if values == {"ok"} else "unverified"
    sizes = {"train": 50_000, "valid": 10_000, "test": 10_000}
    return {
        "where": str(found.folder),
        "found_via": found.where,
        "files": [p.name for p in found.files.values()],
        "bytes": sum(p.stat().st_size for p in found.files.values()),
        "checksums": checksums,
        "status": status,
        "sizes": sizes,
        "sums_file": (found.folder / SUMS_FILE).is_file(),
    }
