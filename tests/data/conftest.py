"""Fixtures for the data tests: isolated search locations, tiny IDX datasets, a local server."""

from __future__ import annotations

import functools
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from descentlab.data import sources

SHARED_DATA = os.environ.get("DESCENTLAB_DATA")


@pytest.fixture
def shared_data() -> Path:
    """The project's real MNIST / Fashion-MNIST folder (skips when DESCENTLAB_DATA is unset)."""
    if not SHARED_DATA or not (Path(SHARED_DATA) / "mnist").is_dir():
        pytest.skip("real MNIST not available: set DESCENTLAB_DATA to a folder holding mnist/")
    return Path(SHARED_DATA)


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every search location empty and inside tmp_path; returns the cache folder."""
    cache = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.delenv("DESCENTLAB_DATA", raising=False)
    monkeypatch.setattr(sources, "SYSTEM_DATASETS", tmp_path / "usr-share-datasets")
    return cache / "descentlab"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A static HTTP server on 127.0.0.1 serving a fresh folder: yields (base_url, folder)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
