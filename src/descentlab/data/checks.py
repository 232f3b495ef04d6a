"""Checks shared by every data source: labels, inputs, whole splits, ``subset``.

Each check returns the data in the form the loaders use or raises
:class:`~descentlab.errors.DataError` (:class:`~descentlab.errors.ConfigError` for
arguments) naming what is wrong and how to fix it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from descentlab.data.containers import (
    SPLITS,
    Dataset,
    LoadOptions,
    RawSplits,
    assemble_dataset,
    split_from_arrays,
)
from descentlab.errors import ConfigError, DataError
from descentlab.limits import check_classes

__all__ = ["check_features", "check_labels", "check_splits", "check_subset", "dataset_from_raw"]


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
        check_float32_range(arr, where)
    return arr


def check_float32_range(arr: np.ndarray, where: str) -> None:
    """Refuse finite values that float32, in which training computes, turns into ±inf."""
    if arr.dtype.itemsize <= 4:
        return
    top = float(np.finfo(np.float32).max)
    # max and min first: no array-sized temporary unless something is out of range
    if float(arr.max()) <= top and float(arr.min()) >= -top:
        return
    big = np.abs(arr) > top
    n_rows = int(big.reshape(big.shape[0], -1).any(axis=1).sum())
    raise DataError(
        f"{where}: {int(big.sum())} input values are too large for float32, in which "
        f"training computes (|x| up to {float(np.abs(arr).max()):.3g}, float32's limit is "
        f"{top:.3g}; in {n_rows} of {arr.shape[0]} examples)",
        hint="fix: rescale those features (divide them by a power of ten) before loading",
    )


def check_splits(raw: RawSplits, source: str, n_classes: int | None) -> tuple[RawSplits, int]:
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
        check_classes(n_classes, sum(len(out[s][1]) for s in SPLITS), source)
    if n_classes < 2:
        raise DataError(
            f"{source}: all labels are 0, so there is only one class",
            hint="fix: a classifier needs at least two classes",
        )
    return out, n_classes


def dataset_from_raw(
    name: str,
    raw: RawSplits,
    opts: LoadOptions,
    *,
    source: str,
    where: str | None = None,
    n_classes: int | None = None,
    class_names: list[str] | None = None,
    scale: float | None = None,
    info: dict[str, Any],
    prepare: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Dataset:
    """Three raw splits as a :class:`Dataset`: checked, ``prepare``-d, cut to ``opts.subset``.

    ``where`` names the arrays in error messages (default ``source``); ``n_classes`` is
    the expected number of classes (None: counted from the labels).
    """
    checked, n_classes = check_splits(raw, where or source, n_classes)
    splits = {}
    for split in SPLITS:
        x, y = checked[split]
        splits[split] = split_from_arrays(prepare(x) if prepare else x, y, opts.subset)
    return assemble_dataset(
        name,
        splits,
        n_classes=n_classes,
        class_names=class_names,
        standardize_inputs=opts.standardize,
        scale=scale,
        source=source,
        info=info,
    )


def check_subset(subset: int | None) -> None:
    """Refuse a ``subset`` that is not a positive integer (``None`` keeps everything)."""
    if subset is None:
        return
    if isinstance(subset, bool) or not isinstance(subset, int | np.integer) or subset <= 0:
        raise ConfigError(
            f"subset must be a positive integer or None, got {subset!r}",
            hint="fix: e.g. subset=1000 keeps the first 1000 examples of each split",
        )
