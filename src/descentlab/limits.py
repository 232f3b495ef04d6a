"""Resource limits, decided from what an input *declares* before it is read.

A small file can ask for a huge amount of work: a gzip bomb, an IDX header with
enormous dimensions, a pickle whose arrays have zero strides over a one-byte buffer,
a CSV whose one label is 100000000 (a model with 10^8 outputs), ``--hidden
1000000000``, ``--seeds 100000000``.  Every loader and builder asks this module
*before* it allocates or decompresses, and a refusal is one line naming the limit and
the environment variable that raises it (exit code 2):

======================================  ===============================  =============
limit                                   environment variable             default
======================================  ===============================  =============
bytes one input may decode to           ``DESCENTLAB_MAX_BYTES``         half the
(decompressed file, one array, a                                         available
model's parameters)                                                      memory, at
                                                                         most 8 GiB
                                                                         (a quarter
                                                                         of an
                                                                         address-space
                                                                         limit)
classes in a dataset                    ``DESCENTLAB_MAX_CLASSES``       100000
runs in one sweep                       ``DESCENTLAB_MAX_RUNS``          10000
pickle opcodes in a dataset pickle      ``DESCENTLAB_MAX_PICKLE_OPS``    1000000
decoded-array cache (LRU eviction)      ``DESCENTLAB_CACHE_MAX_BYTES``   1 GiB
======================================  ===============================  =============

A value of ``0`` switches a limit off.  The checks are arithmetic on declared sizes,
so a refusal costs no memory and no time.
"""

from __future__ import annotations

import contextlib
import os
import resource
from typing import Any

from descentlab.errors import ConfigError, DataError, DescentlabError

__all__ = [
    "CappedReader",
    "available_memory",
    "check_bytes",
    "check_classes",
    "check_count",
    "limit",
    "max_bytes",
    "read_capped",
]

_GIB = 1 << 30
_DEFAULTS = {
    "DESCENTLAB_MAX_CLASSES": 100_000,
    "DESCENTLAB_MAX_RUNS": 10_000,
    "DESCENTLAB_MAX_PICKLE_OPS": 1_000_000,
    "DESCENTLAB_CACHE_MAX_BYTES": 1 << 30,
}


def available_memory() -> int:
    """Bytes of memory available now (``MemAvailable`` of /proc/meminfo; else physical)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8 * _GIB


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = int(raw) if raw.isdigit() else int(float(raw))  # "4e9" too
    except (ValueError, OverflowError):
        raise ConfigError(
            f"environment variable {name}={raw!r} is not a whole number",
            hint=f"fix: set {name} to a number (0 switches the limit off)",
        ) from None
    if value < 0:
        raise ConfigError(f"environment variable {name} must be >= 0, got {value}")
    return value


def max_bytes() -> int:
    """The byte limit (``DESCENTLAB_MAX_BYTES``; 0 means none)."""
    value = _env_int("DESCENTLAB_MAX_BYTES")
    if value is not None:
        return value
    cap = min(8 * _GIB, available_memory() // 2)
    # Under an address-space limit (ulimit -v, prlimit --as) torch and numpy need room too.
    with contextlib.suppress(ValueError, OSError):
        soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY and soft > 0:
            cap = min(cap, soft // 4)
    return max(64 << 20, cap)


def limit(name: str) -> int:
    """The limit of environment variable ``name`` (0 means none)."""
    if name == "DESCENTLAB_MAX_BYTES":
        return max_bytes()
    value = _env_int(name)
    return _DEFAULTS[name] if value is None else value


def _human(n: int) -> str:
    for unit, size in (("GiB", _GIB), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def check_bytes(nbytes: int, what: str, *, error: type[DescentlabError] = DataError) -> None:
    """Refuse ``what`` if it needs more than :func:`max_bytes` bytes."""
    cap = max_bytes()
    if cap and nbytes > cap:
        raise error(
            f"{what} needs {_human(nbytes)}, more than the limit of {_human(cap)}",
            hint="fix: if that is really intended, raise the limit with "
            "DESCENTLAB_MAX_BYTES=<bytes> (0 = no limit)",
        )


def check_count(
    count: int, name: str, what: str, *, error: type[DescentlabError] = ConfigError
) -> None:
    """Refuse ``count`` above the limit of environment variable ``name``."""
    cap = limit(name)
    if cap and count > cap:
        raise error(
            f"{what}: {count} is more than the limit of {cap}",
            hint=f"fix: if that is really intended, raise it with {name}=<n> (0 = no limit)",
        )


def check_classes(n_classes: int, n_examples: int, where: str) -> None:
    """Refuse a class count that no dataset of ``n_examples`` examples can justify.

    The largest label decides the number of outputs of the model; a stray label of
    10^8 would build a 10^8-way classifier.  More classes than ``max(1000, 100 *
    examples)`` or than ``DESCENTLAB_MAX_CLASSES`` is refused.
    """
    check_count(n_classes, "DESCENTLAB_MAX_CLASSES", f"{where}: number of classes", error=DataError)
    if n_classes > max(1000, 100 * n_examples):
        raise DataError(
            f"{where}: the largest label makes {n_classes} classes for only {n_examples} "
            "examples; labels must be class indices 0..n_classes-1",
            hint="fix: map the labels to 0, 1, ..., n_classes-1",
        )


class CappedReader:
    """A binary stream that raises :class:`DataError` once more than ``cap`` bytes came out.

    Wraps a decompressing stream (gzip, a zip member) so that a bomb is stopped after
    ``cap`` bytes instead of filling memory or disk.
    """

    def __init__(self, stream: Any, cap: int, source: str) -> None:
        self._stream, self._cap, self._source, self.count = stream, cap, source, 0

    def _account(self, n: int) -> None:
        self.count += n
        if self._cap and self.count > self._cap:
            raise DataError(
                f"decompressing {self._source} gives more than the limit of {_human(self._cap)}",
                hint="fix: if that is really intended, raise the limit with "
                "DESCENTLAB_MAX_BYTES=<bytes> (0 = no limit)",
            )

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            chunks = []
            while chunk := self.read(1 << 22):
                chunks.append(chunk)
            return b"".join(chunks)
        data = self._stream.read(n)
        self._account(len(data))
        return bytes(data)

    def readinto(self, buffer: Any) -> int:
        n = self._stream.readinto(buffer)
        self._account(n or 0)
        return n or 0

    def readline(self, size: int = -1) -> bytes:
        data = self._stream.readline(size)
        self._account(len(data))
        return bytes(data)


def read_capped(stream: Any, source: str) -> bytes:
    """All bytes of ``stream``, refusing more than :func:`max_bytes`."""
    return CappedReader(stream, max_bytes(), source).read()
