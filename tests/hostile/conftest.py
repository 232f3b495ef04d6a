"""Hostile-input tests (issue 13): limits, integrity, paths, locks, user errors, disk full."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def _fast_fsync(monkeypatch):
    # Durability is tested in tests/reliability; here fsync only costs time.
    monkeypatch.setattr(os, "fsync", lambda fd: None)
