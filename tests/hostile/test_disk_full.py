"""Class 7: a full disk at any write leaves whole files and a run that can be restarted."""

from __future__ import annotations

import builtins
import errno
import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clihelpers import one_line_error, run_cli
from descentlab import fsio

TRAIN = ("train", "--dataset", "digits", "--max-epochs", "1", "--quiet")


class DiskFull:
    """Every write after the first ``budget`` bytes fails with ENOSPC (a real full disk)."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.real_open, self.real_fdopen = builtins.open, os.fdopen

    def charge(self, n: int) -> None:
        if n > self.budget:
            self.budget = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self.budget -= n

    def open(self, file, mode="r", *args, **kwargs):
        fh = self.real_open(file, mode, *args, **kwargs)
        return _Full(fh, self) if any(c in mode for c in "wax+") else fh

    def fdopen(self, fd, mode="r", *args, **kwargs):
        fh = self.real_fdopen(fd, mode, *args, **kwargs)
        return _Full(fh, self) if any(c in mode for c in "wax+") else fh


class _Full:
    def __init__(self, fh, disk: DiskFull) -> None:
        self._fh, self._disk = fh, disk

    def write(self, data):
        self._disk.charge(len(data))
        return self._fh.write(data)

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()

    def __iter__(self):
        return iter(self._fh)


def _assert_every_file_whole(run: Path) -> None:
    for path in run.rglob("*"):
        if not path.is_file() or path.name.startswith(".") or path.parent.name == "checkpoint":
            continue  # (checkpoint records carry their own checksums: tests/reliability)
        data = path.read_bytes()
        if path.suffix == ".json":
            json.loads(data)
        elif path.suffix == ".jsonl":
            for line in data.decode().splitlines():
                json.loads(line)
        elif path.suffix == ".svg":
            assert data.rstrip().endswith(b"</svg>")
        elif path.suffix == ".png":
            assert data.startswith(b"\x89PNG") and data.rstrip().endswith(b"IEND\xaeB`\x82")


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(budget=st.integers(0, 400_000))
def test_disk_full_at_any_point_then_rerun_in_place(capsys, tmp_path_factory, monkeypatch, budget):
    run = tmp_path_factory.mktemp("full") / "r"
    disk = DiskFull(budget)
    with monkeypatch.context() as m:
        # Every file descentlab writes is opened with open() or os.fdopen().
        m.setattr(builtins, "open", disk.open)
        m.setattr(os, "fdopen", disk.fdopen)
        code, _, err = run_cli(capsys, *TRAIN, "--out", str(run))
    if code != 0:
        one_line_error(code, err, "disk full")
    if run.exists():
        _assert_every_file_whole(run)
        # Whatever was left, running again in place (or resuming) finishes the run.
        code, _, err = run_cli(capsys, *TRAIN, "--out", str(run))
        if code != 0:
            code, _, err = run_cli(capsys, "train", "--resume", str(run), "--quiet")
        assert code == 0, err
        assert (run / "summary.json").is_file()


def test_figure_write_error_names_the_figure(tmp_path, monkeypatch):
    from descentlab.plots import plot_learning_curve

    rows = [
        {"epoch": e, "iteration": e, "train_nll": 1.0 / e, "valid_error": 0.5, "test_error": 0.4,
         "best_valid_error": 0.5, "seconds": e}
        for e in (1, 2)
    ]  # fmt: skip

    def full(path, data):
        raise fsio.io_error(path, OSError(errno.ENOSPC, "No space left on device"))

    monkeypatch.setattr("descentlab.plots.style.atomic_write_bytes", full)
    with pytest.raises(Exception, match=r"learning_curve\.(png|svg)"):
        plot_learning_curve(rows, tmp_path / "learning_curve.png")
    assert not list(tmp_path.iterdir())


def test_a_run_killed_before_its_first_checkpoint_restarts_in_place(capsys, tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    # What such a run leaves: its config and empty metric files, no checkpoint.
    code, _, err = run_cli(capsys, *TRAIN, "--out", str(run))
    assert code == 0, err
    for name in ("summary.json", "model.safetensors", "test_predictions.npy"):
        (run / name).unlink()
    import shutil

    shutil.rmtree(run / "checkpoint")
    (run / "metrics.jsonl").write_text("")
    (run / "metrics.csv").write_text("")
    code, _, err = run_cli(capsys, "train", "--resume", str(run), "--quiet")
    assert code == 0, err
    assert (run / "summary.json").is_file()
    for name in ("summary.json", "model.safetensors", "test_predictions.npy"):
        (run / name).unlink()
    shutil.rmtree(run / "checkpoint")
    code, _, err = run_cli(capsys, *TRAIN, "--out", str(run))
    assert code == 0, err
