"""Checkpoints without pickle: tensors in safetensors, everything else in JSON.

A checkpoint is the folder ``RUN_DIR/checkpoint/``.  It holds two *generations*
(the newest and the one before it) in two slots, plus a pointer::

    state-0.safetensors   every tensor of the trainer state, flattened (slot 0)
    state-0.json          line 1: header  {generation, SHA-256 of the tensors and of line 2}
                          line 2: body    {meta, state}: the nested state with each tensor
                                          replaced by {"__tensor__": key}
    state-1.*             the same for slot 1 (generation g lives in slot g mod 2)
    manifest.json         the commit point: which generation is the newest, the SHA-256
                          of its two files (for ``sha256sum``-style checks by hand), and
                          what the run is (model, optimizer, iteration)

Nothing in a checkpoint is ever unpickled: safetensors holds raw tensor bytes and a
JSON header, and the rest is JSON, so reading a checkpoint cannot run code.

Atomicity.  A new generation g+1 is written into the slot that does *not* hold the
newest generation g: its tensors and record go to temporary files in the same folder
(flushed and fsync'ed), are renamed into place and the folder is fsync'ed; only then
is the manifest replaced the same way.  Until the manifest's rename, the manifest
still names generation g, whose files were not touched, so a crash (``kill -9``,
power loss) at any point leaves a valid checkpoint: the old one or the new one,
never half of each.

Damage.  A generation is used only if its header parses, names the generation the
manifest expects, and both checksums match; that covers every byte of it.  A damaged
manifest alone loses nothing (the records' headers say which generation is newest).
If the newest generation is damaged and the previous one is intact, the error says
so and ``--resume-previous`` resumes from the previous one; :func:`promote_previous`
then makes it the newest, so the next generation overwrites the damaged slot.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from descentlab import fsio
from descentlab.errors import CheckpointError
from descentlab.limits import check_bytes

MANIFEST = "manifest.json"
FORMAT = "descentlab-checkpoint"
FORMAT_VERSION = 2
SLOTS = ("state-0", "state-1")

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST",
    "CheckpointInfo",
    "atomic_write_bytes",
    "checkpoint_info",
    "flatten_state",
    "load_checkpoint",
    "promote_previous",
    "save_checkpoint",
    "unflatten_state",
]


# ------------------------------------------------------------ nested ↔ flat
def flatten_state(state: Any) -> tuple[Any, dict[str, torch.Tensor]]:
    """Split a nested state into a JSON-able skeleton and a flat dict of tensors.

    Dicts become ``{"__dict__": [[key, value], ...]}`` so that int keys (optimizer
    state is keyed by parameter index) and key order survive; tuples and lists are
    tagged so they come back as what they were; non-finite floats (``best = inf``)
    are tagged because JSON has no spelling for them.
    """
    tensors: dict[str, torch.Tensor] = {}
    storages: set[int] = set()

    def walk(obj: Any, path: str) -> Any:
        if isinstance(obj, torch.Tensor):
            key = path or "root"
            tensor = obj.detach().cpu().contiguous()
            # safetensors refuses two entries sharing memory (tied weights, one tensor
            # referenced twice); such an entry is stored as a copy of its own.
            storage = tensor.untyped_storage().data_ptr()
            if storage in storages and tensor.numel() > 0:
                tensor = tensor.clone()
            storages.add(tensor.untyped_storage().data_ptr())
            tensors[key] = tensor
            return {"__tensor__": key}
        if isinstance(obj, dict):
            if any(not isinstance(k, str | int) or isinstance(k, bool) for k in obj):
                raise TypeError(f"checkpoint keys must be str or int at {path!r}")
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
    """Inverse of :func:`flatten_state` (raises CheckpointError on anything unexpected)."""
    if isinstance(skeleton, dict):
        if len(skeleton) != 1:
            raise CheckpointError("checkpoint record has a malformed entry")
        tag, value = next(iter(skeleton.items()))
        if tag == "__tensor__":
            if value not in tensors:
                raise CheckpointError(f"checkpoint record names a missing tensor {value!r}")
            return tensors[value]
        if tag == "__dict__":
            return {k: unflatten_state(v, tensors) for k, v in value}
        if tag == "__list__":
            return [unflatten_state(v, tensors) for v in value]
        if tag == "__tuple__":
            return tuple(unflatten_state(v, tensors) for v in value)
        if tag == "__float__" and value in ("inf", "-inf", "nan"):
            return float(value)
        raise CheckpointError(f"checkpoint record has an unknown entry {tag!r}")
    return skeleton


# ------------------------------------------------------------------- files
def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable; not every platform/filesystem allows it.
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


def _io_error(path: Path, exc: OSError) -> CheckpointError:
    """One line for the OSErrors a user can cause (full disk, read-only folder, ...)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return CheckpointError(f"disk full while writing {path}", hint="free some space")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return CheckpointError(
            f"cannot write {path}: permission denied", hint="choose a writable --out directory"
        )
    return CheckpointError(f"cannot write {path}: {exc.strerror or exc}")


