"""The checkpoint format: atomic writes, damage detection, no pickle, odd states.

The crash test snapshots the checkpoint folder just before every rename and fsync a
save performs — exactly what ``kill -9`` at that moment would leave, half-written
temporary files included — and checks that every snapshot loads as either the
previous or the new checkpoint, never as an error or a mixture.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import pickle
import shutil
import struct

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from relhelpers import assert_same_tensors

from descentlab.errors import CheckpointError
from descentlab.train import checkpoint as ck
from descentlab.train.checkpoint import (
    checkpoint_info,
    flatten_state,
    load_checkpoint,
    promote_previous,
    save_checkpoint,
    unflatten_state,
)

REAL_FSYNC = True  # the atomicity tests below count and interrupt real fsyncs


def state(i: int) -> dict:
    g = torch.Generator().manual_seed(i)
    return {
        "model": {"w": torch.randn(4, 3, generator=g), "b": torch.full((3,), float(i))},
        "optimizer": {
            "state": {0: {"step": torch.tensor(float(i)), "v": torch.randn(4, 3, generator=g)}},
            "param_groups": [{"lr": 0.1 / (i + 1), "betas": (0.9, 0.999), "params": [0]}],
        },
        "counters": {"iteration": i, "epoch": i // 10},
        "best": math.inf if i == 0 else 1.0 / i,
        "history": [{"epoch": e, "test_error": None} for e in range(i)],
    }


def meta(i: int) -> dict:
    return {"iteration": i, "model": "mlp"}


# -------------------------------------------------------------- atomicity
def test_kill_at_any_point_of_a_save_leaves_the_old_or_the_new_checkpoint(tmp_path, monkeypatch):
    folder = tmp_path / "checkpoint"
    save_checkpoint(folder, state(1), meta(1))
    save_checkpoint(folder, state(2), meta(2))
    snapshots = []

    def snapshot_then(real):
        def wrapper(*args, **kwargs):
            target = tmp_path / f"snap-{len(snapshots)}"
            shutil.copytree(folder, target)
            snapshots.append(target)
            return real(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(os, "replace", snapshot_then(os.replace))
    monkeypatch.setattr(os, "fsync", snapshot_then(os.fsync))
    save_checkpoint(folder, state(3), meta(3))
    monkeypatch.undo()
    assert len(snapshots) >= 8  # 3 files x (fsync + rename) + folder fsyncs
    outcomes = []
    for snap in [*snapshots, folder]:
        got, m = load_checkpoint(snap)
        assert m["iteration"] in (2, 3), snap
        assert_same_tensors(got, state(m["iteration"]), str(snap))
        outcomes.append(m["iteration"])
    assert outcomes[0] == 2 and outcomes[-1] == 3
    assert outcomes == sorted(outcomes)  # the switch happens once, at the manifest's rename
    # a later save from any of those states cleans up the leftovers and continues
    for snap in snapshots:
        save_checkpoint(snap, state(4), meta(4))
        assert not [p for p in snap.iterdir() if ".tmp-" in p.name]
        assert load_checkpoint(snap)[1]["iteration"] == 4
        assert load_checkpoint(snap, previous=True)[1]["iteration"] in (2, 3)


@pytest.mark.parametrize("fail_on", ["fsync", "replace", "open"])
@pytest.mark.parametrize("at", [0, 1, 2, 3])
def test_disk_full_at_any_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch, fail_on, at):
    folder = tmp_path / "run" / "checkpoint"
    save_checkpoint(folder, state(1), meta(1))
    calls = {"n": 0}
    real = {"fsync": os.fsync, "replace": os.replace, "open": open}[fail_on]

    def failing(*args, **kwargs):
        if fail_on == "open" and "tmp-" not in str(args[0]):
            return real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == at + 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    if fail_on == "open":
        monkeypatch.setattr("builtins.open", failing)
    else:
        monkeypatch.setattr(os, fail_on, failing)
    try:
        save_checkpoint(folder, state(2), meta(2))
    except CheckpointError as exc:
        message = str(exc)
        assert "disk full while writing checkpoint" in message
        assert "previous checkpoint (iteration 1) is intact" in message
        assert f"descentlab train --resume {tmp_path / 'run'}" in message
        monkeypatch.undo()
        assert load_checkpoint(folder)[1]["iteration"] == 1
    else:  # the failure hit a (best-effort) folder fsync, or came after the last call
        monkeypatch.undo()
        assert load_checkpoint(folder)[1]["iteration"] == 2
    assert not [p for p in folder.iterdir() if ".tmp-" in p.name]


def test_disk_full_at_the_first_checkpoint_says_there_is_none(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(CheckpointError, match="no checkpoint had been written yet"):
        save_checkpoint(tmp_path / "checkpoint", state(1), meta(1))


# ------------------------------------------------------------------ damage
NEWEST_FILES = ["state-1.safetensors", "state-1.json", "manifest.json"]


@pytest.mark.parametrize("name", NEWEST_FILES)
@pytest.mark.parametrize("how", ["flip", "truncate", "delete"])
def test_damage_is_detected_and_the_previous_checkpoint_offered(tmp_path, name, how):
    run = tmp_path / "run"
    folder = run / "checkpoint"
    save_checkpoint(folder, state(1), meta(1))
    save_checkpoint(folder, state(2), meta(2))
    path = folder / name
    data = bytearray(path.read_bytes())
    if how == "flip":
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
    elif how == "truncate":
        path.write_bytes(bytes(data[: len(data) // 2]))
    else:
        path.unlink()
    if name == "manifest.json":
        # The manifest is only the pointer: without it the records' own checksums decide.
        got, m = load_checkpoint(folder)
        assert m["iteration"] == 2
        assert_same_tensors(got, state(2))
        return
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(folder)
    message = str(info.value)
    assert "damaged" in message or "missing" in message
    assert "previous checkpoint (iteration 1) is intact" in message
    assert f"descentlab train --resume-previous {run}" in message
    got, m = load_checkpoint(folder, previous=True)
    assert m["iteration"] == 1
    assert_same_tensors(got, state(1))


def test_resuming_from_the_previous_checkpoint_then_saving_overwrites_the_damaged_one(tmp_path):
    folder = tmp_path / "checkpoint"
    for i in (1, 2):
        save_checkpoint(folder, state(i), meta(i))
    (folder / "state-1.safetensors").write_bytes(b"garbage")  # generation 2 is damaged
    load_checkpoint(folder, previous=True)
    promote_previous(folder)
    assert checkpoint_info(folder).meta["iteration"] == 1
    save_checkpoint(folder, state(3), meta(3))
    assert load_checkpoint(folder)[1]["iteration"] == 3
    # the generation training continued from is still there as the fallback
    assert load_checkpoint(folder, previous=True)[1]["iteration"] == 1


def test_both_generations_damaged_is_one_clear_error(tmp_path):
    folder = tmp_path / "checkpoint"
    for i in (1, 2):
        save_checkpoint(folder, state(i), meta(i))
    for slot in ("state-0", "state-1"):
        (folder / f"{slot}.safetensors").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="damaged") as info:
        load_checkpoint(folder)
    assert "previous" not in str(info.value)
    with pytest.raises(CheckpointError, match="no intact previous checkpoint"):
        load_checkpoint(folder, previous=True)


def test_only_one_generation_has_no_previous(tmp_path):
    save_checkpoint(tmp_path, state(1), meta(1))
    with pytest.raises(CheckpointError, match="no intact previous checkpoint"):
        load_checkpoint(tmp_path, previous=True)


def _forge(folder, body: bytes, tensors: dict[str, torch.Tensor] | None = None) -> None:
    """A record with correct checksums around arbitrary content (a crafted file)."""
    from safetensors.torch import save

    blob = save(tensors or {"x": torch.zeros(1)})
    header = {
        "format": ck.FORMAT,
        "format_version": ck.FORMAT_VERSION,
        "generation": 0,
        "sha256": {
            "tensors": hashlib.sha256(blob).hexdigest(),
            "body": hashlib.sha256(body).hexdigest(),
        },
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "state-0.safetensors").write_bytes(blob)
    (folder / "state-0.json").write_bytes(json.dumps(header).encode() + b"\n" + body + b"\n")


@pytest.mark.parametrize(
    "body",
    [
        b'{"meta": {}, "state": {"__reduce__": ["os.system", "touch pwned"]}}',
        b'{"meta": {}, "state": {"__tensor__": "not-there"}}',
        b'{"meta": {}, "state": {"__dict__": 5}}',
        b'{"meta": {}, "state": {"__float__": "1e999999"}}',
        b'{"meta": {}, "state": [1, 2, 3]}',
        b'{"meta": [], "state": {}}',
        b'{"meta": {}, "state": ' + b'{"__list__": [' * 5000 + b"]}" * 5000 + b"}",
        b"not json at all",
    ],
)
def test_crafted_records_are_refused_not_executed(tmp_path, body):
    _forge(tmp_path, body)
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path)
    assert not (tmp_path / "pwned").exists()


def test_a_newer_format_is_refused_clearly(tmp_path):
    save_checkpoint(tmp_path, state(1), meta(1))
    record = (tmp_path / "state-0.json").read_bytes()
    head, _, body = record.partition(b"\n")
    header = json.loads(head)
    header["format_version"] = ck.FORMAT_VERSION + 1
    (tmp_path / "state-0.json").write_bytes(json.dumps(header).encode() + b"\n" + body)
    (tmp_path / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match="format version"):
        load_checkpoint(tmp_path)


# ---------------------------------------------------------------- no pickle
def test_saving_and_loading_never_touch_pickle(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("pickle used")

    for name in ("load", "loads", "dump", "dumps", "Unpickler", "Pickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(torch, "save", refuse)
    save_checkpoint(tmp_path, state(1), meta(1))
    assert_same_tensors(load_checkpoint(tmp_path)[0], state(1))


def test_the_files_are_safetensors_and_json_only(tmp_path):
    save_checkpoint(tmp_path, state(1), meta(1))
    save_checkpoint(tmp_path, state(2), meta(2))
    for path in tmp_path.iterdir():
        data = path.read_bytes()
        if path.suffix == ".safetensors":
            (n,) = struct.unpack("<Q", data[:8])  # safetensors: length, JSON header, raw bytes
            header = json.loads(data[8 : 8 + n])
            assert all(v["dtype"] for k, v in header.items() if k != "__metadata__")
        elif path.name == "manifest.json":
            json.loads(data)
        else:  # a record: header line and body line
            header, body = data.splitlines()
            json.loads(header), json.loads(body)
        assert b"\x80\x04" not in data[:2]  # no pickle protocol marker at the start


# ----------------------------------------------------------- odd contents
def test_shared_and_tied_tensors_are_stored(tmp_path):
    shared = torch.arange(6.0)
    tied = {"a": shared, "b": shared, "view": shared[2:4], "empty": torch.zeros(0)}
    save_checkpoint(tmp_path, tied, {})
    got, _ = load_checkpoint(tmp_path)
    assert_same_tensors(got, {k: v.clone() for k, v in tied.items()})


def test_unsupported_values_are_a_type_error(tmp_path):
    with pytest.raises(TypeError, match="cannot checkpoint a object"):
        flatten_state({"x": object()})
    with pytest.raises(TypeError, match="keys must be str or int"):
        flatten_state({(1, 2): 3})


def _same(a, b) -> None:
    if isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b)
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape
        assert torch.equal(a, b) or (a.isnan() == b.isnan()).all()
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, list | tuple):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    else:
        assert type(a) is type(b) and a == b


DTYPES = [torch.float32, torch.float64, torch.float16, torch.int64, torch.uint8, torch.bool]
tensors = st.builds(
    lambda dtype, shape, seed: (
        torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * 100
    ).to(dtype),
    st.sampled_from(DTYPES),
    st.lists(st.integers(0, 4), max_size=3).map(tuple),
    st.integers(0, 2**31),
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
states = st.recursive(
    scalars | tensors,
    lambda children: (
        st.lists(children, max_size=4)
        | st.lists(children, max_size=4).map(tuple)
        | st.dictionaries(st.text(max_size=8) | st.integers(-5, 5), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=states)
def test_any_nested_state_round_trips(tmp_path, monkeypatch, value):
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # serialization, not durability
    skeleton, flat = flatten_state({"v": value})
    _same(unflatten_state(json.loads(json.dumps(skeleton)), flat), {"v": value})
    folder = tmp_path / "ck"
    shutil.rmtree(folder, ignore_errors=True)
    save_checkpoint(folder, {"v": value}, {"iteration": 0})
    _same(load_checkpoint(folder)[0], {"v": value})
