"""Where dataset files are found, how they are checked, and the checksummed download.

Search order for a named dataset ``NAME`` (``mnist``, ``fashion-mnist``); the first
folder that holds all four IDX files wins:

1. the explicit ``data_dir`` argument: ``data_dir/NAME/`` or ``data_dir`` itself;
2. ``$DESCENTLAB_DATA/NAME/`` (the variable names a folder holding ``mnist/``,
   ``fashion-mnist/``, ...);
3. the user cache, ``$XDG_CACHE_HOME/descentlab/NAME/`` (default ``~/.cache/descentlab``);
4. ``/usr/share/datasets/NAME/`` (Debian's ``dataset-fashion-mnist`` installs there);
5. unless ``offline``: download from the canonical mirrors into the user cache.

In each folder a file may be gzip-compressed (``train-images-idx3-ubyte.gz``) or not
(``train-images-idx3-ubyte``); torchvision's layout (``MNIST/raw/``) is also recognised,
and for MNIST the tutorial's ``mnist.pkl.gz`` is used when the IDX files are absent.
If nothing is found, a single :class:`~descentlab.errors.DataError` lists every place
looked at and how to provide the files.

Downloads are verified against the MD5 of each ``.gz`` as distributed *and* the
SHA-256 of its decompressed content, and are written atomically: into a temporary
file in the destination folder, ``fsync``-ed, checked, then renamed into place, so a
failed or concurrent download never leaves a partial or unverified file under the
final name.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from descentlab.errors import DataError

__all__ = [
    "SPECS",
    "SUMS_FILE",
    "DatasetFiles",
    "FileSpec",
    "FilesetSpec",
    "cache_dir",
    "decompressed_sha256",
    "download",
    "fetch",
    "find_dataset_files",
    "read_sums",
    "search_locations",
    "verify",
]

#: Per-folder checksum list: ``<sha256>  <filename>`` of the decompressed files.
SUMS_FILE = "SHA256SUMS.uncompressed"
SYSTEM_DATASETS = Path("/usr/share/datasets")
ROLES = ("train_images", "train_labels", "test_images", "test_labels")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class FileSpec:
    """One distributed file: its name (without ``.gz``) and checksums."""

    name: str  # e.g. "train-images-idx3-ubyte"
    md5_gz: str  # MD5 of the .gz exactly as the mirrors serve it
    sha256: str  # SHA-256 of the decompressed bytes


@dataclass(frozen=True)
class FilesetSpec:
    """The four IDX files of a dataset, where they live and which folder names it goes by."""

    name: str
    files: dict[str, FileSpec]  # role -> file
    mirrors: tuple[str, ...]  # base URLs, tried in order; file URL = base + name + ".gz"
    folders: tuple[str, ...] = ()  # sub-folders of a data root to look in
    pickle_name: str | None = None  # tutorial-format pickle accepted instead

    def subfolders(self) -> tuple[str, ...]:
        return self.folders or (self.name,)


SPECS: dict[str, FilesetSpec] = {
    "mnist": FilesetSpec(
        name="mnist",
        files={
            "train_images": FileSpec(
                "train-images-idx3-ubyte",
                "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            ),
            "train_labels": FileSpec(
                "train-labels-idx1-ubyte",
                "d53e105ee54ea40749a09fcbcd1e9432",
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            ),
            "test_images": FileSpec(
                "t10k-images-idx3-ubyte",
                "9fb629c4189551a2d022fa330f9573f3",
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            ),
            "test_labels": FileSpec(
                "t10k-labels-idx1-ubyte",
                "ec29112dd5afa0611ce80d1b7f02629c",
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
            ),
        },
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        folders=("mnist", "MNIST/raw"),
        pickle_name="mnist.pkl.gz",
    ),
    "fashion-mnist": FilesetSpec(
        name="fashion-mnist",
        files={
            "train_images": FileSpec(
                "train-images-idx3-ubyte",
                "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            ),
            "train_labels": FileSpec(
                "train-labels-idx1-ubyte",
                "25c81989df183df01b3e8a0aad5dffbe",
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            ),
            "test_images": FileSpec(
                "t10k-images-idx3-ubyte",
                "bef4ecab320f06d8554ea6380940ec79",
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            ),
            "test_labels": FileSpec(
                "t10k-labels-idx1-ubyte",
                "bb300cfdad3c16e7a12a480ee83cd310",
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            ),
        },
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        folders=("fashion-mnist", "fashion_mnist", "FashionMNIST/raw"),
    ),
}


@dataclass
class DatasetFiles:
    """Result of :func:`find_dataset_files`: which files to read and where they came from."""

    name: str
    folder: Path
    files: dict[str, Path]  # role -> path (IDX), or {"pickle": path}
    format: str  # "idx" or "pickle"
    where: str  # which search location matched, e.g. "$DESCENTLAB_DATA"
    downloaded: bool = False
    checksums: dict[str, str] = field(default_factory=dict)  # role -> expected content sha256


def cache_dir() -> Path:
    """The user cache folder: ``$XDG_CACHE_HOME/descentlab``, default ``~/.cache/descentlab``."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "descentlab"


