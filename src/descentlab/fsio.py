"""How descentlab writes files: one path policy, atomic writes, checksums, one writer.

Every file descentlab writes goes through this module:

* **Paths.** A name chosen by the user for a file or folder inside another (``--name``,
  a sweep's run names) is one path component: not empty, not ``.``/``..``, no ``/``,
  ``\\`` or NUL, at most 255 bytes of valid UTF-8 (:func:`check_name`).  A folder given
  on the command line (``--out``) must not be empty and must be valid UTF-8 of at most
  4096 bytes (:func:`check_out`).
* **Atomic writes.** :func:`atomic_write_bytes` / :func:`atomic_writer` write to a
  uniquely named temporary file in the same folder (created with ``O_EXCL``, so it can
  never be someone else's file), flush, fsync, then rename over the target.  A rename
  replaces a symlink rather than writing through it, so a symlink planted where
  descentlab writes is never followed; a full disk leaves the old file (or none).
* **No user file touched.** The writability probe (:func:`probe_writable`) creates
  and removes a temporary file with a unique name; it never opens an existing file.
* **Integrity.** :func:`sha256_bytes` / :func:`sha256_file` for checksums recorded
  when an artifact is written and verified before it is used.
* **One writer.** :class:`WriterLock` is an advisory ``flock`` on a lock file holding
  ``pid@host``; a second writer of the same run or sweep is refused with one line
  naming the holder (or waits).  The kernel drops the lock when its holder dies, so a
  lock is never stale; the pid in the file is only for the message.
* **Orphans.** :func:`die_with_parent` makes a worker process exit when its parent
  dies (``PR_SET_PDEATHSIG`` on Linux, a watchdog thread elsewhere).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import secrets
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from descentlab.errors import CheckpointError, ConfigError

__all__ = [
    "LOCK_FILE",
    "WriterLock",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_writer",
    "check_folder",
    "check_name",
    "check_out",
    "die_with_parent",
    "io_error",
    "make_folder",
    "probe_writable",
    "sha256_bytes",
    "sha256_file",
]

MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4096


def check_name(name: str, what: str = "name") -> str:
    """``name`` if it is a safe single path component, else :class:`ConfigError`."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{what} must not be empty", hint=f"fix: give a {what} like 'mnist-sgd'")
    if name in (".", "..") or any(sep in name for sep in ("/", "\\", "\0")):
        raise ConfigError(
            f"{what} {name!r} is not a plain name (it holds a path separator or is . / ..)",
            hint="fix: use letters, digits, '-', '_' and '.' only; choose the folder with --out",
        )
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(
            f"{what} {name!r} is not valid UTF-8", hint="fix: use a UTF-8 name"
        ) from None
    if len(encoded) > MAX_NAME_BYTES:
        raise ConfigError(
            f"{what} is {len(encoded)} bytes long, more than a file name may be ({MAX_NAME_BYTES})",
            hint="fix: choose a shorter name",
        )
    return name


def check_out(path: str | os.PathLike[str], what: str = "--out") -> Path:
    """A folder or file path given by the user, or :class:`ConfigError` if unusable."""
    text = os.fspath(path)
    if not str(text).strip():
        raise ConfigError(f"{what} must not be empty", hint=f"fix: give {what} a folder path")
    try:
        encoded = str(text).encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(
            f"{what} {text!r} is not valid UTF-8", hint="fix: use a UTF-8 path"
        ) from None
    if len(encoded) > MAX_PATH_BYTES or "\0" in str(text):
        raise ConfigError(
            f"{what} is not a usable path ({len(encoded)} bytes)", hint="fix: use a shorter path"
        )
    for part in Path(text).parts:
        if len(part.encode("utf-8")) > MAX_NAME_BYTES:
            raise ConfigError(
                f"{what} has a component of {len(part.encode('utf-8'))} bytes, more than a "
                f"file name may be ({MAX_NAME_BYTES})",
                hint="fix: use shorter folder names",
            )
    return Path(text)


def check_folder(path: str | os.PathLike[str], what: str = "--out") -> Path:
    """:func:`check_out`, and no file (or other non-folder) where the folder goes."""
    folder = check_out(path, what)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(
            f"{what} {folder} exists and is not a folder",
            # ``what`` is a flag (--out) or a description (the sweep folder)
            hint=f"choose another {what} (a new or existing folder)"
            if what.startswith("--")
            else "choose a new or existing folder",
        )
    return folder


