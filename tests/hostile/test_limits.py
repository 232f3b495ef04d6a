"""Class 1: a small file must not ask for huge resources; limits decided from declarations."""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hosthelpers import measure_peak
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clihelpers import one_line_error, run_cli
from descentlab.data import load_dataset, write_idx
from descentlab.data.idx import read_idx
from descentlab.data.safe_pickle import load_mnist_pkl
from descentlab.data.user_files import read_npz
from descentlab.errors import ConfigError, DataError
from descentlab.limits import CappedReader, check_bytes, max_bytes

SMALL = str(1 << 20)  # a 1 MiB byte limit keeps every bomb in these tests tiny


def idx_header(code: int, dims: tuple[int, ...]) -> bytes:
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    code=st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E]),
    dims=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=6),
    payload=st.binary(max_size=64),
    compressed=st.booleans(),
)
def test_any_idx_header_is_read_or_refused_without_allocating(
    tmp_path_factory, monkeypatch, code, dims, payload, compressed
):
    monkeypatch.setenv("DESCENTLAB_MAX_BYTES", SMALL)
    raw = idx_header(code, tuple(dims)) + payload
    path = tmp_path_factory.mktemp("idx") / ("f-ubyte.gz" if compressed else "f-ubyte")
    path.write_bytes(gzip.compress(raw) if compressed else raw)
    try:
        array = read_idx(path)
    except DataError:
        return
    assert array.shape == tuple(dims) and array.nbytes == len(payload)


def test_idx_gzip_bomb_is_refused_by_its_declared_size(tmp_path, monkeypatch):
    monkeypatch.setenv("DESCENTLAB_MAX_BYTES", SMALL)
    path = tmp_path / "bomb-ubyte.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(idx_header(0x08, (4096, 28, 28)))
        fh.write(bytes(4096 * 28 * 28))
    with pytest.raises(DataError, match="DESCENTLAB_MAX_BYTES"):
        read_idx(path)


def test_255_dimensions_is_a_data_error(tmp_path):
    path = tmp_path / "dims-ubyte"
    path.write_bytes(idx_header(0x08, (1,) * 255) + b"\x00")
    with pytest.raises(DataError, match="255 dimensions"):
        read_idx(path)


class _Strided:
    """Pickles as numpy.ndarray(shape, dtype, buffer, offset, strides): zero strides."""

    def __init__(self, shape, strides):
        self.shape, self.strides = shape, strides

    def __reduce__(self):
        return (np.ndarray, (self.shape, np.dtype("u1"), b"\x00", 0, self.strides))


def _tutorial_pickle(path: Path, x) -> Path:
    y = np.zeros(3, dtype=np.int64)
    with gzip.open(path, "wb") as fh:
        pickle.dump(((x, y), (x, y), (x, y)), fh, protocol=2)
    return path


@pytest.mark.parametrize("shape", [(3, 784), (50000, 784), (10**6, 10**4)])
def test_zero_stride_pickle_arrays_are_refused(tmp_path, shape):
    path = _tutorial_pickle(tmp_path / "mnist.pkl.gz", _Strided(shape, (0, 0)))
    with pytest.raises(DataError, match="not a dense array"):
        load_mnist_pkl(path)


def test_pickle_opcode_flood_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setenv("DESCENTLAB_MAX_PICKLE_OPS", "1000")
    path = tmp_path / "mnist.pkl.gz"
    path.write_bytes(gzip.compress(pickle.dumps(list(range(5000)), protocol=2)))
    with pytest.raises(DataError, match="opcodes"):
        load_mnist_pkl(path)


def test_pickle_gzip_bomb_stops_at_the_limit(tmp_path, monkeypatch):
    monkeypatch.setenv("DESCENTLAB_MAX_BYTES", SMALL)
    path = tmp_path / "mnist.pkl.gz"
    path.write_bytes(gzip.compress(bytes(8 << 20)))
    with pytest.raises(DataError, match="DESCENTLAB_MAX_BYTES"):
        load_mnist_pkl(path)


