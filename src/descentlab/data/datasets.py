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

This module is the entry point (:func:`load_dataset`, :func:`describe_datasets`); the
parts live in ``containers`` (types), ``registry`` (names), ``mnist_family``,
``sklearn_sets``, ``user_files``, ``checks`` and ``splits``.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from descentlab.data.checks import check_subset
from descentlab.data.containers import Dataset, DatasetInfo, LoadOptions, Split
from descentlab.data.registry import DATASETS, canonical_name
from descentlab.data.sources import (
    SPECS,
    SUMS_FILE,
    decompressed_sha256,
    find_dataset_files,
    read_sums,
)
from descentlab.data.splits import holdout_fractions
from descentlab.data.user_files import load_path
from descentlab.errors import ConfigError, DataError, did_you_mean

__all__ = [
    "DATASETS",
    "Dataset",
    "DatasetInfo",
    "Split",
    "describe_datasets",
    "load_dataset",
]


def _looks_like_path(text: str) -> bool:
    return (
        os.sep in text
        or "/" in text
        or text.lower().endswith((".npz", ".csv", ".gz", ".pkl"))
        or os.path.exists(text)
    )


def _check_label_column(label_column: str, text: str) -> None:
    if label_column != "label" and not str(text).lower().endswith(".csv"):
        raise ConfigError(
            f"label_column={label_column!r} applies only to .csv files, not to {text}",
            hint="drop --label-column (the labels of this dataset are not a CSV column)",
        )


def _check_arguments(
    seed: Any, standardize: Any, valid_fraction: float | None, subset: int | None
) -> None:
    """Refuse arguments of :func:`load_dataset` that no loader could use."""
    check_subset(subset)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ConfigError(f"seed must be an integer, got {seed!r}")
    if standardize is not None and not isinstance(standardize, bool):
        raise ConfigError(f"standardize must be True, False or None, got {standardize!r}")
    if valid_fraction is not None:
        holdout_fractions(valid_fraction, with_test=False)  # validates the value


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
    _check_arguments(seed, standardize, valid_fraction, subset)
    text = os.fspath(name_or_path)
    _check_label_column(label_column, text)
    opts = LoadOptions(
        standardize=bool(standardize),
        valid_fraction=valid_fraction,
        seed=int(seed),
        subset=subset,
        pixel_scale=pixel_scale,
    )
    # A built-in name always means the built-in dataset (found by the search order),
    # even if the working directory happens to hold a folder of that name: write
    # "./mnist" to load such a folder as a path.
    canonical = canonical_name(text) if isinstance(name_or_path, str) else None
    if canonical is not None:
        info = DATASETS[canonical]
        own = info.standardize if standardize is None else standardize
        opts = replace(opts, standardize=own, data_dir=data_dir, offline=offline, quiet=quiet)
        return info.loader(canonical, opts)
    if not _looks_like_path(text):
        raise DataError(
            f"unknown dataset {text!r}",
            hint=f"{did_you_mean(text, list(DATASETS))} (or give a path to a .npz, .csv, "
            "mnist.pkl.gz or a folder of IDX files)",
        )
    return load_path(Path(text).expanduser(), opts, label_column)


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