def make_folder(path: str | os.PathLike[str], what: str = "--out") -> Path:
    """Create the output folder ``path`` (and its parents), or one line saying why not."""
    folder = check_folder(path, what)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise io_error(folder, exc) from None
    return folder


def io_error(path: str | os.PathLike[str], exc: OSError) -> CheckpointError:
    """One line for the OSErrors a user can cause (full disk, read-only folder, ...)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return CheckpointError(f"disk full while writing {path}", hint="free some space")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return CheckpointError(
            f"cannot write {path}: permission denied", hint="choose a writable --out directory"
        )
    if exc.errno == errno.ENAMETOOLONG:
        return CheckpointError(f"cannot write {path}: name too long", hint="use a shorter path")
    if exc.errno in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR, errno.ELOOP):
        return CheckpointError(
            f"cannot write {path}: {exc.strerror}",
            hint="a file, folder or symlink is in the way; choose another location",
        )
    return CheckpointError(f"cannot write {path}: {exc.strerror or exc}")


def _fsync_dir(path: Path) -> None:
    # Makes a rename durable; not every platform/filesystem allows it.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    with contextlib.suppress(OSError):
        os.fsync(fd)
    os.close(fd)


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str], mode: str = "wb", **kw: Any) -> Iterator[IO[Any]]:
    """A file object whose content replaces ``path`` atomically when the block ends.

    On any error (a full disk included) the temporary file is removed, ``path`` is left
    as it was, and the OSError becomes a :class:`CheckpointError` naming ``path``.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:200]}.", suffix=".tmp")
    except OSError as exc:
        raise io_error(path, exc) from None
    try:
        with os.fdopen(fd, mode, **kw) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise io_error(path, exc) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never half."""
    with atomic_writer(path, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def probe_writable(folder: Path) -> None:
    """Raise OSError unless a new file can be created in ``folder`` (touches no other file)."""
    # Exclusive creation ("x": O_CREAT | O_EXCL) of a fresh random name: an existing
    # file (or symlink) of that name makes it fail rather than be opened.
    probe = Path(folder) / f".descentlab-probe-{os.getpid()}-{secrets.token_hex(6)}"
    with open(probe, "xb"):
        pass
    probe.unlink()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


LOCK_FILE = ".descentlab.lock"


class WriterLock:
    """An exclusive advisory lock on ``folder`` (file ``.descentlab.lock`` inside it).

    ``acquire`` refuses with :class:`CheckpointError` naming the holder's ``pid@host``
    when another process holds it, or waits up to ``wait`` seconds first.  The lock
    lives as long as the open file: the kernel releases it when the holder exits or
    is killed, so a dead holder never blocks the next writer.
    """

    def __init__(self, folder: str | os.PathLike[str], what: str = "run") -> None:
        self.folder, self.what = Path(folder), what
        self._fd: int | None = None

    def holder(self) -> str:
        try:
            return (self.folder / LOCK_FILE).read_text(encoding="utf-8").strip() or "unknown"
        except (OSError, UnicodeDecodeError):
            return "unknown"

    def acquire(self, wait: float = 0.0) -> WriterLock:
        import fcntl  # POSIX only; imported here so the module still imports elsewhere

        path = self.folder / LOCK_FILE
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(path, flags, 0o644)
        except OSError as exc:
            raise io_error(path, exc) from None
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = self.holder()
                    os.close(fd)
                    raise CheckpointError(
                        f"{self.folder} is in use by another descentlab process ({holder}); "
                        f"one {self.what} has one writer at a time",
                        hint="wait for it to finish (or stop it), then run again",
                    ) from None
                time.sleep(0.2)
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}@{socket.gethostname()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> WriterLock:
        return self.acquire() if self._fd is None else self

    def __exit__(self, *exc: object) -> None:
        self.release()


def die_with_parent(ancestor: int | None = None) -> None:
    """Make this (worker) process exit when its parent dies, even by ``kill -9``.

    ``PR_SET_PDEATHSIG`` covers the direct parent (Linux); a watchdog thread covers
    ``ancestor`` too -- the process that owns the work when workers are forked by an
    intermediate server (multiprocessing's forkserver) -- and platforms without prctl.
    """
    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    watched = [pid for pid in {parent, ancestor} if pid and pid > 1]

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def watch() -> None:
        while os.getppid() == parent and all(alive(pid) for pid in watched):
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="descentlab-parent-watch", daemon=True).start()
