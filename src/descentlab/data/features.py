"""Inputs without labels, for ``descentlab predict``: .npy, .npz, .csv or IDX files.

The values are returned raw (as stored); the saved run applies its own
scaling and standardization, so a file of MNIST pixels in 0..255 works as-is.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from descentlab.data.checks import check_features
from descentlab.data.idx import read_idx
from descentlab.data.user_files import read_npz
from descentlab.errors import DataError
from descentlab.limits import check_bytes

_NPZ_KEYS = ("x", "x_test", "images", "data")


def read_features(path: str | Path, *, label_column: str = "label") -> np.ndarray:
    """The examples in ``path`` as a float array ``(N, ...)``.

    ``.npz``: the one of the arrays ``x``, ``x_test``, ``images``, ``data`` it holds (or
    its only array; several candidates are refused);
    ``.csv``: every column but ``label_column`` (which may be absent), header row
    required; ``*-ubyte[.gz]``: an IDX array; ``.npy``: one array.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"input file {path} does not exist", hint="check the path")
    # Decided from the file's size before it is read (a sparse 5 GB file costs nothing).
    check_bytes(path.stat().st_size, f"input file {path}")
    name = path.name.lower()
    if name.endswith(".npz"):
        arrays = read_npz(path)
        keys = [k for k in _NPZ_KEYS if k in arrays]
        if not keys and len(arrays) == 1:
            keys = list(arrays)  # one array: it can only be the inputs
        if len(keys) != 1:
            # Guessing among several arrays could silently predict on the wrong one.
            found = ", ".join(sorted(arrays)) or "none"
            raise DataError(
                f"{path} must hold the inputs as array 'x' (arrays found: {found})",
                hint="save the inputs with np.savez(path, x=...)",
            )
        x = arrays[keys[0]]
    elif name.endswith(".npy"):
        try:
            x = np.load(path, allow_pickle=False)
        except Exception as exc:  # numpy raises several types for damaged files
            raise DataError(f"{path} is not a readable .npy file ({exc})") from None
    elif name.endswith(".csv"):
        x = _read_csv_features(path, label_column)
    elif "ubyte" in name:
        x = read_idx(path)
    else:
        raise DataError(
            f"cannot tell the format of {path}",
            hint="use a .npy, .npz, .csv or IDX (*-ubyte[.gz]) file",
        )
    return check_features(x, str(path)).astype(np.float32, copy=False)


def _read_csv_features(path: Path, label_column: str) -> np.ndarray:
    try:
        rows = list(csv.reader(io.StringIO(path.read_bytes().decode("utf-8-sig"))))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read {path} as a CSV file ({exc})") from None
    if not rows:
        raise DataError(f"{path} is empty", hint="the first line must name the columns")
    header = [h.strip() for h in rows[0]]
    keep = [i for i, h in enumerate(header) if h != label_column]
    body = [r for r in rows[1:] if r and any(c.strip() for c in r)]
    try:
        return np.array([[float(r[i]) for i in keep] for r in body], dtype=np.float64)
    except (ValueError, IndexError):
        raise DataError(
            f"{path} has a non-numeric or missing value",
            hint="every feature column must hold numbers",
        ) from None
