"""Checkpoints without pickle: tensors in safetensors, everything else in JSON.

A checkpoint is a folder ``checkpoint/`` inside the run directory with

* ``state.safetensors`` — every tensor of the trainer state, flattened;
* ``manifest.json`` — the nested structure (tensors replaced by references),
  the SHA-256 of ``state.safetensors``, and what the run is (model, optimizer)
  so resuming with a different one is refused.

Writes are atomic: both files go to temporary names in the same folder, are
fsync'ed, and are renamed into place, the manifest last.  The manifest names
the tensor file it belongs to, so a crash between the two renames leaves the
previous pair valid (``state-<n>.safetensors`` alternates generations).
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import torch

from descentlab.errors import CheckpointError

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


# ------------------------------------------------------------ nested ↔ flat
def flatten_state(state: Any) -> tuple[Any, dict[str, torch.Tensor]]:
    """Split a nested state into a JSON-able skeleton and a flat dict of tensors."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(obj: Any, path: str) -> Any:
        if isinstance(obj, torch.Tensor):
            key = path or "root"
            tensors[key] = obj.detach().cpu().contiguous()
            return {"__tensor__": key}
        if isinstance(obj, dict):
            if any(not isinstance(k, str | int) for k in obj):
                raise TypeError(f"checkpoint keys must be str or int at {path!r}")
            # int keys (optimizer state is keyed by param index) survive as tagged strings
            return {
                "__dict__": [
                    [k, walk(v, f"{path}.{k}" if path else str(k))] for k, v in obj.items()
                ]
            }
        if isinstance(obj, list | tuple):
            tag = "__tuple__" if isinstance(obj, tuple) else "__list__"
            return {tag: [walk(v, f"{path}.{i}") for i, v in enumerate(obj)]}
        if isinstance(obj, float) and not math.isfinite(obj):
            return {"__float__": repr(obj)}
        if obj is None or isinstance(obj, bool | int | float | str):
            return obj
        raise TypeError(f"cannot checkpoint a {type(obj).__name__} at {path!r}")

    return walk(state, ""), tensors


def unflatten_state(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`flatten_state`."""
    if isinstance(skeleton, dict):
        if "__tensor__" in skeleton:
            return tensors[skeleton["__tensor__"]]
        if "__dict__" in skeleton:
            return {k: unflatten_state(v, tensors) for k, v in skeleton["__dict__"]}
        if "__list__" in skeleton:
            return [unflatten_state(v, tensors) for v in skeleton["__list__"]]
        if "__tuple__" in skeleton:
            return tuple(unflatten_state(v, tensors) for v in skeleton["__tuple__"])
        if "__float__" in skeleton:
            return float(skeleton["__float__"])
        raise CheckpointError("checkpoint manifest has an unknown entry")
    return skeleton


# ------------------------------------------------------------------- files
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never half."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _io_error(path, exc) from None
    _fsync_dir(path.parent)


def _io_error(path: Path, exc: OSError) -> CheckpointError:
    if exc.errno == errno.ENOSPC:
        return CheckpointError(
            f"disk full while writing {path}; the previous checkpoint is intact",
            hint="free some space and resume with --resume",
        )
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return CheckpointError(
            f"cannot write {path}: permission denied", hint="choose a writable --out directory"
        )
    return CheckpointError(f"cannot write {path}: {exc.strerror or exc}")


def save_checkpoint(folder: str | Path, state: dict[str, Any], meta: dict[str, Any]) -> Path:
    """Atomically write ``state`` (nested dicts/lists of tensors and JSON values).

    Two generations are kept (``state-0``/``state-1``); ``manifest.json`` names
    the newest and is replaced last, so until it is, the previous generation
    is what a resume reads.
    """
    from safetensors.torch import save

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _io_error(folder, exc) from None
    skeleton, tensors = flatten_state(state)
    previous = _read_json(folder / MANIFEST)
    generation = int((previous or {}).get("generation", -1)) + 1
    stem = f"state-{generation % 2}"
    atomic_write_bytes(folder / f"{stem}.safetensors", save(tensors))
    record = {
        "format": "descentlab-checkpoint",
        "format_version": FORMAT_VERSION,
        "generation": generation,
        "sha256": _sha256(folder / f"{stem}.safetensors"),
        "meta": meta,
        "state": skeleton,
    }
    atomic_write_bytes(folder / f"{stem}.json", json.dumps(record).encode("utf-8"))
    pointer = {
        "format": "descentlab-checkpoint",
        "generation": generation,
        "latest": stem,
        "meta": meta,
    }
    atomic_write_bytes(folder / MANIFEST, json.dumps(pointer).encode("utf-8"))
    return folder


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _load_generation(folder: Path, stem: str) -> tuple[dict[str, Any], dict[str, Any]]:
    from safetensors.torch import load

    record = _read_json(folder / f"{stem}.json")
    tensor_path = folder / f"{stem}.safetensors"
    if record is None or record.get("format") != "descentlab-checkpoint":
        raise CheckpointError(
            f"checkpoint record {folder / (stem + '.json')} is missing or damaged"
        )
    if not tensor_path.is_file() or _sha256(tensor_path) != record.get("sha256"):
        raise CheckpointError(f"checkpoint {tensor_path} is damaged (checksum mismatch)")
    try:
        tensors = load(tensor_path.read_bytes())
        state = unflatten_state(record["state"], tensors)
    except CheckpointError:
        raise
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"cannot read checkpoint {tensor_path}: {exc}") from None
    return state, record.get("meta", {})


def load_checkpoint(
    folder: str | Path, *, previous: bool = False
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read and verify the newest checkpoint (or the one before it); returns ``(state, meta)``."""
    folder = Path(folder)
    pointer = _read_json(folder / MANIFEST)
    if pointer is None or pointer.get("format") != "descentlab-checkpoint":
        raise CheckpointError(
            f"no readable checkpoint in {folder}",
            hint="pass a run directory written by 'descentlab train'",
        )
    generation = int(pointer.get("generation", 0))
    if previous:
        if generation < 1:
            raise CheckpointError(f"{folder} holds only one checkpoint generation")
        generation -= 1
    stem = f"state-{generation % 2}"
    try:
        return _load_generation(folder, stem)
    except CheckpointError as exc:
        other = f"state-{(generation - 1) % 2}"
        if not previous and generation >= 1:
            try:
                _, meta = _load_generation(folder, other)
            except CheckpointError:
                raise exc from None
            where = meta.get("iteration", "?")
            raise CheckpointError(
                f"{exc.message}; the previous checkpoint (iteration {where}) is intact",
                hint="resume from it with --resume-previous",
            ) from None
        raise
