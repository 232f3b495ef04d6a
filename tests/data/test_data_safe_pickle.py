"""The tutorial's mnist.pkl.gz loads through the restricted unpickler; malicious pickles don't."""

from __future__ import annotations

import builtins
import contextlib
import gzip
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from py2pickle import py2_dumps

from descentlab.data import load_dataset, load_mnist_pkl
from descentlab.data.safe_pickle import restricted_loads
from descentlab.errors import DataError


def _tutorial_arrays(n: tuple[int, int, int] = (50, 20, 20), seed: int = 0) -> tuple:
    # Like the real file: x float32 (N, 784) in [0, 1], y int64 (N,).
    rng = np.random.default_rng(seed)
    out = []
    for k in n:
        x = (rng.integers(0, 256, (k, 784)) / 255.0).astype(np.float32)
        y = (np.arange(k) % 10).astype(np.int64)
        out.append((x, y))
    return tuple(out)


def _write_pkl_gz(path: Path, payload: bytes) -> Path:
    with gzip.open(path, "wb") as fh:
        fh.write(payload)
    return path


def test_python2_tutorial_pickle_loads(tmp_path: Path) -> None:
    splits = _tutorial_arrays()
    raw = py2_dumps(splits)
    assert b"numpy.core.multiarray\n_reconstruct" in raw  # really the Python-2 spelling
    path = _write_pkl_gz(tmp_path / "mnist.pkl.gz", raw)
    loaded = load_mnist_pkl(path)
    for (x, y), (x2, y2) in zip(splits, loaded):
        assert x2.dtype == np.float32 and y2.dtype == np.int64
        np.testing.assert_array_equal(x2, x)
        np.testing.assert_array_equal(y2, y)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_python3_pickles_of_the_same_structure_load(tmp_path: Path, protocol: int) -> None:
    splits = _tutorial_arrays((12, 5, 5))
    path = _write_pkl_gz(tmp_path / "m.pkl.gz", pickle.dumps(splits, protocol=protocol))
    loaded = load_mnist_pkl(path)
    np.testing.assert_array_equal(loaded[2][0], splits[2][0])


def test_uncompressed_pickle_accepted(tmp_path: Path) -> None:
    path = tmp_path / "mnist.pkl"
    path.write_bytes(py2_dumps(_tutorial_arrays((10, 10, 10))))
    assert load_mnist_pkl(path)[0][0].shape == (10, 784)


def test_load_dataset_from_pickle_path_and_folder(tmp_path: Path) -> None:
    splits = _tutorial_arrays()
    folder = tmp_path / "mnist"
    folder.mkdir()
    path = _write_pkl_gz(folder / "mnist.pkl.gz", py2_dumps(splits))
    for target in (path, folder, str(path)):
        ds = load_dataset(target)
        assert ds.name == "mnist"
        assert [len(s) for _, s in ds] == [50, 20, 20]
        assert ds.train.x.shape == (50, 1, 28, 28) and ds.train.x.dtype == torch.float32
        assert ds.train.y.dtype == torch.int64
        assert ds.input_shape == (1, 28, 28) and ds.n_classes == 10
        np.testing.assert_array_equal(ds.valid.x.reshape(20, 784).numpy(), splits[1][0])


def test_pickle_found_by_name_in_data_dir(tmp_path: Path, isolated: Path) -> None:
    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True)
    _write_pkl_gz(folder / "mnist.pkl.gz", py2_dumps(_tutorial_arrays()))
    ds = load_dataset("mnist", data_dir=tmp_path / "data", offline=True)
    assert ds.info["format"] == "pickle"
    assert len(ds.train) == 50
    with pytest.raises(Exception, match="already split"):
        load_dataset("mnist", data_dir=tmp_path / "data", offline=True, valid_fraction=0.1)


# --- refusing malicious pickles ----------------------------------------------------------


class _SystemCall:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple:
        return (os.system, (self.command,))


class _Eval:
    def __reduce__(self) -> tuple:
        return (builtins.eval, ("__import__('os').getpid()",))


class _Popen:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (subprocess.Popen, (["touch", str(self.marker)],))


def test_malicious_pickle_is_a_real_attack(tmp_path: Path) -> None:
    # Control: the payload used below does run under plain pickle.load.
    marker = tmp_path / "pwned-control"
    pickle.loads(pickle.dumps(_SystemCall(f"touch {marker}")))
    assert marker.exists()


@pytest.mark.parametrize("protocol", [0, 2, 5])
@pytest.mark.parametrize("wrap", ["bare", "inside-splits"])
def test_os_system_refused_before_it_runs(tmp_path: Path, protocol: int, wrap: str) -> None:
    marker = tmp_path / "pwned"
    evil = _SystemCall(f"touch {marker}")
    obj = evil if wrap == "bare" else (((evil, evil)), _tutorial_arrays()[1], evil)
    path = _write_pkl_gz(tmp_path / "mnist.pkl.gz", pickle.dumps(obj, protocol=protocol))
    with pytest.raises(DataError, match=r"refused.*system") as info:
        load_mnist_pkl(path)
    assert "mnist.pkl.gz" in str(info.value)
    assert not marker.exists()
    with pytest.raises(DataError):
        load_dataset(path)
    assert not marker.exists()


