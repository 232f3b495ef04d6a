"""Class 2: cached and written artifacts are verified against a checksum before use."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from descentlab import fit, load_run
from descentlab.data import write_idx
from descentlab.data.mnist_family import evict_cache, read_idx_cached
from descentlab.errors import CheckpointError

FAST = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _entries(cache: Path) -> list[Path]:
    return sorted((cache / "descentlab" / "decoded").glob("*/*.npy"))


@pytest.fixture
def labels_file(tmp_path) -> Path:
    labels = np.arange(200, dtype=np.uint8) % 10
    return write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels)


@FAST
@given(offset=st.integers(0, 10**6), value=st.integers(0, 255))
def test_a_tampered_cache_entry_is_never_used(labels_file, offset, value):
    expected = np.arange(200, dtype=np.uint8) % 10
    assert np.array_equal(read_idx_cached(labels_file), expected)
    entry = _entries(Path(os.environ["XDG_CACHE_HOME"]))[0]
    data = bytearray(entry.read_bytes())
    data[offset % len(data)] = value
    entry.write_bytes(bytes(data))
    assert np.array_equal(read_idx_cached(labels_file), expected)


def test_labels_rewritten_to_zeros_in_the_cache_are_caught(labels_file):
    read_idx_cached(labels_file)
    entry = _entries(Path(os.environ["XDG_CACHE_HOME"]))[0]
    np.save(entry, np.zeros(200, dtype=np.uint8))  # a well-formed .npy, wrong content
    again = read_idx_cached(labels_file)
    assert again.max() == 9


def test_the_cache_is_bounded_with_least_recently_used_eviction(tmp_path, monkeypatch):
    monkeypatch.setenv("DESCENTLAB_CACHE_MAX_BYTES", "5000")
    files = []
    for i in range(6):
        folder = tmp_path / f"v{i}"
        folder.mkdir()
        files.append(write_idx(folder / "x-ubyte.gz", np.full(2000, i, dtype=np.uint8)))
        read_idx_cached(files[-1])
    cache = Path(os.environ["XDG_CACHE_HOME"])
    entries = _entries(cache)
    assert sum(e.stat().st_size for e in entries) <= 5000
    assert len(entries) == 2  # two 2128-byte entries fit; the newest is always kept
    assert all(e.with_name(e.name + ".sha256").is_file() for e in entries)
    evict_cache(cache / "descentlab" / "decoded", max_bytes=0)
    assert len(_entries(cache)) == 1


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "r"
    fit("logreg", "digits", max_epochs=1, quiet=True, out=str(out))
    return out


@FAST
@given(where=st.floats(0, 1, exclude_max=True), bit=st.integers(0, 7))
def test_any_flipped_bit_of_model_safetensors_is_refused(tmp_path, finished_run, where, bit):
    model = finished_run / "model.safetensors"
    data = bytearray(model.read_bytes())
    data[int(where * len(data))] ^= 1 << bit
    copy = tmp_path / f"run-{os.getpid()}-{where}-{bit}"
    copy.mkdir()
    for name in ("config.toml", "summary.json"):
        (copy / name).write_bytes((finished_run / name).read_bytes())
    (copy / "model.safetensors").write_bytes(bytes(data))
    try:
        run = load_run(copy)
    except CheckpointError:
        return
    # Only a flip in JSON whitespace-equivalent bytes could survive; the result is exact.
    original = load_run(finished_run)
    for key, value in original.model.state_dict().items():
        assert run.model.state_dict()[key].equal(value)