def search_locations(data_dir: str | os.PathLike[str] | None = None) -> list[tuple[str, Path]]:
    """The data roots searched, in order, as ``(label, folder)`` pairs."""
    roots: list[tuple[str, Path]] = []
    if data_dir is not None:
        roots.append(("data_dir", Path(data_dir).expanduser()))
    env = os.environ.get("DESCENTLAB_DATA")
    if env:
        roots.append(("$DESCENTLAB_DATA", Path(env).expanduser()))
    roots.append(("user cache", cache_dir()))
    roots.append(("system datasets", SYSTEM_DATASETS))
    return roots


def _present(folder: Path, name: str) -> Path | None:
    # Uncompressed first: it needs no decompression.
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _look_in(spec: FilesetSpec, folder: Path) -> tuple[DatasetFiles | None, str]:
    """Try one folder; return the files found or a short reason why not."""
    if not folder.is_dir():
        return None, "no such folder"
    found = {role: _present(folder, f.name) for role, f in spec.files.items()}
    if all(found.values()):
        files = {role: p for role, p in found.items() if p is not None}
        sums = {role: f.sha256 for role, f in spec.files.items()}
        return DatasetFiles(spec.name, folder, files, "idx", "", checksums=sums), ""
    if spec.pickle_name and (folder / spec.pickle_name).is_file():
        pkl = {"pickle": folder / spec.pickle_name}
        return DatasetFiles(spec.name, folder, pkl, "pickle", ""), ""
    missing = [spec.files[r].name for r, p in found.items() if p is None]
    if len(missing) == len(spec.files):
        return None, "no dataset files"
    return None, "missing " + ", ".join(missing)


def find_dataset_files(
    name: str | FilesetSpec,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    offline: bool = False,
    quiet: bool = False,
) -> DatasetFiles:
    """Locate (or download) the files of a named dataset, in the documented search order.

    Raises one :class:`~descentlab.errors.DataError` listing every place looked at when
    the files are nowhere and cannot be downloaded.
    """
    spec = SPECS[name] if isinstance(name, str) else name
    looked: list[str] = []
    env_set = bool(os.environ.get("DESCENTLAB_DATA"))
    for label, root in search_locations(data_dir):
        if label == "user cache" and not env_set:
            looked.append("$DESCENTLAB_DATA (not set)")
        folders = [root / sub for sub in spec.subfolders()]
        if label == "data_dir":
            folders.append(root)  # data_dir may point straight at the dataset folder
        reasons = []
        for folder in folders:
            found, why = _look_in(spec, folder)
            if found is not None:
                found.where = label
                return found
            if why != "no such folder":
                reasons.append(f"{label} {folder} ({why})")
        # Alternative folder spellings that do not exist are not worth a mention.
        looked.extend(reasons or [f"{label} {folders[0]} (no such folder)"])

    dest = cache_dir() / spec.name
    if offline:
        looked.append("download (skipped: offline)")
    else:
        try:
            files = fetch(spec, dest, quiet=quiet)
        except DataError as exc:
            looked.append(f"download into {dest} failed: {exc.message}")
        else:
            sums = {role: f.sha256 for role, f in spec.files.items()}
            return DatasetFiles(spec.name, dest, files, "idx", "download", True, sums)
    wanted = ", ".join(f"{f.name}.gz" for f in spec.files.values())
    raise DataError(
        f"{spec.name} files not found; looked in: " + "; ".join(looked),
        hint=f"fix: put {wanted} into <folder>/{spec.name}/ and set DESCENTLAB_DATA=<folder> "
        "(or pass --data-dir), or allow the download (not offline) with network access",
    )


def fetch(spec: FilesetSpec, dest: Path, *, quiet: bool = False) -> dict[str, Path]:
    """Download every file of ``spec`` into ``dest``, trying the mirrors in order.

    Files already in ``dest`` with the right checksum are kept.  Each file must match
    both the distributed ``.gz`` MD5 and the decompressed SHA-256 before it is renamed
    into place.
    """
    created = not dest.exists()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create {dest}: {exc}") from exc
    files: dict[str, Path] = {}
    try:
        for role, f in spec.files.items():
            target = dest / f"{f.name}.gz"
            if target.is_file() and _md5(target) == f.md5_gz:
                files[role] = target
                continue
            errors = []
            for base in spec.mirrors:
                url = urllib.parse.urljoin(base, f"{f.name}.gz")
                try:
                    download(url, target, md5=f.md5_gz, content_sha256=f.sha256, quiet=quiet)
                except DataError as exc:
                    errors.append(exc.message)
                    continue
                files[role] = target
                break
            else:
                raise DataError(f"{f.name}.gz: " + "; ".join(errors))
    finally:
        if created:
            # Leave no empty folder behind when nothing could be fetched.
            with contextlib.suppress(OSError):
                dest.rmdir()
    return files