def _write_temporary(path: Path, data: bytes) -> Path:
    """``data`` in a flushed and fsync'ed temporary file next to ``path``; returns its path."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        # Also on KeyboardInterrupt: never leave a half-written temporary behind.
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    return tmp


def _rename_all(pairs: list[tuple[Path, Path]]) -> None:
    """Rename each temporary over its target, then make the renames durable."""
    try:
        for tmp, path in pairs:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in pairs:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
        raise
    for folder in {path.parent for _, path in pairs}:
        _fsync_dir(folder)


def _write_atomic(path: Path, data: bytes) -> None:
    _rename_all([(_write_temporary(path, data), path)])


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`descentlab.fsio.atomic_write_bytes`)."""
    fsio.atomic_write_bytes(path, data)


def _read_json(data: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _read_bytes(path: Path) -> bytes | None:
    try:
        # A checkpoint file larger than the byte limit (e.g. a sparse file planted in
        # its place) is refused before it is read.
        check_bytes(path.stat().st_size, str(path), error=CheckpointError)
        return path.read_bytes()
    except OSError:
        return None


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    data = _read_bytes(folder / MANIFEST)
    manifest = _read_json(data) if data is not None else None
    if manifest is None or manifest.get("format") != FORMAT:
        return None
    if not isinstance(manifest.get("generation"), int) or manifest.get("latest") not in SLOTS:
        return None
    return manifest


def _remove_stale_temporaries(folder: Path) -> None:
    # Left behind by a process killed in the middle of a write (the pid differs).
    for tmp in folder.glob(".*.tmp-*"):
        with contextlib.suppress(OSError):
            tmp.unlink()


@dataclass
class CheckpointInfo:
    """What a checkpoint folder holds, without loading any tensor."""

    generation: int
    slot: str
    meta: dict[str, Any]


def _header(folder: Path, slot: str) -> dict[str, Any] | None:
    """The header line of a slot's record, or None if unreadable (not verified)."""
    data = _read_bytes(folder / f"{slot}.json")
    if data is None:
        return None
    header = _read_json(data.split(b"\n", 1)[0])
    if header is None or header.get("format") != FORMAT:
        return None
    return header if isinstance(header.get("generation"), int) else None


def save_checkpoint(folder: str | Path, state: dict[str, Any], meta: dict[str, Any]) -> Path:
    """Atomically write ``state`` (nested dicts/lists/tuples of tensors and JSON values).

    Returns the folder.  Raises :class:`CheckpointError` if the files cannot be
    written (disk full, no permission); the previous generation stays valid.
    """
    from safetensors.torch import save

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _io_error(folder, exc) from None
    _remove_stale_temporaries(folder)
    skeleton, tensors = flatten_state(state)

    manifest = _read_manifest(folder)
    if manifest is not None:
        generation = manifest["generation"] + 1
    else:  # no manifest (first save, or lost): continue after the newest readable record
        found = [h["generation"] for s in SLOTS if (h := _header(folder, s)) is not None]
        generation = max(found, default=-1) + 1
    slot = SLOTS[generation % 2]

    tensor_bytes = save(tensors)
    body = json.dumps({"meta": meta, "state": skeleton}).encode("utf-8")
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "generation": generation,
        "sha256": {"tensors": _sha256(tensor_bytes), "body": _sha256(body)},
    }
    record = json.dumps(header).encode("utf-8") + b"\n" + body + b"\n"
    pointer = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "generation": generation,
        "latest": slot,
        "sha256": {
            f"{slot}.safetensors": header["sha256"]["tensors"],
            f"{slot}.json": _sha256(record),
        },
        "meta": meta,
    }
    # Both files of the new generation go into the slot the manifest does not name, and
    # are durable before the manifest moves to them: the manifest's rename is the commit.
    pairs: list[tuple[Path, Path]] = []
    path = folder / f"{slot}.safetensors"
    try:
        pairs.append((_write_temporary(path, tensor_bytes), path))
        path = folder / f"{slot}.json"
        pairs.append((_write_temporary(path, record), path))
        _rename_all(pairs)
        path = folder / MANIFEST
        _write_atomic(path, json.dumps(pointer, indent=1).encode("utf-8"))
    except BaseException as exc:
        for tmp, _ in pairs:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _save_error(path, exc, manifest) from None
        raise
    return folder