def test_npz_zip_bomb_and_lying_npy_header_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("DESCENTLAB_MAX_BYTES", SMALL)
    bomb = tmp_path / "bomb.npz"
    np.savez_compressed(bomb, x=np.zeros((1024, 1024), dtype=np.float32), y=np.zeros(1024))
    with pytest.raises(DataError, match="DESCENTLAB_MAX_BYTES"):
        read_npz(bomb)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (10**9, 100)}
    )
    liar = tmp_path / "liar.npz"
    with zipfile.ZipFile(liar, "w") as archive:
        archive.writestr("x.npy", header.getvalue())
        archive.writestr("y.npy", header.getvalue())
    with pytest.raises(DataError, match="declared"):
        read_npz(liar)


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(0, 4096), max_size=20), cap=st.integers(1, 20000))
def test_capped_reader_never_returns_more_than_the_cap(sizes, cap):
    data = bytes(sum(sizes))
    reader = CappedReader(io.BytesIO(data), cap, "stream")
    got = 0
    try:
        for n in sizes:
            got += len(reader.read(n))
    except DataError:
        assert reader.count > cap
        return
    assert got == len(data) <= cap


def test_check_bytes_names_the_limit_and_the_variable(monkeypatch):
    monkeypatch.setenv("DESCENTLAB_MAX_BYTES", "1000")
    assert max_bytes() == 1000
    with pytest.raises(DataError, match="DESCENTLAB_MAX_BYTES"):
        check_bytes(1001, "a thing")
    monkeypatch.setenv("DESCENTLAB_MAX_BYTES", "0")
    check_bytes(10**15, "anything goes")  # 0 switches the limit off
    monkeypatch.setenv("DESCENTLAB_MAX_BYTES", "lots")
    with pytest.raises(ConfigError, match="DESCENTLAB_MAX_BYTES"):
        max_bytes()


def test_csv_with_a_huge_label_is_refused(capsys, tmp_path):
    csv = tmp_path / "huge.csv"
    rows = ["a,b,label"] + [f"{i},{i % 3},{i % 2}" for i in range(30)] + ["1,2,100000000"]
    csv.write_text("\n".join(rows) + "\n")
    code, _, err = run_cli(capsys, "train", "--dataset", str(csv), "--out", str(tmp_path / "r"))
    one_line_error(code, err, "number of classes", "DESCENTLAB_MAX_CLASSES")
    assert not (tmp_path / "r").exists()


def test_huge_hidden_layer_is_refused(capsys, tmp_path):
    code, _, err = run_cli(
        capsys, "train", "--dataset", "digits", "--model", "mlp", "--hidden", "1000000000",
        "--out", str(tmp_path / "r"), "--quiet",
    )  # fmt: skip
    one_line_error(code, err, "DESCENTLAB_MAX_BYTES")


def test_huge_seed_count_is_refused(capsys, tmp_path):
    code, _, err = run_cli(
        capsys, "compare", "--dataset", "digits", "--seeds", "100000000",
        "--out", str(tmp_path / "s"), "--no-report",
    )  # fmt: skip
    one_line_error(code, err, "DESCENTLAB_MAX_RUNS")
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
def test_refusals_stay_under_1gb_and_10s(tmp_path):
    """Real processes: peak RSS and wall time of refusing a zero-stride pickle and a bomb."""
    pkl = _tutorial_pickle(tmp_path / "mnist.pkl.gz", _Strided((10**6, 10**4), (0, 0)))
    bomb = tmp_path / "bomb"
    bomb.mkdir()
    with gzip.open(bomb / "train-images-idx3-ubyte.gz", "wb") as fh:
        fh.write(idx_header(0x08, (60000 * 1000, 28, 28)))
        fh.write(bytes(1 << 20))
    for name in ("train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        write_idx(bomb / f"{name}.gz", np.zeros((2, 28, 28) if "images" in name else 2, np.uint8))
    for dataset in (pkl, bomb):
        # The time of the refusal itself (a child's wall time is mostly importing torch).
        t0 = time.perf_counter()
        with pytest.raises(DataError):
            load_dataset(str(dataset))
        assert time.perf_counter() - t0 < 10
        code, err, _seconds, peak = measure_peak(
            "train", "--dataset", str(dataset), "--out", str(tmp_path / "r"), "--quiet",
            env={"DESCENTLAB_NO_CACHE": "1"},
        )  # fmt: skip
        assert code == 2, err
        assert peak < (1 << 30), (dataset, peak)