def download(
    url: str,
    dest: str | os.PathLike[str],
    *,
    md5: str | None = None,
    sha256: str | None = None,
    content_sha256: str | None = None,
    quiet: bool = False,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` (``http``, ``https`` or ``file``) to ``dest`` atomically.

    Checks, when given: ``md5`` and ``sha256`` of the bytes as downloaded, and
    ``content_sha256`` of the gzip-decompressed bytes.  The data goes to a temporary
    file next to ``dest``, is ``fsync``-ed and checked, and only then renamed to
    ``dest``; on any failure the temporary file is removed and ``dest`` is untouched.
    A progress bar is shown on a terminal unless ``quiet``.
    """
    dest = Path(dest)
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https", "file"):
        raise DataError(f"refusing to download {url!r}: only http, https and file URLs are allowed")
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        md5_h, sha_h = hashlib.md5(usedforsecurity=False), hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    total = response.headers.get("Content-Length")
                    _copy_with_progress(
                        response,
                        out,
                        (md5_h, sha_h),
                        total=int(total) if total and total.isdigit() else None,
                        desc=dest.name,
                        quiet=quiet,
                    )
            except urllib.error.HTTPError as exc:
                raise DataError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
            except (urllib.error.URLError, OSError, ValueError) as exc:
                reason = getattr(exc, "reason", exc)
                raise DataError(f"{url}: {reason}") from exc
            out.flush()
            os.fsync(out.fileno())
        for algo, want, h in (("MD5", md5, md5_h), ("SHA-256", sha256, sha_h)):
            if want and h.hexdigest() != want.lower():
                raise DataError(
                    f"{url}: {algo} checksum mismatch (got {h.hexdigest()}, expected {want}); "
                    "the download is damaged or not the expected file"
                )
        if content_sha256:
            got = decompressed_sha256(tmp)
            if got != content_sha256.lower():
                raise DataError(
                    f"{url}: SHA-256 of the decompressed content is {got}, expected "
                    f"{content_sha256}"
                )
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(dest.parent)
    return dest


def _copy_with_progress(
    src: IO[bytes],
    out: IO[bytes],
    hashers: Iterable[Any],
    *,
    total: int | None,
    desc: str,
    quiet: bool,
) -> None:
    from tqdm.auto import tqdm

    disable = quiet or not sys.stderr.isatty()
    with tqdm(total=total, unit="B", unit_scale=True, desc=desc, disable=disable) as bar:
        while chunk := src.read(_CHUNK):
            out.write(chunk)
            for h in hashers:
                h.update(chunk)
            bar.update(len(chunk))


def _fsync_dir(folder: Path) -> None:
    # Make the rename itself durable; not possible on every platform/filesystem.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def decompressed_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's content, decompressing it first if it is gzip'd."""
    path = Path(path)
    h = hashlib.sha256()
    try:
        with open(path, "rb") as probe:
            gz = probe.read(2) == b"\x1f\x8b"
        with gzip.open(path, "rb") if gz else open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot read {path}: {exc}", hint="fix: re-download it") from exc
    return h.hexdigest()


def read_sums(folder: str | os.PathLike[str]) -> dict[str, str]:
    """Parse ``folder/SHA256SUMS.uncompressed`` into ``{filename: sha256}`` ({} if absent)."""
    path = Path(folder) / SUMS_FILE
    if not path.is_file():
        return {}
    sums: dict[str, str] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split(maxsplit=1)
        digest = parts[0].lower()
        if len(parts) != 2 or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise DataError(
                f"{path} line {lineno} is not '<sha256>  <filename>'",
                hint="fix: regenerate it with sha256sum on the decompressed files",
            )
        # sha256sum marks binary mode with a leading '*'.
        sums[parts[1].strip().lstrip("*")] = digest
    return sums


def verify(folder: str | os.PathLike[str]) -> dict[str, str]:
    """Check a folder's files against its ``SHA256SUMS.uncompressed``.

    Returns ``{filename: status}`` where status is ``"ok"``, ``"mismatch"``, ``"missing"``
    (listed but neither ``name`` nor ``name.gz`` exists) or ``"unverified"`` (a data
    file present in the folder but not listed; everything is unverified when the folder
    has no checksum file).  Each file's *decompressed* content is hashed.
    """
    folder = Path(folder)
    sums = read_sums(folder)
    status: dict[str, str] = {}
    for filename, want in sums.items():
        path = _present(folder, filename)
        if path is None:
            status[filename] = "missing"
        else:
            try:
                ok = decompressed_sha256(path) == want
            except DataError:
                ok = False
            status[filename] = "ok" if ok else "mismatch"
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            base = path.name.removesuffix(".gz")
            if path.is_file() and path.name != SUMS_FILE and not path.name.startswith("."):
                status.setdefault(base, "unverified")
    return status
