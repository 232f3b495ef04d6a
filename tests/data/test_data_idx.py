"""IDX reader: round trips for every dtype, and every kind of damage raises DataError."""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from descentlab.data.idx import IDX_DTYPES, read_idx, write_idx
from descentlab.errors import DataError

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


def _sample(dtype: type, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
    return rng.standard_normal(shape).astype(dtype)


def _raw_idx(code: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + payload


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("shape", [(7,), (5, 3), (4, 3, 2), (2, 1, 3, 2)])
def test_round_trip_every_dtype(tmp_path: Path, dtype: type, suffix: str, shape: tuple) -> None:
    arr = _sample(dtype, shape)
    path = write_idx(tmp_path / f"a-ubyte{suffix}", arr)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype)  # native byte order
    assert back.dtype.isnative
    assert back.shape == shape
    np.testing.assert_array_equal(back, arr)
    assert back.flags.writeable


def test_payload_is_big_endian_on_disk(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "x-ubyte", np.array([1, 256], dtype=np.int32))
    raw = path.read_bytes()
    assert raw[:4] == bytes([0, 0, 0x0C, 1])
    assert raw[4:8] == (2).to_bytes(4, "big")
    assert raw[8:] == (1).to_bytes(4, "big") + (256).to_bytes(4, "big")


def test_reads_header_byte_for_byte_like_mnist(tmp_path: Path) -> None:
    # The exact header MNIST's label file starts with: 00 00 08 01 | 00 00 ea 60 (60000).
    labels = np.arange(60000, dtype=np.uint8)
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(bytes.fromhex("00000801 0000ea60") + labels.tobytes())
    np.testing.assert_array_equal(read_idx(path), labels)


def test_gzip_detected_by_content_not_name(tmp_path: Path) -> None:
    arr = _sample(np.int16, (3, 4))
    gz = write_idx(tmp_path / "a.gz", arr)
    renamed = tmp_path / "a-ubyte"
    gz.rename(renamed)
    np.testing.assert_array_equal(read_idx(renamed), arr)


def test_sha256_checked_while_reading(tmp_path: Path) -> None:
    arr = _sample(np.uint8, (10, 4))
    path = write_idx(tmp_path / "a-ubyte.gz", arr)
    good = hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest()
    np.testing.assert_array_equal(read_idx(path, sha256=good), arr)
    with pytest.raises(DataError, match="checksum"):
        read_idx(path, sha256="0" * 64)


# --- damage -----------------------------------------------------------------------------


def _assert_data_error(path: Path, *words: str) -> DataError:
    with pytest.raises(DataError) as info:
        read_idx(path)
    msg = str(info.value)
    assert path.name in msg, msg  # the message names the file
    for word in words:
        assert word in msg, msg
    assert "\n" not in msg
    return info.value


def test_truncated_payload(tmp_path: Path) -> None:
    path = tmp_path / "t-ubyte"
    path.write_bytes(_raw_idx(0x08, (10, 10), bytes(99)))
    _assert_data_error(path, "truncated", "fix")


def test_truncated_payload_inside_valid_gzip(tmp_path: Path) -> None:
    path = tmp_path / "t-ubyte.gz"
    path.write_bytes(gzip.compress(_raw_idx(0x0D, (10,), bytes(39))))
    _assert_data_error(path, "truncated")


def test_truncated_gzip_stream(tmp_path: Path) -> None:
    full = gzip.compress(_raw_idx(0x08, (1000,), np.arange(1000).astype(np.uint8).tobytes()))
    path = tmp_path / "cut-ubyte.gz"
    path.write_bytes(full[: len(full) // 2])
    _assert_data_error(path, "truncated")


def test_corrupt_gzip(tmp_path: Path) -> None:
    payload = np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    data = bytearray(gzip.compress(_raw_idx(0x08, (5000,), payload)))
    for i in range(20, 60):
        data[i] ^= 0xFF
    path = tmp_path / "bad-ubyte.gz"
    path.write_bytes(bytes(data))
    _assert_data_error(path)


def test_bad_gzip_header(tmp_path: Path) -> None:
    path = tmp_path / "bad-ubyte.gz"
    path.write_bytes(b"\x1f\x8b\x00garbage-not-deflate")
    _assert_data_error(path, "gzip")


@pytest.mark.parametrize("magic", [b"\x01\x00", b"\x00\x01", b"PK"])
def test_bad_magic(tmp_path: Path, magic: bytes) -> None:
    path = tmp_path / "m-ubyte"
    path.write_bytes(magic + b"\x08\x01" + struct.pack(">I", 1) + b"\x00")
    _assert_data_error(path, "magic")


@pytest.mark.parametrize("code", [0x00, 0x07, 0x0A, 0x0F, 0xFF])
def test_bad_dtype_code(tmp_path: Path, code: int) -> None:
    path = tmp_path / "d-ubyte"
    path.write_bytes(_raw_idx(code, (2,), b"\x00\x00"))
    _assert_data_error(path, "dtype code")


def test_dims_mismatch_payload_too_long(tmp_path: Path) -> None:
    path = tmp_path / "long-ubyte"
    path.write_bytes(_raw_idx(0x08, (3, 3), bytes(10)))
    _assert_data_error(path, "longer")


def test_dims_mismatch_payload_too_long_gz(tmp_path: Path) -> None:
    path = tmp_path / "long-ubyte.gz"
    path.write_bytes(gzip.compress(_raw_idx(0x0B, (3,), bytes(8))))
    _assert_data_error(path, "longer")


def test_header_cut_inside_dims(tmp_path: Path) -> None:
    path = tmp_path / "h-ubyte"
    path.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">I", 5))
    _assert_data_error(path, "header")


def test_zero_dimensions(tmp_path: Path) -> None:
    path = tmp_path / "z-ubyte"
    path.write_bytes(bytes([0, 0, 8, 0]))
    _assert_data_error(path, "0 dimensions")


def test_huge_declared_size_refused_before_allocating(tmp_path: Path) -> None:
    path = tmp_path / "huge-ubyte.gz"
    path.write_bytes(gzip.compress(_raw_idx(0x0E, (2**32 - 1, 2**32 - 1, 2**20), b"")))
    _assert_data_error(path, "corrupt")


def test_empty_and_missing_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty-ubyte"
    empty.write_bytes(b"")
    _assert_data_error(empty, "not an IDX file")
    with pytest.raises(DataError, match="does not exist"):
        read_idx(tmp_path / "nope-ubyte")


def test_write_idx_refuses_unsupported_dtype(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot write"):
        write_idx(tmp_path / "x-ubyte", np.zeros(3, dtype=np.uint16))


def test_dtype_table_matches_format() -> None:
    assert {c: d.str for c, d in IDX_DTYPES.items()} == {
        0x08: "|u1",
        0x09: "|i1",
        0x0B: ">i2",
        0x0C: ">i4",
        0x0D: ">f4",
        0x0E: ">f8",
    }


# --- fuzzing: nothing but DataError, whatever the bytes ---------------------------------

_FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@_FUZZ
@given(data=st.binary(max_size=300), compress=st.booleans())
def test_fuzz_random_bytes(tmp_path: Path, data: bytes, compress: bool) -> None:
    path = tmp_path / "fuzz-ubyte"
    path.write_bytes(gzip.compress(data) if compress else data)
    try:
        arr = read_idx(path)
    except DataError:
        return
    assert isinstance(arr, np.ndarray)


@_FUZZ
@given(
    code=st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x10]),
    dims=st.lists(st.integers(0, 6), min_size=0, max_size=4),
    extra=st.integers(-5, 5),
    compress=st.booleans(),
)
def test_fuzz_headers_with_wrong_payload_sizes(
    tmp_path: Path, code: int, dims: list[int], extra: int, compress: bool
) -> None:
    itemsize = IDX_DTYPES[code].itemsize if code in IDX_DTYPES else 1
    n = max(int(np.prod(dims)) * itemsize + extra, 0)
    data = _raw_idx(code, tuple(dims), bytes(n))
    path = tmp_path / "fuzz2-ubyte"
    path.write_bytes(gzip.compress(data) if compress else data)
    ok = code in IDX_DTYPES and len(dims) > 0 and n == int(np.prod(dims)) * itemsize
    if ok:
        assert read_idx(path).shape == tuple(dims)
    else:
        with pytest.raises(DataError):
            read_idx(path)
