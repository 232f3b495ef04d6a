"""Reader (and writer) for the IDX format that MNIST and Fashion-MNIST ship in.

An IDX file is a tiny header followed by a dense big-endian array::

    byte 0, 1   0x00 0x00                 (magic: always zero)
    byte 2      dtype code                0x08 uint8   0x09 int8    0x0B int16
                                          0x0C int32   0x0D float32 0x0E float64
    byte 3      ndim                      number of dimensions (>= 1)
    4 * ndim    dims                      each a big-endian uint32
    payload     prod(dims) * itemsize     row-major (C order), big-endian

So ``train-images-idx3-ubyte`` starts ``00 00 08 03 | 60000 | 28 | 28`` and holds
60000 * 28 * 28 bytes.  The reader checks every field and that the payload has
*exactly* the declared size: a short payload means a truncated download, a long one
means the header lies, and both must stop loading rather than produce a silently
wrong array.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from descentlab.errors import DataError
from descentlab.limits import check_bytes

__all__ = ["IDX_DTYPES", "read_idx", "write_idx"]

#: IDX dtype code -> numpy dtype (big-endian, as stored on disk).
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

# Deflate cannot expand data by more than ~1032:1, so a gzip file of C bytes holds at
# most about 1032 * C bytes.  A header that declares more is lying (or the file is cut
# short), and we can say so before allocating a buffer of the declared size.
_MAX_DEFLATE_RATIO = 1100
_CHUNK = 1 << 22
# numpy arrays have at most 32 dimensions (64 from numpy 2.0); datasets use 1 to 4.
_MAX_DIMS = 32


def _fix_hint(path: Path) -> str:
    return (
        f"fix: delete {path.name} and download it again, or point --data-dir / "
        "DESCENTLAB_DATA at a folder with intact files"
    )


def read_idx(path: str | os.PathLike[str], *, sha256: str | None = None) -> np.ndarray:
    """Read an IDX file (``*-ubyte`` or gzip-compressed ``*-ubyte.gz``) into a numpy array.

    The array has the file's dimensions and the native-endian version of its dtype
    (``uint8`` for MNIST images and labels).  Anything that does not match the format
    exactly -- wrong magic, unknown dtype code, payload shorter or longer than the
    header declares, a truncated or corrupt gzip stream -- raises
    :class:`~descentlab.errors.DataError` naming the file.

    With ``sha256`` (hex digest of the *decompressed* file), the content is hashed while
    it is read and a mismatch raises :class:`~descentlab.errors.DataError`.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"IDX file {path} does not exist", hint=_fix_hint(path))
    try:
        disk_size = path.stat().st_size
        # Decide by content, not by name: the gzip magic 1f 8b can never start an IDX
        # file (whose magic starts 00 00), and people gunzip files but keep names.
        with open(path, "rb") as probe:
            compressed = probe.read(2) == b"\x1f\x8b"
        opener = gzip.open if compressed else open
        with opener(path, "rb") as stream:
            hasher = hashlib.sha256() if sha256 else None
            array = _read_stream(stream, path, disk_size, compressed, hasher)
    except DataError:
        raise
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{path} is not a valid gzip file ({exc})", hint=_fix_hint(path)) from exc
    except EOFError as exc:
        raise DataError(
            f"{path} is truncated: the gzip stream ends early", hint=_fix_hint(path)
        ) from exc
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}", hint=_fix_hint(path)) from exc
    if hasher is not None and hasher.hexdigest() != str(sha256).lower():
        raise DataError(
            f"{path} fails its checksum: content SHA-256 is {hasher.hexdigest()[:16]}..., "
            f"expected {str(sha256)[:16]}...",
            hint=_fix_hint(path),
        )
    return array


def _read_exact(stream: Any, n: int) -> bytes:
    data = stream.read(n)
    return data if data is not None else b""


