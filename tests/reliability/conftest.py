"""Reliability tests: fsync is a no-op unless a test module sets ``REAL_FSYNC = True``.

Durability is what ``test_checkpoint_files.py`` (every fsync and rename of a save) and
``test_kill_resume.py`` (real processes, real syscalls) test.  Everywhere else a
checkpoint's fsyncs only cost time — several milliseconds each on a virtual disk, which
made those tests I/O-bound — and skipping them changes nothing they check.
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _no_fsync_unless_asked(request, monkeypatch):
    if not getattr(request.module, "REAL_FSYNC", False):
        monkeypatch.setattr(os, "fsync", lambda fd: None)