def _save_error(path: Path, exc: OSError, manifest: dict[str, Any] | None) -> CheckpointError:
    run = path.parent.parent
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        problem, fix = f"disk full while writing checkpoint {path}", "free some space"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        problem, fix = f"cannot write checkpoint {path}: permission denied", "make it writable"
    else:
        problem, fix = f"cannot write checkpoint {path}: {exc.strerror or exc}", "fix that"
    return CheckpointError(
        f"{problem}; {_previous_state(manifest)}",
        hint=f"{fix}, then continue with: descentlab train --resume {run}",
    )


def _previous_state(manifest: dict[str, Any] | None) -> str:
    if manifest is None:
        return "no checkpoint had been written yet"
    where = manifest.get("meta", {}).get("iteration", "?")
    return f"the previous checkpoint (iteration {where}) is intact"


# ------------------------------------------------------------------ reading
def _load_slot(folder: Path, slot: str) -> tuple[dict[str, Any], dict[str, Any], int]:
    """Read and verify one slot against its record's checksums; ``(state, meta, generation)``.

    Every byte is covered: the header's checksums cover the tensors and the body, and
    a damaged header fails to parse, mismatches, or names the wrong generation.
    """
    from safetensors.torch import load

    tensor_path, record_path = folder / f"{slot}.safetensors", folder / f"{slot}.json"
    tensor_bytes, record = _read_bytes(tensor_path), _read_bytes(record_path)
    if tensor_bytes is None or record is None:
        missing = tensor_path if tensor_bytes is None else record_path
        raise CheckpointError(f"checkpoint file {missing} is missing or unreadable")
    head, _, body = record.partition(b"\n")
    header = _read_json(head)
    if header is None or header.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint record {record_path} is damaged (bad header)")
    if header.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {record_path} has format version {header.get('format_version')!r}, "
            f"this descentlab reads version {FORMAT_VERSION}",
            hint="resume with the descentlab version that wrote it",
        )
    sums = header.get("sha256") or {}
    body = body.rstrip(b"\n")
    if _sha256(tensor_bytes) != sums.get("tensors") or _sha256(body) != sums.get("body"):
        raise CheckpointError(f"checkpoint {folder / slot}.* is damaged (checksum mismatch)")
    parsed = _read_json(body)
    if parsed is None or not isinstance(parsed.get("meta"), dict):
        raise CheckpointError(f"checkpoint record {record_path} is damaged (bad body)")
    try:
        tensors = load(tensor_bytes)
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"cannot read checkpoint {tensor_path}: {exc}") from None
    try:
        state = unflatten_state(parsed["state"], tensors)
    except RecursionError:
        raise CheckpointError(f"checkpoint record {record_path} is nested too deeply") from None
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint record {record_path} is malformed ({exc})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint record {record_path} does not hold a state")
    return state, parsed["meta"], int(header["generation"])