@pytest.mark.parametrize("payload", ["eval", "popen"])
def test_other_callables_refused(tmp_path: Path, payload: str) -> None:
    marker = tmp_path / "pwned"
    obj = _Eval() if payload == "eval" else _Popen(marker)
    with pytest.raises(DataError, match="refused") as info:
        restricted_loads(pickle.dumps(obj, protocol=2), source="evil.pkl")
    # Protocol 2 writes subprocess.Popen under its Python-2 name, commands.Popen.
    assert ("eval" if payload == "eval" else "Popen") in str(info.value)
    assert not marker.exists()


def test_codecs_encode_only_latin1() -> None:
    # The only _codecs.encode Python 3 emits is encode(text, 'latin1'); others are refused.
    evil = b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x06\x00\x00\x00base64\x86R."
    with pytest.raises(DataError):
        restricted_loads(evil)


def test_copyreg_reconstructor_refused_for_other_classes() -> None:
    # copy_reg._reconstructor(<class>, object, None) may only build numpy objects;
    # even reaching a class through it would need find_class, which refuses builtins.
    evil = b"\x80\x02ccopy_reg\n_reconstructor\ncbuiltins\nobject\ncbuiltins\nobject\nN\x87R."
    with pytest.raises(DataError, match="refused"):
        restricted_loads(evil)
    numpy_ok = (
        b"\x80\x02ccopy_reg\n_reconstructor\ncnumpy\nndarray\ncnumpy\nndarray\nK\x00\x85\x87R."
    )
    out = restricted_loads(numpy_ok)
    assert isinstance(out, np.ndarray)


@pytest.mark.parametrize(
    "obj, match",
    [
        ({"a": 1}, "three"),
        ((1, 2, 3), "pair"),
        (((np.zeros((2, 3)), np.zeros(3)),) * 3, "shape"),
        (((np.zeros((2, 3)), "labels"),) * 3, "numpy"),
    ],
)
def test_wrong_structure(tmp_path: Path, obj: object, match: str) -> None:
    path = _write_pkl_gz(tmp_path / "m.pkl.gz", pickle.dumps(obj, protocol=2))
    with pytest.raises(DataError, match=match):
        load_mnist_pkl(path)


def test_damaged_files(tmp_path: Path) -> None:
    good = gzip.compress(py2_dumps(_tutorial_arrays((5, 5, 5))))
    cut = tmp_path / "cut.pkl.gz"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError):
        load_mnist_pkl(cut)
    trunc_pickle = tmp_path / "trunc.pkl.gz"
    trunc_pickle.write_bytes(gzip.compress(py2_dumps(_tutorial_arrays((5, 5, 5)))[:-200]))
    with pytest.raises(DataError, match="not a readable pickle"):
        load_mnist_pkl(trunc_pickle)
    with pytest.raises(DataError, match="does not exist"):
        load_mnist_pkl(tmp_path / "missing.pkl.gz")


def test_labels_out_of_range_in_pickle(tmp_path: Path) -> None:
    (xtr, ytr), va, te = _tutorial_arrays()
    ytr = ytr.copy()
    ytr[3] = 10
    folder = tmp_path / "mnist"
    folder.mkdir()
    _write_pkl_gz(folder / "mnist.pkl.gz", py2_dumps(((xtr, ytr), va, te)))
    with pytest.raises(DataError, match="out of range"):
        load_dataset(folder)


_FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@_FUZZ
@given(data=st.binary(max_size=200))
def test_fuzz_random_bytes_only_data_error(data: bytes) -> None:
    with contextlib.suppress(DataError):
        restricted_loads(b"\x80\x02" + data)


@_FUZZ
@given(cut=st.integers(0, 400), flip=st.integers(0, 400))
def test_fuzz_mutated_tutorial_pickle(cut: int, flip: int) -> None:
    raw = bytearray(py2_dumps(_tutorial_arrays((2, 1, 1))))
    if flip < len(raw):
        raw[flip] ^= 0x5A
    with contextlib.suppress(DataError):
        restricted_loads(bytes(raw[: len(raw) - cut]))


def test_refusal_happens_in_a_fresh_interpreter_too(tmp_path: Path) -> None:
    # Guards against the allow-list depending on what happens to be imported already.
    marker = tmp_path / "pwned"
    path = _write_pkl_gz(tmp_path / "e.pkl.gz", pickle.dumps(_SystemCall(f"touch {marker}")))
    code = (
        "import sys\nfrom descentlab.data import load_mnist_pkl\n"
        "try:\n    load_mnist_pkl(sys.argv[1])\nexcept Exception as e:\n"
        "    print(type(e).__name__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120
    )
    assert out.stdout.strip() == "DataError", out.stderr
    assert not marker.exists()
