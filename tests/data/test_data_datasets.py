"""load_dataset: built-in scikit-learn datasets, user .npz / .csv files, IDX folders."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from datahelpers import IDX_NAMES, make_idx_folder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from descentlab.data import DATASETS, Dataset, Split, load_dataset
from descentlab.data.idx import write_idx
from descentlab.data.user_files import read_csv, read_npz
from descentlab.errors import ConfigError, DataError

# --- scikit-learn's bundled datasets ----------------------------------------------------


@pytest.mark.parametrize(
    "name, n, shape, k",
    [
        ("digits", 1797, (1, 8, 8), 10),
        ("iris", 150, (4,), 3),
        ("wine", 178, (13,), 3),
        ("breast-cancer", 569, (30,), 2),
    ],
)
def test_sklearn_datasets(name: str, n: int, shape: tuple, k: int) -> None:
    ds = load_dataset(name)
    sizes = [len(s) for _, s in ds]
    assert sum(sizes) == n
    # 60 / 20 / 20 within rounding per class.
    assert abs(sizes[0] - 0.6 * n) <= k and abs(sizes[2] - 0.2 * n) <= k
    assert ds.input_shape == shape and ds.n_classes == k
    assert ds.class_names is not None and len(ds.class_names) == k
    for _, s in ds:
        assert s.x.dtype == torch.float32 and s.y.dtype == torch.int64
        assert s.x.shape[1:] == shape
        assert set(s.y.unique().tolist()) == set(range(k))  # stratified: every class present
    info = DATASETS[name]
    assert info.input_shape == shape and info.n_classes == k


def test_digits_scaled_to_unit_interval_and_not_standardized() -> None:
    ds = load_dataset("digits")
    assert ds.mean is None and ds.scale == 16.0
    assert float(ds.train.x.min()) == 0.0 and float(ds.train.x.max()) == 1.0


def test_tabular_standardized_with_train_statistics_by_default() -> None:
    ds = load_dataset("wine")
    assert ds.mean is not None and ds.std is not None and ds.mean.shape == (13,)
    torch.testing.assert_close(ds.train.x.mean(0), torch.zeros(13), atol=1e-5, rtol=0)
    torch.testing.assert_close(ds.train.x.std(0, correction=0), torch.ones(13), atol=1e-4, rtol=0)
    # Valid/test use the *training* statistics, so they are not exactly standardized.
    assert float(ds.valid.x.mean(0).abs().max()) > 1e-3
    raw = load_dataset("wine", standardize=False)
    assert raw.mean is None
    torch.testing.assert_close(ds.valid.x, (raw.valid.x - ds.mean) / ds.std)
    torch.testing.assert_close(ds.prepare(raw.test.x), ds.test.x)


def test_split_is_seeded_and_partitions_the_data() -> None:
    a, b, c = (
        load_dataset("iris", seed=1),
        load_dataset("iris", seed=1),
        load_dataset("iris", seed=2),
    )
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    assert not torch.equal(a.train.y, c.train.y)
    # The three splits together are exactly the original examples, each once.
    from sklearn.datasets import load_iris

    bunch = load_iris()
    raw = load_dataset("iris", standardize=False)
    rows = torch.cat([torch.cat([s.x, s.y[:, None].float()], 1) for _, s in raw]).double()
    original = np.concatenate([bunch.data, bunch.target[:, None]], 1).astype(np.float32)
    key = lambda a: np.lexsort(a.T[::-1])  # noqa: E731
    got, want = rows.numpy(), original.astype(np.float64)
    np.testing.assert_array_equal(got[key(got)], want[key(want)])


def test_valid_fraction_and_subset() -> None:
    ds = load_dataset("breast-cancer", valid_fraction=0.5)
    sizes = [len(s) for _, s in ds]
    assert abs(sizes[0] - sizes[1]) <= 2 and abs(sizes[2] - 114) <= 2
    small = load_dataset("digits", subset=25)
    assert [len(s) for _, s in small] == [25, 25, 25]
    full = load_dataset("digits")
    assert torch.equal(small.train.x, full.train.x[:25])


@pytest.mark.parametrize("bad", [0, -3, 1.5, True, "10"])
def test_subset_validated(bad: object) -> None:
    with pytest.raises(ConfigError, match="subset"):
        load_dataset("iris", subset=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, 1, -0.1, 1.5, "0.2"])
def test_valid_fraction_validated(bad: object) -> None:
    with pytest.raises(ConfigError, match="valid_fraction"):
        load_dataset("iris", valid_fraction=bad)  # type: ignore[arg-type]


def test_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(DataError, match="did you mean 'mnist'"):
        load_dataset("mnsit")
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("no/such/file.npz")


def test_names_are_case_and_separator_insensitive() -> None:
    assert load_dataset("Breast_Cancer").name == "breast-cancer"


def test_to_device_and_repr() -> None:
    ds = load_dataset("iris")
    moved = ds.to("cpu")
    assert isinstance(moved, Dataset) and moved.train.device == torch.device("cpu")
    assert moved.mean is not None
    assert "iris" in repr(ds) and "90/30/30" in repr(ds)
    pre = ds.preprocessing()
    assert pre["mean"].shape == (4,) and pre["scale"] is None


def test_split_count_mismatch() -> None:
    with pytest.raises(DataError, match="labels"):
        Split(torch.zeros(3, 2), torch.zeros(2, dtype=torch.int64))


# --- .npz --------------------------------------------------------------------------------


def _xy(n: int = 60, d: int = 3, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), np.arange(n) % k


def test_npz_x_y_split_60_20_20(tmp_path: Path) -> None:
    x, y = _xy(100)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    ds = load_dataset(tmp_path / "d.npz")
    assert [len(s) for _, s in ds] == [60, 20, 20]
    assert ds.name == "d" and ds.n_classes == 3 and ds.input_shape == (3,)
    assert ds.mean is None  # user files are not standardized unless asked
    rows = torch.cat([s.x for _, s in ds]).double().numpy()
    np.testing.assert_allclose(np.sort(rows[:, 0]), np.sort(x[:, 0]).astype(np.float32), rtol=1e-6)
    ds2 = load_dataset(tmp_path / "d.npz", standardize=True)
    assert ds2.mean is not None


def test_npz_presplit_and_class_names(tmp_path: Path) -> None:
    arrays = {}
    for s, n in (("train", 10), ("valid", 4), ("test", 5)):
        x, y = _xy(n, d=2, seed=n)
        arrays[f"x_{s}"], arrays[f"y_{s}"] = x, y.astype(np.uint8)
    np.savez(tmp_path / "p.npz", **arrays, class_names=np.array(["a", "b", "c", "d"]))
    ds = load_dataset(tmp_path / "p.npz")
    assert [len(s) for _, s in ds] == [10, 4, 5]
    assert ds.n_classes == 4 and ds.class_names == ["a", "b", "c", "d"]
    np.testing.assert_array_equal(ds.valid.y.numpy(), arrays["y_valid"])
    with pytest.raises(ConfigError, match="already split"):
        load_dataset(tmp_path / "p.npz", valid_fraction=0.3)


def test_npz_train_test_gets_valid_from_train(tmp_path: Path) -> None:
    x, y = _xy(50)
    xt, yt = _xy(9)
    np.savez(tmp_path / "tt.npz", x_train=x, y_train=y, x_test=xt, y_test=yt)
    ds = load_dataset(tmp_path / "tt.npz", valid_fraction=0.2)
    assert [len(s) for _, s in ds] == [40, 10, 9]


def test_npz_images_keep_their_shape(tmp_path: Path) -> None:
    x = np.random.default_rng(0).random((40, 1, 5, 5)).astype(np.float32)
    np.savez(tmp_path / "img.npz", x=x, y=np.arange(40) % 2)
    assert load_dataset(tmp_path / "img.npz").input_shape == (1, 5, 5)


@pytest.mark.parametrize(
    "arrays, missing",
    [
        ({"x": np.zeros((5, 2))}, "'y'"),
        ({"y": np.zeros(5)}, "'x'"),
        ({"features": np.zeros((5, 2)), "labels": np.zeros(5)}, "'x'"),
        (
            {"x_train": np.zeros((5, 2)), "y_train": np.zeros(5), "x_valid": np.zeros((2, 2))},
            "'y_valid'",
        ),
        (
            {"x_train": np.zeros((5, 2)), "y_train": np.zeros(5), "x_test": np.zeros((2, 2))},
            "y_test",
        ),
    ],
)
def test_npz_missing_array_named(tmp_path: Path, arrays: dict, missing: str) -> None:
    np.savez(tmp_path / "m.npz", **arrays)
    with pytest.raises(DataError, match=missing) as info:
        load_dataset(tmp_path / "m.npz")
    assert "m.npz" in str(info.value)


@pytest.mark.parametrize(
    "y, match",
    [
        (np.array([0, 1, 2, -1] * 10), "negative"),
        (np.array([0.0, 1.0, 0.5, 1.0] * 10), "not integers"),
        (np.array([0.0, 1.0, np.nan, 1.0] * 10), "not integers"),
        (np.array(["a", "b"] * 20), "dtype"),
        (np.zeros(40, dtype=np.int64), "only one class"),
    ],
)
def test_npz_bad_labels(tmp_path: Path, y: np.ndarray, match: str) -> None:
    np.savez(tmp_path / "b.npz", x=np.zeros((len(y), 2)), y=y)
    with pytest.raises(DataError, match=match):
        load_dataset(tmp_path / "b.npz")


def test_integral_float_labels_accepted(tmp_path: Path) -> None:
    np.savez(tmp_path / "f.npz", x=np.zeros((20, 2)), y=(np.arange(20) % 2).astype(np.float64))
    assert load_dataset(tmp_path / "f.npz").train.y.dtype == torch.int64


def test_npz_label_out_of_range_for_class_names(tmp_path: Path) -> None:
    arrays = {
        f"{v}_{s}": _xy(6, k=3)[i] for s in ("train", "valid", "test") for i, v in enumerate("xy")
    }
    arrays["y_test"] = np.array([0, 1, 2, 3, 0, 1])
    np.savez(tmp_path / "r.npz", **arrays, class_names=np.array(["a", "b", "c"]))
    with pytest.raises(DataError, match=r"test split.*out of range for 3 classes"):
        load_dataset(tmp_path / "r.npz")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_npz_non_finite_features_name_split_and_count(tmp_path: Path, bad: float) -> None:
    arrays = {}
    for s in ("train", "valid", "test"):
        arrays[f"x_{s}"], arrays[f"y_{s}"] = _xy(8)
    arrays["x_valid"][[1, 1, 4], [0, 2, 1]] = bad
    np.savez(tmp_path / "n.npz", **arrays)
    with pytest.raises(DataError, match=r"valid split.*3 input values.*in 2 of 8 examples"):
        load_dataset(tmp_path / "n.npz")


def test_npz_empty_and_count_mismatch(tmp_path: Path) -> None:
    np.savez(tmp_path / "e.npz", x=np.zeros((0, 3)), y=np.zeros(0, dtype=int))
    with pytest.raises(DataError, match="empty"):
        load_dataset(tmp_path / "e.npz")
    np.savez(tmp_path / "c.npz", x=np.zeros((10, 3)), y=np.zeros(9, dtype=int))
    with pytest.raises(DataError, match="shape"):
        load_dataset(tmp_path / "c.npz")
    arrays = {}
    for s in ("train", "valid", "test"):
        arrays[f"x_{s}"], arrays[f"y_{s}"] = _xy(8)
    arrays["y_test"] = arrays["y_test"][:7]
    np.savez(tmp_path / "c2.npz", **arrays)
    with pytest.raises(DataError, match="8 inputs but 7 labels"):
        load_dataset(tmp_path / "c2.npz")
    arrays = {f"{v}_{s}": _xy(8)[i] for s in ("train", "valid", "test") for i, v in enumerate("xy")}
    arrays["x_test"] = np.zeros((8, 5))
    np.savez(tmp_path / "shape.npz", **arrays)
    with pytest.raises(DataError, match="different input shapes"):
        load_dataset(tmp_path / "shape.npz")


def test_npz_with_pickled_objects_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "o.npz", x=np.array([{"a": 1}] * 4, dtype=object), y=np.arange(4))
    with pytest.raises(DataError, match=r"not a readable \.npz"):
        load_dataset(tmp_path / "o.npz")


def test_npy_and_garbage_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.zeros(3))
    (tmp_path / "a.npz").write_bytes((tmp_path / "a.npy").read_bytes())
    with pytest.raises(DataError, match="one array"):
        read_npz(tmp_path / "a.npz")
    (tmp_path / "g.npz").write_bytes(b"PK\x03\x04 definitely not a zip")
    with pytest.raises(DataError):
        load_dataset(tmp_path / "g.npz")
    (tmp_path / "t.txt").write_text("hello")
    with pytest.raises(DataError, match="don't know how"):
        load_dataset(tmp_path / "t.txt")


# --- .csv --------------------------------------------------------------------------------


def _write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _csv_text(n: int = 30, label: str = "label") -> str:
    rows = [f"{i * 0.5},{-i},{i % 3}" for i in range(n)]
    return f"f1,f2,{label}\n" + "\n".join(rows) + "\n"


def test_csv_loads_with_label_column_anywhere(tmp_path: Path) -> None:
    ds = load_dataset(_write_csv(tmp_path / "t.csv", _csv_text()))
    assert [len(s) for _, s in ds] == [18, 6, 6]
    assert ds.input_shape == (2,) and ds.n_classes == 3
    x, y, names = read_csv(tmp_path / "t.csv", "label")
    assert names == ["f1", "f2"] and x.shape == (30, 2) and y[4] == 1
    text = "label,a\n" + "".join(f"{i % 2},{i}\n" for i in range(20))
    ds2 = load_dataset(_write_csv(tmp_path / "first.csv", text))
    assert ds2.input_shape == (1,)


def test_csv_custom_label_column_and_quotes_and_bom(tmp_path: Path) -> None:
    text = '\ufeff"x 1","cls"\n' + "".join(f'"{i}",{i % 2}\n' for i in range(20))
    ds = load_dataset(_write_csv(tmp_path / "q.csv", text), label_column="cls")
    assert ds.n_classes == 2


def test_csv_missing_label_column(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "m.csv", _csv_text(label="lable"))
    with pytest.raises(DataError, match=r"no label column 'label'.*did you mean 'lable'"):
        load_dataset(path)


@pytest.mark.parametrize(
    "text, match",
    [
        ("", "empty"),
        ("f1,label\n", "no data rows"),
        ("f1,label\n1,0\n2,x\n", "x"),
        ("f1,label\n1,0\n2\n", "columns|delimiter|row"),
        ("f1,label\n1,0,5\n2,1,5\n", "columns"),
        ("f1,label\n1,0\n2,1.5\n", "not integers"),
        ("f1,label\n1,0\n2,-1\n", "negative"),
        ("f1,label\n1,0\nnan,1\n3,1\n", "NaN or infinite"),
        ("f1,label\n1,0\ninf,1\n3,1\n", "NaN or infinite"),
        ("f1,label\n1,0\n-5e38,1\n4e38,1\n", "input values are too large for float32"),
        ("label\n1\n0\n", "no feature columns"),
        ("f1,label,label\n1,0,0\n", "more than one"),
    ],
)
def test_csv_bad_inputs(tmp_path: Path, text: str, match: str) -> None:
    path = _write_csv(tmp_path / "bad.csv", text)
    with pytest.raises(DataError, match=match):
        load_dataset(path)


def test_csv_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "b.csv").write_bytes(b"f1,label\n\xff\xfe,1\n")
    with pytest.raises(DataError, match="UTF-8"):
        load_dataset(tmp_path / "b.csv")


# --- IDX folders given by path -----------------------------------------------------------


def test_idx_folder_uses_tutorial_split(tmp_path: Path) -> None:
    arrays = make_idx_folder(tmp_path / "toy", n_train=120, n_test=30)
    ds = load_dataset(tmp_path / "toy")
    assert [len(s) for _, s in ds] == [100, 20, 30]  # last sixth of the training file
    expected = torch.from_numpy(arrays["train_images"][100:].astype(np.float32) / 255)
    torch.testing.assert_close(ds.valid.x[:, 0], expected)
    assert ds.input_shape == (1, 28, 28) and ds.scale == 255.0
    strat = load_dataset(tmp_path / "toy", valid_fraction=0.25, seed=3)
    assert [len(s) for _, s in strat] == [90, 30, 30]


def test_idx_folder_uncompressed_and_mnist_name_checks_labels(tmp_path: Path) -> None:
    make_idx_folder(tmp_path / "mnist", gz=False, n_classes=12)
    with pytest.raises(DataError, match="out of range for 10 classes"):
        load_dataset(tmp_path / "mnist")


def test_idx_folder_count_mismatch(tmp_path: Path) -> None:
    make_idx_folder(tmp_path / "toy")
    write_idx(tmp_path / "toy" / (IDX_NAMES["test_labels"] + ".gz"), np.zeros(29, np.uint8))
    with pytest.raises(DataError, match="30 images but 29 labels"):
        load_dataset(tmp_path / "toy")


def test_idx_folder_checks_its_sha256sums(tmp_path: Path) -> None:
    make_idx_folder(tmp_path / "toy")
    lines = [f"{'0' * 64}  {IDX_NAMES['train_images']}\n"]
    (tmp_path / "toy" / "SHA256SUMS.uncompressed").write_text("".join(lines))
    with pytest.raises(DataError, match="checksum"):
        load_dataset(tmp_path / "toy")


def test_folder_without_data(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"neither mnist\.pkl\.gz nor the IDX files"):
        load_dataset(tmp_path / "empty")


def test_decoded_cache_written_and_reused(tmp_path: Path, isolated: Path) -> None:
    make_idx_folder(tmp_path / "toy")
    first = load_dataset(tmp_path / "toy")
    entries = sorted((isolated / "decoded").rglob("*.npy"))
    assert len(entries) == 4
    # Damage an entry: it is rebuilt, not trusted blindly and not fatal.
    entries[0].write_bytes(b"\x93NUMPY garbage")
    again = load_dataset(tmp_path / "toy")
    assert torch.equal(first.train.x, again.train.x) and torch.equal(first.test.y, again.test.y)
    assert not list((isolated / "decoded").rglob("*.part"))


def test_two_processes_loading_at_once(tmp_path: Path, isolated: Path) -> None:
    make_idx_folder(tmp_path / "toy", n_train=600, n_test=100)
    code = (
        "import sys\nfrom descentlab.data.datasets import load_dataset\n"
        "ds = load_dataset(sys.argv[1])\n"
        "print(float(ds.train.x.sum()), int(ds.test.y.sum()))\n"
    )
    env = {**__import__("os").environ, "XDG_CACHE_HOME": str(isolated.parent)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path / "toy")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert outs[0][0] == outs[1][0]
    assert len(list((isolated / "decoded").rglob("*.npy"))) == 4
    assert not list((isolated / "decoded").rglob("*.part"))


# --- fuzzing: user files never raise anything but DataError ------------------------------

_FUZZ = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@_FUZZ
@given(data=st.binary(max_size=400))
def test_fuzz_npz_random_bytes(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "f.npz"
    path.write_bytes(data)
    with pytest.raises(DataError):
        load_dataset(path)


@_FUZZ
@given(
    entries=st.dictionaries(
        st.sampled_from(["x", "y", "x_train", "y_train", "x_test", "y_test", "x_valid", "zz"]),
        st.binary(max_size=120),
        max_size=5,
    ),
    mangle=st.integers(0, 300),
)
def test_fuzz_npz_zip_with_random_members(tmp_path: Path, entries: dict, mangle: int) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for key, blob in entries.items():
            # Half the members get a valid .npy header followed by random payload.
            header = (
                b"\x93NUMPY\x01\x00v\x00{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }"
            )
            zf.writestr(
                f"{key}.npy", (header.ljust(128 - 1) + b"\n" if len(blob) % 2 else b"") + blob
            )
    data = bytearray(buf.getvalue())
    if data and mangle < len(data):
        data[mangle] ^= 0xFF
    path = tmp_path / "z.npz"
    path.write_bytes(bytes(data))
    with contextlib.suppress(DataError):
        load_dataset(path)


@_FUZZ
@given(
    text=st.text(
        alphabet=st.sampled_from(list('0123456789,.-+eEnaifNI "\n\tlabel;x')), max_size=200
    )
)
def test_fuzz_csv_random_text(tmp_path: Path, text: str) -> None:
    path = tmp_path / "f.csv"
    path.write_text(text, encoding="utf-8")
    try:
        ds = load_dataset(path)
    except DataError:
        return
    assert ds.n_classes >= 2


@_FUZZ
@given(data=st.binary(max_size=300))
def test_fuzz_csv_random_bytes(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "g.csv"
    path.write_bytes(b"a,label\n" + data)
    with contextlib.suppress(DataError):
        load_dataset(path)