def _read_stream(
    stream: Any, path: Path, disk_size: int, compressed: bool, hasher: Any
) -> np.ndarray:
    dtype, dims = _read_header(stream, path, hasher)
    count = 1
    for d in dims:
        count *= d
    expected = count * dtype.itemsize
    header_size = 4 + 4 * len(dims)

    # Refuse impossible sizes before allocating (a corrupt header must not be able to
    # ask for terabytes).
    if not compressed and header_size + expected != disk_size:
        have = disk_size - header_size
        kind = "truncated" if have < expected else "longer than its header declares"
        raise DataError(
            f"{path} is {kind}: header declares shape {dims} of {dtype.name} "
            f"({expected} payload bytes) but the file has {have}",
            hint=_fix_hint(path),
        )
    if compressed and expected > _MAX_DEFLATE_RATIO * disk_size + 4096:
        raise DataError(
            f"{path} is corrupt: header declares shape {dims} ({expected} bytes), more "
            f"than a {disk_size}-byte gzip file can hold",
            hint=_fix_hint(path),
        )
    # The declared size decides before anything is allocated or decompressed.
    check_bytes(expected, f"{path} (declared shape {dims} of {dtype.name})")
    out = _read_payload(stream, path, dtype, dims, count, hasher)
    # Convert big-endian storage to native byte order in place (nothing to do for
    # 1-byte types or on big-endian machines), so no second copy of the payload is made.
    native = dtype.newbyteorder("=")
    if native != dtype:
        out = out.byteswap(inplace=True).view(native)
    try:
        return out.reshape(dims)
    except ValueError as exc:  # e.g. dims (0, 2**31, 2**31): empty, yet "too big" for numpy
        raise DataError(f"{path} declares an unusable shape {dims} ({exc})") from None


def _read_header(stream: Any, path: Path, hasher: Any) -> tuple[np.dtype, tuple[int, ...]]:
    """The magic number and the dimensions: (big-endian dtype, shape)."""
    header = _read_exact(stream, 4)
    if len(header) < 4:
        raise DataError(
            f"{path} is not an IDX file: it has only {len(header)} bytes, "
            "fewer than the 4-byte magic number",
            hint=_fix_hint(path),
        )
    zero0, zero1, code, ndim = header
    if zero0 != 0 or zero1 != 0:
        raise DataError(
            f"{path} is not an IDX file: magic number starts {header[:2].hex()} instead of "
            "0000 (is it still compressed, or a different format?)",
            hint=_fix_hint(path),
        )
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise DataError(
            f"{path} has unknown IDX dtype code 0x{code:02X} (known: {known})",
            hint=_fix_hint(path),
        )
    if ndim == 0 or ndim > _MAX_DIMS:
        raise DataError(
            f"{path} declares {ndim} dimensions; IDX arrays here need 1 to {_MAX_DIMS}",
            hint=_fix_hint(path),
        )
    raw_dims = _read_exact(stream, 4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise DataError(
            f"{path} is truncated inside its header ({ndim} dimensions declared, "
            f"{len(raw_dims) // 4} present)",
            hint=_fix_hint(path),
        )
    dims = struct.unpack(f">{ndim}I", raw_dims)
    if hasher is not None:
        hasher.update(header)
        hasher.update(raw_dims)
    return IDX_DTYPES[code], dims


def _read_payload(
    stream: Any, path: Path, dtype: np.dtype, dims: tuple[int, ...], count: int, hasher: Any
) -> np.ndarray:
    """The ``count`` values after the header, as a flat array; refuses short or long data."""
    expected = count * dtype.itemsize
    out = np.empty(count, dtype=dtype)
    view = memoryview(out).cast("B")  # type: ignore[arg-type]
    filled = 0
    while filled < expected:
        n = stream.readinto(view[filled : min(expected, filled + _CHUNK)])
        if not n:
            break
        if hasher is not None:
            hasher.update(view[filled : filled + n])
        filled += n
    if filled < expected:
        raise DataError(
            f"{path} is truncated: header declares shape {dims} of {dtype.name} "
            f"({expected} payload bytes) but only {filled} are present",
            hint=_fix_hint(path),
        )
    if _read_exact(stream, 1):
        raise DataError(
            f"{path} is longer than its header declares: shape {dims} of {dtype.name} "
            f"needs {expected} payload bytes, but more follow",
            hint=_fix_hint(path),
        )
    return out


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file (gzip-compressed when ``path`` ends in ``.gz``).

    The inverse of :func:`read_idx`; used to make test fixtures and to export data.
    """
    path = Path(path)
    arr = np.asarray(array)
    codes = {dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()}
    code = codes.get(arr.dtype.newbyteorder("="))
    if code is None:
        raise DataError(
            f"cannot write {arr.dtype} as IDX",
            hint="fix: convert to uint8, int8, int16, int32, float32 or float64 first",
        )
    if arr.ndim == 0 or arr.ndim > 255:
        raise DataError(f"cannot write a {arr.ndim}-dimensional array as IDX (1..255 dims)")
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    payload = np.ascontiguousarray(arr, dtype=IDX_DTYPES[code]).tobytes()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as fh:
        fh.write(header)
        fh.write(payload)
    return path
