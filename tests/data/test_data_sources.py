"""Where files are found, the one-message failure, checksums, and downloads from a local server."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest
from datahelpers import IDX_NAMES, idx_spec, make_idx_folder

from descentlab.data import (
    describe_datasets,
    download,
    find_dataset_files,
    load_dataset,
    sources,
    verify,
)
from descentlab.data.sources import FilesetSpec, cache_dir, fetch, read_sums
from descentlab.errors import DataError

# --- search order ------------------------------------------------------------------------


def _spec_for(folder: Path, name: str = "toy") -> FilesetSpec:
    return idx_spec(folder, name=name)


def test_cache_dir_honours_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c" / "descentlab"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "descentlab"


def test_search_order(tmp_path: Path, isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit, env, system = tmp_path / "explicit", tmp_path / "env", sources.SYSTEM_DATASETS
    for root in (explicit, env, isolated, system):
        make_idx_folder(root / "toy")
    spec = _spec_for(explicit / "toy")
    monkeypatch.setenv("DESCENTLAB_DATA", str(env))

    found = find_dataset_files(spec, data_dir=explicit, offline=True)
    assert (found.folder, found.where) == (explicit / "toy", "data_dir")
    found = find_dataset_files(spec, offline=True)
    assert (found.folder, found.where) == (env / "toy", "$DESCENTLAB_DATA")
    monkeypatch.delenv("DESCENTLAB_DATA")
    found = find_dataset_files(spec, offline=True)
    assert (found.folder, found.where) == (isolated / "toy", "user cache")
    for p in (isolated / "toy").iterdir():
        p.unlink()
    found = find_dataset_files(spec, offline=True)
    assert (found.folder, found.where) == (system / "toy", "system datasets")
    assert set(found.files) == set(IDX_NAMES)


def test_data_dir_may_be_the_dataset_folder_and_files_uncompressed(
    tmp_path: Path, isolated: Path
) -> None:
    make_idx_folder(tmp_path / "here", gz=False)
    spec = FilesetSpec("toy", sources.SPECS["mnist"].files, ())
    found = find_dataset_files(spec, data_dir=tmp_path / "here", offline=True)
    assert found.folder == tmp_path / "here"
    assert found.files["train_images"].name == "train-images-idx3-ubyte"


def test_builtin_name_wins_over_a_folder_in_cwd(
    tmp_path: Path, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_idx_folder(tmp_path / "mnist", n_train=60, n_test=10)  # not the real MNIST
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="mnist files not found"):
        load_dataset("mnist", offline=True)
    assert [len(s) for _, s in load_dataset("./mnist")] == [50, 10, 10]


def test_torchvision_layout_recognised(tmp_path: Path, isolated: Path) -> None:
    make_idx_folder(tmp_path / "MNIST" / "raw")
    found = find_dataset_files("mnist", data_dir=tmp_path, offline=True)
    assert found.folder == tmp_path / "MNIST" / "raw"


def test_one_message_listing_every_place(
    tmp_path: Path, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    partial = tmp_path / "data" / "mnist"
    make_idx_folder(partial)
    (partial / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as info:
        load_dataset("mnist", data_dir=tmp_path / "data", offline=True)
    msg = str(info.value)
    assert "\n" not in msg
    for expected in (
        str(partial),
        "missing t10k-labels-idx1-ubyte",
        "$DESCENTLAB_DATA (not set)",
        str(isolated / "mnist"),
        str(sources.SYSTEM_DATASETS / "mnist"),
        "offline",
        "fix:",
        "train-images-idx3-ubyte.gz",
    ):
        assert expected in msg, expected
    # In search order, and without the alternative spellings that do not exist.
    assert msg.index(str(partial)) < msg.index("$DESCENTLAB_DATA") < msg.index(str(isolated))
    assert "MNIST/raw" not in msg
    monkeypatch.setenv("DESCENTLAB_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="nowhere"):
        find_dataset_files("fashion-mnist", offline=True)


# --- download ----------------------------------------------------------------------------


def _payload(tmp_path: Path) -> tuple[Path, bytes]:
    make_idx_folder(tmp_path / "src", n_train=12, n_test=6)
    path = tmp_path / "src" / "train-images-idx3-ubyte.gz"
    return path, path.read_bytes()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_ok(tmp_path: Path, http_root: tuple[str, Path]) -> None:
    url, www = http_root
    _, data = _payload(tmp_path)
    (www / "f.gz").write_bytes(data)
    dest_dir = tmp_path / "dest"
    dest_dir.mkdir()
    out = download(
        url + "f.gz",
        dest_dir / "f.gz",
        md5=hashlib.md5(data, usedforsecurity=False).hexdigest(),
        sha256=hashlib.sha256(data).hexdigest(),
        content_sha256=hashlib.sha256(gzip.decompress(data)).hexdigest(),
        quiet=True,
    )
    assert out.read_bytes() == data
    assert _leftovers(dest_dir) == ["f.gz"]


@pytest.mark.parametrize("which", ["md5", "sha256", "content_sha256"])
def test_download_checksum_mismatch_leaves_nothing(
    tmp_path: Path, http_root: tuple[str, Path], which: str
) -> None:
    url, www = http_root
    _, data = _payload(tmp_path)
    (www / "f.gz").write_bytes(data)
    dest_dir = tmp_path / "dest"
    dest_dir.mkdir()
    wrong = {"md5": "0" * 32} if which == "md5" else {which: "0" * 64}
    with pytest.raises(DataError, match=r"mismatch|expected"):
        download(url + "f.gz", dest_dir / "f.gz", quiet=True, **wrong)
    assert _leftovers(dest_dir) == []


def test_download_does_not_replace_existing_file_on_failure(
    tmp_path: Path, http_root: tuple[str, Path]
) -> None:
    url, www = http_root
    (www / "f.gz").write_bytes(b"new and wrong")
    dest = tmp_path / "f.gz"
    dest.write_bytes(b"old")
    with pytest.raises(DataError):
        download(url + "f.gz", dest, md5="0" * 32, quiet=True)
    assert dest.read_bytes() == b"old"
    assert _leftovers(tmp_path) == ["f.gz", "www"]


def test_download_404_leaves_nothing(tmp_path: Path, http_root: tuple[str, Path]) -> None:
    url, _ = http_root
    dest_dir = tmp_path / "dest"
    dest_dir.mkdir()
    with pytest.raises(DataError, match="404"):
        download(url + "missing.gz", dest_dir / "missing.gz", quiet=True)
    assert _leftovers(dest_dir) == []


def test_download_file_url_and_refused_scheme(tmp_path: Path) -> None:
    src, data = _payload(tmp_path)
    out = download(src.as_uri(), tmp_path / "copy.gz", quiet=True)
    assert out.read_bytes() == data
    with pytest.raises(DataError, match="only http, https and file"):
        download("ftp://127.0.0.1/x.gz", tmp_path / "x.gz", quiet=True)
    with pytest.raises(DataError):
        download((tmp_path / "nope.gz").as_uri(), tmp_path / "nope.gz", quiet=True)
    assert not (tmp_path / "nope.gz").exists()


def test_fetch_tries_mirrors_in_order(tmp_path: Path, http_root: tuple[str, Path]) -> None:
    url, www = http_root
    make_idx_folder(tmp_path / "src")
    for p in (tmp_path / "src").iterdir():
        (www / "good").mkdir(exist_ok=True)
        (www / "good" / p.name).write_bytes(p.read_bytes())
    spec = idx_spec(tmp_path / "src", mirrors=(url + "broken/", url + "good/"))
    files = fetch(spec, tmp_path / "dest", quiet=True)
    assert set(files) == set(IDX_NAMES)
    assert sorted(_leftovers(tmp_path / "dest")) == sorted(f"{n}.gz" for n in IDX_NAMES.values())


def test_find_downloads_into_cache_then_loads(
    tmp_path: Path, isolated: Path, http_root: tuple[str, Path]
) -> None:
    url, www = http_root
    arrays = make_idx_folder(tmp_path / "src")
    for p in (tmp_path / "src").iterdir():
        (www / p.name).write_bytes(p.read_bytes())
    spec = idx_spec(tmp_path / "src", name="toy", mirrors=(url,))
    found = find_dataset_files(spec, quiet=True)
    assert found.downloaded and found.folder == isolated / "toy"
    assert verify_against(found.files["train_labels"], arrays["train_labels"])
    # Offline afterwards: found in the cache, no download needed.
    again = find_dataset_files(spec, offline=True)
    assert again.where == "user cache" and not again.downloaded


def verify_against(path: Path, expected: np.ndarray) -> bool:
    from descentlab.data import read_idx

    return bool(np.array_equal(read_idx(path), expected))


def test_download_failure_everywhere_is_one_message_and_leaves_nothing(
    tmp_path: Path, isolated: Path, http_root: tuple[str, Path]
) -> None:
    url, www = http_root
    make_idx_folder(tmp_path / "src")
    for p in (tmp_path / "src").iterdir():
        (www / p.name).write_bytes(p.read_bytes())
    (www / "t10k-labels-idx1-ubyte.gz").write_bytes(b"tampered")  # fails its MD5
    spec = idx_spec(tmp_path / "src", name="toy", mirrors=(url, url + "404/"))
    with pytest.raises(DataError) as info:
        find_dataset_files(spec, quiet=True)
    msg = str(info.value)
    assert "MD5 checksum mismatch" in msg and "404" in msg and "looked in" in msg
    # Verified files may stay for the next attempt; nothing partial or unverified does.
    left = _leftovers(isolated / "toy")
    assert "t10k-labels-idx1-ubyte.gz" not in left
    assert not [n for n in left if n.startswith(".") or n.endswith(".part")]


def test_nothing_downloaded_leaves_no_folder(
    tmp_path: Path, isolated: Path, http_root: tuple[str, Path]
) -> None:
    url, _ = http_root
    make_idx_folder(tmp_path / "src")
    spec = idx_spec(tmp_path / "src", name="toy", mirrors=(url,))
    with pytest.raises(DataError, match="404"):
        find_dataset_files(spec, quiet=True)
    assert not (isolated / "toy").exists()


# --- checksums and describe_datasets -----------------------------------------------------


def test_verify_statuses(tmp_path: Path) -> None:
    folder = tmp_path / "toy"
    make_idx_folder(folder)
    good = sources.decompressed_sha256(folder / "train-images-idx3-ubyte.gz")
    (folder / "SHA256SUMS.uncompressed").write_text(
        f"{good}  train-images-idx3-ubyte\n"
        f"{'1' * 64} *train-labels-idx1-ubyte\n"
        f"{'2' * 64}  not-there-ubyte\n"
    )
    assert verify(folder) == {
        "train-images-idx3-ubyte": "ok",
        "train-labels-idx1-ubyte": "mismatch",
        "not-there-ubyte": "missing",
        "t10k-images-idx3-ubyte": "unverified",
        "t10k-labels-idx1-ubyte": "unverified",
    }


def test_malformed_sums_file(tmp_path: Path) -> None:
    (tmp_path / "SHA256SUMS.uncompressed").write_text("abc  file\n")
    with pytest.raises(DataError, match="line 1"):
        read_sums(tmp_path)


def test_shared_data_verifies(shared_data: Path) -> None:
    for name in ("mnist", "fashion-mnist"):
        status = verify(shared_data / name)
        assert status and set(status.values()) == {"ok"}, status


def test_describe_datasets_not_found_and_mismatch(tmp_path: Path, isolated: Path) -> None:
    rows = {r["name"]: r for r in describe_datasets(verify=False)}
    assert set(rows) == {"mnist", "fashion-mnist", "digits", "iris", "wine", "breast-cancer"}
    assert rows["mnist"]["where"] == "not found" and rows["mnist"]["status"] == "not found"
    assert rows["iris"]["status"] == "bundled" and rows["iris"]["sizes"] == {
        "train": 90,
        "valid": 30,
        "test": 30,
    }
    # A folder named mnist whose files are not MNIST: checksums mismatch.
    make_idx_folder(tmp_path / "d" / "mnist")
    rows = {r["name"]: r for r in describe_datasets(tmp_path / "d")}
    assert rows["mnist"]["status"] == "mismatch"
    assert set(rows["mnist"]["checksums"].values()) == {"mismatch"}
    assert rows["mnist"]["where"] == str(tmp_path / "d" / "mnist")
    assert rows["mnist"]["n_classes"] == 10 and rows["mnist"]["bytes"] > 0


def test_describe_datasets_real(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DESCENTLAB_DATA", str(shared_data))
    rows = {r["name"]: r for r in describe_datasets()}
    for name in ("mnist", "fashion-mnist"):
        assert rows[name]["status"] == "ok", rows[name]
        assert rows[name]["found_via"] == "$DESCENTLAB_DATA"
        assert rows[name]["sizes"] == {"train": 50000, "valid": 10000, "test": 10000}


def test_named_dataset_with_wrong_content_is_refused(tmp_path: Path, isolated: Path) -> None:
    make_idx_folder(tmp_path / "d" / "mnist")
    with pytest.raises(DataError, match="checksum"):
        load_dataset("mnist", data_dir=tmp_path / "d", offline=True)
    # Nothing was cached for the damaged file.
    assert not list(isolated.parent.rglob("train-images*.npy"))