def _newest(folder: Path) -> tuple[str, int]:
    """The slot holding the newest generation, and its generation number."""
    manifest = _read_manifest(folder)
    if manifest is not None:
        return manifest["latest"], manifest["generation"]
    # The manifest is lost or damaged: fall back on the records' own headers.
    headers = [(h["generation"], s) for s in SLOTS if (h := _header(folder, s)) is not None]
    if not headers:
        raise CheckpointError(
            f"no readable checkpoint in {folder}",
            hint="pass a run directory written by 'descentlab train' (or start a new run)",
        )
    generation, slot = max(headers)
    return slot, generation


def load_checkpoint(
    folder: str | Path, *, previous: bool = False
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read and verify the newest checkpoint (or the one before it); returns ``(state, meta)``.

    A damaged newest generation raises :class:`CheckpointError`, naming the
    previous generation when that one is intact.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(
            f"no checkpoint folder {folder}",
            hint="pass a run directory written by 'descentlab train'",
        )
    slot, generation = _newest(folder)
    other = SLOTS[1 - SLOTS.index(slot)]
    run = folder.parent
    if previous:
        try:
            state, meta, prev_generation = _load_slot(folder, other)
        except CheckpointError as exc:
            raise CheckpointError(
                f"no intact previous checkpoint in {folder}: {exc.message}",
                hint=f"resume from the newest one with: descentlab train --resume {run}",
            ) from None
        if prev_generation >= generation:
            raise CheckpointError(
                f"{folder} holds no checkpoint older than the newest one",
                hint=f"resume with: descentlab train --resume {run}",
            )
        return state, meta
    try:
        state, meta, got = _load_slot(folder, slot)
        if got != generation:
            raise CheckpointError(f"checkpoint {folder / slot}.* is damaged (wrong generation)")
    except CheckpointError as exc:
        try:
            _, prev_meta, prev_generation = _load_slot(folder, other)
        except CheckpointError:
            raise exc from None
        if prev_generation >= generation:
            raise exc from None
        where = prev_meta.get("iteration", "?")
        raise CheckpointError(
            f"{exc.message}; the previous checkpoint (iteration {where}) is intact",
            hint=f"resume from it with: descentlab train --resume-previous {run}",
        ) from None
    return state, meta


def checkpoint_info(folder: str | Path) -> CheckpointInfo | None:
    """The newest generation's number, slot and meta, or None if there is no manifest."""
    manifest = _read_manifest(Path(folder))
    if manifest is None:
        return None
    return CheckpointInfo(manifest["generation"], manifest["latest"], manifest.get("meta", {}))


def promote_previous(folder: str | Path) -> None:
    """Make the previous generation the newest (after resuming from it).

    The next :func:`save_checkpoint` then writes into the damaged slot rather than
    over the generation training continued from.
    """
    folder = Path(folder)
    slot, generation = _newest(folder)
    other = SLOTS[1 - SLOTS.index(slot)]
    _, meta, prev_generation = _load_slot(folder, other)
    if prev_generation >= generation:
        raise CheckpointError(f"{folder} holds no checkpoint older than the newest one")
    tensors = _read_bytes(folder / f"{other}.safetensors") or b""
    record = _read_bytes(folder / f"{other}.json") or b""
    pointer = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "generation": prev_generation,
        "latest": other,
        "sha256": {f"{other}.safetensors": _sha256(tensors), f"{other}.json": _sha256(record)},
        "meta": meta,
    }
    atomic_write_bytes(folder / MANIFEST, json.dumps(pointer, indent=1).encode("utf-8"))
