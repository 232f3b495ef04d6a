"""User data given as a path: a ``.npz``, a ``.csv``, ``mnist.pkl.gz``, or a folder of IDX files.

See ``docs/data.md`` for the formats.  Data that is not already split is split 60 / 20 / 20
by :func:`~descentlab.data.splits.three_way_split`.
"""

from __future__ import annotations

import csv
import io
import warnings
import zipfile
from pathlib import Path

import numpy as np

from descentlab.data.checks import check_labels, dataset_from_raw
from descentlab.data.containers import (
    SPLITS,
    Dataset,
    LoadOptions,
    RawSplits,
)
from descentlab.data.mnist_family import load_idx_dataset, load_pickle_dataset
from descentlab.data.registry import DATASETS, canonical_name
from descentlab.data.sources import SPECS, DatasetFiles, FilesetSpec, read_sums
from descentlab.data.splits import holdout_fractions, stratified_split, three_way_split
from descentlab.errors import ConfigError, DataError, did_you_mean
from descentlab.limits import check_bytes

__all__ = ["load_path", "read_csv", "read_npz"]


_PRESPLIT = ("x_train", "y_train", "x_valid", "y_valid", "x_test", "y_test")
_TRAIN_TEST = ("x_train", "y_train", "x_test", "y_test")


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of a ``.npz`` (loaded with ``allow_pickle=False``), or :class:`DataError`."""
    hint = "fix: save numeric arrays with np.savez(path, x=..., y=...)"
    try:
        _check_npz_sizes(path)
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


def _check_npz_sizes(path: Path) -> None:
    """Refuse an archive whose members declare (in zip and .npy headers) too many bytes.

    The zip directory's sizes bound what decompression can produce (zipfile stops at
    the declared size), and each member's .npy header declares its array; both are
    read before any array is, so a zip bomb or a lying header costs nothing.
    """
    if not zipfile.is_zipfile(path):
        return  # np.load says what it is (a .npy, or not an archive)
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
        check_bytes(sum(m.file_size for m in members), f"{path} (decompressed members)")
        declared = 0
        for member in members:
            if not member.filename.endswith(".npy"):
                continue
            with archive.open(member) as fh:
                major, _minor = np.lib.format.read_magic(fh)
                read_header = (
                    np.lib.format.read_array_header_1_0
                    if major == 1
                    else np.lib.format.read_array_header_2_0
                )
                shape, _order, dtype = read_header(fh, max_header_size=10_000)
            count = 1
            for d in shape:
                count *= int(d)
            declared += count * dtype.itemsize
        check_bytes(declared, f"{path} (arrays declared in its .npy headers)")


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
        return three_way_split(x, y, valid_fraction, seed), class_names
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
        # Parsed to float64: about as many bytes again as the text, at most 8 per character.
        check_bytes(8 * path.stat().st_size, f"{path} (parsed as numbers)")
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


def load_path(path: Path, opts: LoadOptions, label_column: str = "label") -> Dataset:
    """Load a user file or folder (see the module docstring) as a :class:`Dataset`."""
    if not path.exists():
        raise DataError(
            f"{path} does not exist",
            hint=f"fix: check the path, or use a built-in dataset: {', '.join(DATASETS)}",
        )
    name = path.name.removesuffix(".gz").removesuffix(".pkl").removesuffix(".npz")
    name = name.removesuffix(".csv")
    if path.is_dir():
        return _load_folder(path, opts)
    suffixes = "".join(path.suffixes[-2:]).lower()
    if suffixes.endswith((".pkl.gz", ".pkl")):
        return load_pickle_dataset(name, path, opts)
    class_names: list[str] | None = None
    if path.suffix.lower() == ".npz":
        raw, class_names = _npz_raw(path, opts.valid_fraction, opts.seed)
    elif path.suffix.lower() == ".csv":
        x, y, _ = read_csv(path, label_column)
        raw = three_way_split(x, y, opts.valid_fraction, opts.seed)
    else:
        raise DataError(
            f"don't know how to read {path.name}",
            hint="fix: use a .npz, .csv, mnist.pkl.gz or a folder of IDX files",
        )
    return dataset_from_raw(
        name,
        raw,
        opts,
        source=str(path),
        n_classes=len(class_names) if class_names else None,
        class_names=class_names,
        info={"format": path.suffix.lower().lstrip("."), "seed": opts.seed},
    )


def _load_folder(folder: Path, opts: LoadOptions) -> Dataset:
    name = folder.name
    known = canonical_name(name)
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
                return load_pickle_dataset(known or name, candidate / "mnist.pkl.gz", opts)
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
    return load_idx_dataset(
        known or name,
        found,
        opts,
        expected_sums=expected,
        n_classes=info.n_classes if info else None,
        class_names=list(info.class_names) if info and info.class_names else None,
    )


def _idx_file(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None
