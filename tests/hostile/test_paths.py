"""Class 3: one path policy for every file descentlab writes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clihelpers import one_line_error, run_cli
from descentlab.errors import ConfigError
from descentlab.fsio import atomic_write_bytes, check_name, check_out, probe_writable

TRAIN = ("train", "--dataset", "digits", "--max-epochs", "1", "--quiet")


@settings(max_examples=300, deadline=None)
@given(name=st.text(max_size=300))
def test_an_accepted_name_stays_inside_its_folder(name):
    try:
        check_name(name)
    except ConfigError:
        return
    root = Path("/base/runs")
    joined = Path(os.path.normpath(root / name))
    assert joined.parent == root and len(name.encode()) <= 255


@pytest.mark.parametrize("name", ["../../../x", "..", ".", "a/b", "a\\b", "", "x" * 300])
def test_bad_names_are_refused_and_nothing_is_written(capsys, tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, *TRAIN, "--name", name)
    one_line_error(code, err, "name")
    assert list(tmp_path.iterdir()) == []


def test_empty_out_is_refused(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, *TRAIN, "--out", "")
    one_line_error(code, err, "--out", "empty")
    assert list(tmp_path.iterdir()) == []


def test_a_sweep_folder_that_is_a_file_is_refused_in_plain_words(capsys, tmp_path):
    (tmp_path / "taken").write_text("mine")
    code, _, err = run_cli(
        capsys, "compare", "--dataset", "digits", "--model", "logreg", "--lr", "0.1", "0.2",
        "--max-epochs", "1", "--no-report", "--out", str(tmp_path / "taken"),
    )  # fmt: skip
    line = one_line_error(code, err, "exists and is not a folder", "choose a new or existing")
    assert "another the" not in line
    assert (tmp_path / "taken").read_text() == "mine"


@pytest.mark.parametrize(
    "out",
    ["x" * 300, "a/" * 2100 + "b", os.fsdecode(b"bad-\xff-name")],
    ids=["long", "deep", "utf8"],
)
def test_unusable_out_paths_are_one_line_errors(capsys, tmp_path, monkeypatch, out):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, *TRAIN, "--out", out)
    one_line_error(code, err, "--out")


def test_the_writability_probe_never_touches_a_user_file(capsys, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / ".write-test").write_text("my notes")
    code, _, err = run_cli(capsys, *TRAIN, "--out", str(out))
    assert code == 0, err
    assert (out / ".write-test").read_text() == "my notes"
    assert not [p for p in out.iterdir() if p.name.startswith(".descentlab-probe")]
    probe_writable(out)
    assert (out / ".write-test").read_text() == "my notes"


@settings(max_examples=20, deadline=None)
@given(payload=st.binary(max_size=200))
def test_writes_replace_a_planted_symlink_instead_of_following_it(tmp_path_factory, payload):
    folder = tmp_path_factory.mktemp("links")
    victim = folder / "victim.txt"
    victim.write_text("keep me")
    for name in ("metrics.jsonl", "summary.json", "learning_curve.svg"):
        (folder / name).symlink_to(victim)
        atomic_write_bytes(folder / name, payload)
        assert not (folder / name).is_symlink()
        assert (folder / name).read_bytes() == payload
    assert victim.read_text() == "keep me"


def test_check_out_refuses_only_unusable_paths():
    assert check_out("runs/x") == Path("runs/x")
    for bad in ("", "   ", "a\0b"):
        with pytest.raises(ConfigError):
            check_out(bad)
