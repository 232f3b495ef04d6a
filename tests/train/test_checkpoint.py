"""Checkpoint files: round trip, atomicity, damage detection, no pickle."""

from __future__ import annotations

import json
import math

import pytest
import torch

from descentlab.errors import CheckpointError
from descentlab.train.checkpoint import (
    flatten_state,
    load_checkpoint,
    save_checkpoint,
    unflatten_state,
)


def sample_state():
    return {
        "model": {"w": torch.randn(3, 4), "b": torch.zeros(4, dtype=torch.float64)},
        "optimizer": {
            "state": {0: {"step": torch.tensor(3.0), "v": torch.ones(2)}},
            "param_groups": [{"lr": 0.1, "betas": (0.9, 0.999), "params": [0, 1]}],
        },
        "best": math.inf,
        "history": [{"epoch": 1, "test": None}],
        "flag": True,
        "rng": torch.get_rng_state(),
    }


def assert_same(a, b):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, list | tuple):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    else:
        assert a == b


def test_flatten_round_trip_keeps_types():
    state = sample_state()
    skeleton, tensors = flatten_state(state)
    json.dumps(skeleton)  # the skeleton is plain JSON
    assert_same(unflatten_state(json.loads(json.dumps(skeleton)), tensors), state)


def test_save_load_and_generations(tmp_path):
    state = sample_state()
    save_checkpoint(tmp_path / "ck", state, {"iteration": 1})
    state2 = {**state, "best": 0.5}
    save_checkpoint(tmp_path / "ck", state2, {"iteration": 2})
    got, meta = load_checkpoint(tmp_path / "ck")
    assert_same(got, state2)
    assert meta["iteration"] == 2
    prev, meta_prev = load_checkpoint(tmp_path / "ck", previous=True)
    assert_same(prev, state)
    assert meta_prev["iteration"] == 1
    # no pickle anywhere: only safetensors and JSON files
    names = sorted(p.name for p in (tmp_path / "ck").iterdir())
    assert names == [
        "manifest.json",
        "state-0.json",
        "state-0.safetensors",
        "state-1.json",
        "state-1.safetensors",
    ]


def test_damaged_checkpoint_is_reported_and_previous_offered(tmp_path):
    save_checkpoint(tmp_path, sample_state(), {"iteration": 10})
    save_checkpoint(tmp_path, sample_state(), {"iteration": 20})
    newest = tmp_path / "state-1.safetensors"
    data = bytearray(newest.read_bytes())
    data[-1] ^= 0xFF
    newest.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"damaged.*previous checkpoint \(iteration 10\)"):
        load_checkpoint(tmp_path)
    _, meta = load_checkpoint(tmp_path, previous=True)
    assert meta["iteration"] == 10


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no readable checkpoint"):
        load_checkpoint(tmp_path)


def test_failed_write_keeps_previous(tmp_path, monkeypatch):
    save_checkpoint(tmp_path, sample_state(), {"iteration": 1})
    import errno
    import os

    real_fsync = os.fsync

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(CheckpointError, match="disk full"):
        save_checkpoint(tmp_path, {**sample_state(), "best": 0.1}, {"iteration": 2})
    monkeypatch.setattr(os, "fsync", real_fsync)
    state, meta = load_checkpoint(tmp_path)
    assert meta["iteration"] == 1 and state["best"] == math.inf
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
