"""A corpus of bad inputs, each through the CLI: exit 2, one line, no traceback, no damage.

Every case is generated here.  For each, ``descentlab`` must print exactly one line on
stderr that names the problem (the words checked below) and usually the fix, exit
with status 2, print no traceback, leave the input files byte-for-byte as they were,
and — when the failure comes before training — create no run directory.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from relhelpers import assert_same_run, tree_digest

from clihelpers import one_line_error, run_cli
from descentlab.data import write_idx

TRAIN = ["train", "--threads", "1", "--quiet"]
QUICK_RUN = ["--dataset", "digits", "--model", "logreg", "--batch-size", "50", "--max-epochs", "2"]
IDX = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


# ------------------------------------------------------------------ data
def idx_folder(root: Path, name: str = "toy", **changes) -> Path:
    """A small MNIST-shaped dataset as four IDX files; ``changes`` replace arrays."""
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (60, 28, 28), dtype=np.uint8),
        "train_labels": (np.arange(60) % 10).astype(np.uint8),
        "test_images": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        "test_labels": (np.arange(20) % 10).astype(np.uint8),
    }
    arrays.update(changes)
    folder = root / name
    folder.mkdir(parents=True)
    for role, array in arrays.items():
        write_idx(folder / IDX[role], array)
    return folder


def replace_file(folder: Path, role: str, data: bytes, *, compress: bool = True) -> Path:
    (folder / IDX[role]).write_bytes(gzip.compress(data) if compress else data)
    return folder


def npz(root: Path, **arrays) -> Path:
    path = root / "data.npz"
    np.savez(path, **arrays)
    return path


def csv_file(root: Path, text: str) -> Path:
    path = root / "data.csv"
    path.write_text(text)
    return path


def _x(n: int = 40, d: int = 4) -> np.ndarray:
    return np.random.default_rng(1).normal(size=(n, d))


def _y(n: int = 40, k: int = 2) -> np.ndarray:
    return np.arange(n) % k


DATA_CASES: dict[str, tuple[Callable[[Path], Path], tuple[str, ...]]] = {
    "missing file": (lambda r: r / "nowhere" / "data.npz", ("does not exist",)),
    "missing IDX files": (
        lambda r: (
            idx_folder(r),
            (r / "toy" / IDX["train_labels"]).unlink(),
            r / "toy",
        )[-1],
        ("train-labels-idx1-ubyte",),
    ),
    "truncated gzip": (
        lambda r: replace_file(
            idx_folder(r),
            "train_images",
            gzip.compress(b"\0\0\x08\x03" + struct.pack(">3I", 60, 28, 28) + bytes(5000))[:900],
            compress=False,
        ),
        ("train-images",),
    ),
    "corrupt gzip": (
        lambda r: replace_file(idx_folder(r), "train_labels", os.urandom(300), compress=False),
        ("gzip",),
    ),
    "wrong IDX magic": (
        lambda r: replace_file(idx_folder(r), "train_labels", b"\x1f\x8b\x08\x01" + bytes(64)),
        ("not an IDX file",),
    ),
    "wrong IDX dtype code": (
        lambda r: replace_file(
            idx_folder(r), "train_labels", b"\0\0\x07\x01" + struct.pack(">I", 60) + bytes(60)
        ),
        ("dtype",),
    ),
    "IDX payload shorter than its header": (
        lambda r: replace_file(
            idx_folder(r), "test_labels", b"\0\0\x08\x01" + struct.pack(">I", 20) + bytes(7)
        ),
        ("truncated",),
    ),
    "image/label count mismatch": (
        lambda r: idx_folder(r, train_labels=(np.arange(50) % 10).astype(np.uint8)),
        ("60", "50"),
    ),
    "IDX label out of range": (
        lambda r: idx_folder(r, "mnist", test_labels=np.full(20, 10, dtype=np.uint8)),
        ("out of range",),
    ),
    "npz label out of range": (
        lambda r: npz(r, x=_x(), y=_y() * 3, class_names=np.array(["a", "b"])),
        ("out of range",),
    ),
    "negative labels": (lambda r: npz(r, x=_x(), y=_y() - 1), ("negative",)),
    "fractional labels": (lambda r: npz(r, x=_x(), y=_y() + 0.5), ("not integers",)),
    "NaN features": (
        lambda r: npz(r, x=np.where(_x() > 1.5, np.nan, _x()), y=_y()),
        ("NaN or infinite",),
    ),
    "Inf features in a CSV": (
        lambda r: csv_file(r, "a,b,label\n" + "1,2,0\n3,4,1\n" * 10 + "inf,1,0\n"),
        ("NaN or infinite",),
    ),
    "features beyond float32 in a CSV": (
        lambda r: csv_file(r, "a,b,label\n" + "1,2,0\n3,4,1\n" * 10 + "1e300,1,0\n"),
        ("too large for float32", "1e+300"),
    ),
    "features beyond float32 in an npz": (
        lambda r: npz(r, x=np.where(_x() > 1.5, -1e39, _x()), y=_y()),
        ("too large for float32",),
    ),
    "empty npz": (lambda r: npz(r, x=np.zeros((0, 4)), y=np.zeros(0)), ("empty",)),
    "CSV with a header only": (lambda r: csv_file(r, "a,b,label\n"), ("no data rows",)),
    "CSV without the label column": (
        lambda r: csv_file(r, "a,b,target\n" + "1,2,0\n3,4,1\n" * 10),
        ("no label column", "label"),
    ),
    "CSV with a text cell": (
        lambda r: csv_file(r, "a,b,label\n" + "1,2,0\n3,four,1\n" * 10),
        ("data.csv",),
    ),
    "npz missing arrays": (lambda r: npz(r, x=_x()), ("no array 'y'",)),
    "npz that is not a zip": (
        lambda r: (r / "data.npz").write_bytes(b"PK\x03\x04garbage") and r / "data.npz",
        ("not a readable .npz",),
    ),
    "one class only": (lambda r: npz(r, x=_x(), y=np.zeros(40)), ("one class",)),
}


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_bad_data(capsys, tmp_path, case):
    build, words = DATA_CASES[case]
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    dataset = build(inputs)
    before = tree_digest(inputs)
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, *TRAIN, "--dataset", str(dataset), "--out", str(out))
    one_line_error(code, err, *words)
    assert tree_digest(inputs) == before
    assert not out.exists()


# --------------------------------------------------------------- options
OPTION_CASES = [
    (["--lr", "0"], ["lr must be > 0"]),
    (["--lr", "-0.5"], ["lr must be > 0"]),
    (["--lr", "nan"], ["lr", "finite"]),
    (["--lr", "fast"], ["--lr", "invalid float"]),
    (["--momentum", "1.0"], ["momentum", "[0, 1)"]),
    (["--momentum", "-0.1"], ["momentum", "[0, 1)"]),
    (["--optimizer", "rmsprop", "--rho", "1"], ["rho", "[0, 1)"]),
    (["--optimizer", "adadelta", "--rho", "-0.2"], ["rho", "[0, 1)"]),
    (["--batch-size", "0"], ["batch_size must be > 0"]),
    (["--batch-size", "-20"], ["batch_size must be > 0"]),
    (["--batch-size", "2.5"], ["--batch-size", "invalid int"]),
    (["--batch-size", "5000"], ["larger than the training set", "1078"]),
    (["--patience", "0"], ["patience"]),
    (["--max-epochs", "0"], ["max_epochs"]),
    (["--dropout", "1"], ["dropout"]),
    (["--betas", "0.9"], ["betas"]),
    (["--learning-rate", "0.1"], ["unrecognized", "did you mean --lr"]),
    (["--momentun", "0.9"], ["unrecognized", "did you mean --momentum"]),
    (["--optimizer", "adamm"], ["adamm", "adam"]),
    (["--model", "mpl"], ["mpl", "mlp"]),
    (["--schedule", "linear:tau=-5"], ["tau"]),
    (["--schedule", "cosine"], ["cosine"]),
    (["--early-stopping", "sometimes"], ["early_stopping", "sometimes"]),
    (["--on-nan", "ignore"], ["on_nan", "ignore"]),
    (["--device", "tpu"], ["device"]),
    (["--preset", "dlt-mpl"], ["preset", "dlt-mlp"]),
    (["--checkpoint-every", "0"], ["checkpoint_every"]),
]


@pytest.mark.parametrize("extra,words", OPTION_CASES, ids=[" ".join(c[0]) for c in OPTION_CASES])
def test_bad_option(capsys, tmp_path, extra, words):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, *TRAIN, "--dataset", "digits", *extra, "--out", str(out))
    one_line_error(code, err, *words)
    assert not out.exists()


CONFIG_CASES = {
    "unknown key, with suggestion": ("momentun = 0.9\n", ["momentun", "did you mean 'momentum'"]),
    "unknown table": ("[optim]\nlr = 0.1\n", ["unexpected table [optim]"]),
    "string for a float": ('lr = "fast"\n', ["lr", "wrong type"]),
    "float for an int": ("batch_size = 12.5\n", ["batch_size", "wrong type"]),
    "bad boolean": ('shuffle = "maybe"\n', ["shuffle", "wrong type"]),
    "list of text for sizes": ('hidden = ["a", "b"]\n', ["hidden", "wrong type"]),
    "nested list": ("hidden = [[1, 2]]\n", ["hidden", "wrong type"]),
    "TOML syntax error": ("lr = = 0.1\n", ["cannot parse config file"]),
    "momentum out of range": ("momentum = 1.5\n", ["momentum", "[0, 1)"]),
    "unknown preset": ('preset = "fast"\n', ["unknown preset 'fast'"]),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_bad_config_file(capsys, tmp_path, case):
    text, words = CONFIG_CASES[case]
    config = tmp_path / "run.toml"
    config.write_text('dataset = "digits"\n' + text)
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, *TRAIN, "--config", str(config), "--out", str(out))
    one_line_error(code, err, *words)
    assert not out.exists()


@pytest.mark.parametrize(
    "text,words",
    [
        ('{"dataset": "digits", "lr": [1, 2]}', ["lr", "wrong type"]),
        ('{"dataset": "digits", "batchsize": 10}', ["batchsize", "batch_size"]),
        ('["not", "a", "table"]', ["must hold a table"]),
        ('{"dataset": "digits", "lr": 1e999}', ["lr", "finite"]),
    ],
)
def test_bad_json_config(capsys, tmp_path, text, words):
    config = tmp_path / "run.json"
    config.write_text(text)
    code, _, err = run_cli(capsys, *TRAIN, "--config", str(config), "--out", str(tmp_path / "r"))
    one_line_error(code, err, *words)


# ----------------------------------------------------------------- files
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A small finished run (digits, logistic regression, 2 epochs)."""
    run = tmp_path_factory.mktemp("finished") / "run"
    code = __import__("descentlab.cli.main", fromlist=["main"]).main(
        [*TRAIN, *QUICK_RUN, "--checkpoint-every", "10", "--out", str(run)]
    )
    assert code == 0
    return run


def copy_run(run: Path, to: Path) -> Path:
    shutil.copytree(run, to)
    return to


def test_run_directory_under_a_file(capsys, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("keep me")
    code, _, err = run_cli(capsys, *TRAIN, *QUICK_RUN, "--out", str(blocker / "run"))
    one_line_error(code, err, "not writable")
    assert blocker.read_text() == "keep me"


@pytest.mark.parametrize("exists", [False, True])
def test_run_directory_not_writable(capsys, tmp_path, monkeypatch, exists):
    """As root chmod does not stop writes, so permission errors are injected."""
    import builtins
    import io

    readonly = tmp_path / "readonly"
    readonly.mkdir()
    out = readonly / "run"
    if exists:
        out.mkdir()
    real_mkdir, real_open = os.mkdir, builtins.open

    def mkdir(path, *args, **kwargs):
        if str(readonly) in str(path):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_mkdir(path, *args, **kwargs)

    def open_(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+") and str(readonly) in str(file):
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(io, "open", open_)
    code, _, err = run_cli(capsys, *TRAIN, *QUICK_RUN, "--out", str(out))
    one_line_error(code, err, "not writable", str(out))
    monkeypatch.undo()
    assert sorted(p.name for p in readonly.rglob("*")) == (["run"] if exists else [])


def test_disk_full_while_checkpointing_then_resume(capsys, tmp_path, monkeypatch):
    """ENOSPC in the middle of training: one line, previous checkpoint intact, resumable."""
    reference, run = tmp_path / "reference", tmp_path / "run"
    args = [*TRAIN, *QUICK_RUN, "--checkpoint-every", "5"]
    assert run_cli(capsys, *args, "--out", str(reference))[0] == 0
    real_fsync, calls = os.fsync, {"n": 0}

    def fills_up(fd):
        calls["n"] += 1
        if calls["n"] > 12:  # a few checkpoints go through, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fills_up)
    code, _, err = run_cli(capsys, *args, "--out", str(run))
    line = one_line_error(code, err, "disk full while writing checkpoint", "is intact")
    assert f"descentlab train --resume {run}" in line
    monkeypatch.undo()
    code, _, err = run_cli(capsys, "train", "--resume", str(run), "--quiet")
    assert code == 0, err
    assert_same_run(reference, run)


def test_resume_from_a_folder_that_is_not_a_run(capsys, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    code, _, err = run_cli(capsys, "train", "--resume", str(tmp_path))
    one_line_error(code, err, "not a descentlab run directory")
    assert (tmp_path / "notes.txt").read_text() == "hello"


def test_resume_a_run_that_has_no_checkpoint(capsys, tmp_path, finished_run):
    run = copy_run(finished_run, tmp_path / "run")
    shutil.rmtree(run / "checkpoint")
    before = tree_digest(run)
    code, _, err = run_cli(capsys, "train", "--resume", str(run), "--quiet")
    one_line_error(code, err, "has no checkpoint", "--config")
    assert tree_digest(run) == before


def test_resume_a_damaged_checkpoint_offers_the_previous_one(capsys, tmp_path, finished_run):
    run = copy_run(finished_run, tmp_path / "run")
    manifest = json.loads((run / "checkpoint" / "manifest.json").read_text())
    newest = run / "checkpoint" / f"{manifest['latest']}.safetensors"
    data = bytearray(newest.read_bytes())
    data[-3] ^= 0xFF
    newest.write_bytes(bytes(data))
    before = tree_digest(run)
    code, _, err = run_cli(capsys, "train", "--resume", str(run), "--quiet")
    one_line_error(code, err, "damaged", f"--resume-previous {run}")
    assert tree_digest(run) == before
    code, _, err = run_cli(capsys, "train", "--resume-previous", str(run), "--quiet")
    assert code == 0, err


@pytest.mark.parametrize(
    "edit,words",
    [
        (("model", '"logreg"', '"mlp"'), ["different model"]),
        (("optimizer", '"sgd"', '"adam"'), ["different optimizer"]),
        (("batch_size", "50", "40"), ["different batches per epoch"]),
    ],
)
def test_resume_from_a_checkpoint_of_another_run(capsys, tmp_path, finished_run, edit, words):
    run = copy_run(finished_run, tmp_path / "run")
    config = run / "config.toml"
    key, old, new = edit
    text = config.read_text()
    assert f"{key} = {old}" in text
    config.write_text(text.replace(f"{key} = {old}", f"{key} = {new}"))
    before = tree_digest(run)
    code, _, err = run_cli(capsys, "train", "--resume", str(run), "--quiet")
    one_line_error(code, err, *words)
    assert tree_digest(run) == before


def test_checkpoint_copied_from_another_model(capsys, tmp_path, finished_run):
    other = tmp_path / "mlp"
    code, _, err = run_cli(
        capsys, *TRAIN, *QUICK_RUN[:2], "--model", "mlp", "--hidden", "8", "--max-epochs", "1",
        "--batch-size", "50", "--out", str(other),
    )  # fmt: skip
    assert code == 0, err
    run = copy_run(finished_run, tmp_path / "run")
    shutil.rmtree(run / "checkpoint")
    shutil.copytree(other / "checkpoint", run / "checkpoint")
    code, _, err = run_cli(capsys, "train", "--resume", str(run), "--quiet")
    one_line_error(code, err, "different model", "mlp", "logreg")


@pytest.mark.parametrize(
    "extra,words",
    [
        (["--lr", "0.5"], ["--lr cannot be given with --resume"]),
        (["--config", "x.toml"], ["--config cannot be given with --resume"]),
        (["--resume-previous", "RUN"], ["--resume and --resume-previous cannot be combined"]),
    ],
)
def test_resume_with_options_it_would_ignore(capsys, tmp_path, finished_run, extra, words):
    extra = [str(finished_run) if e == "RUN" else e for e in extra]
    before = tree_digest(finished_run)
    code, _, err = run_cli(capsys, "train", "--resume", str(finished_run), *extra)
    one_line_error(code, err, *words)
    assert tree_digest(finished_run) == before


def test_out_holding_a_run_or_foreign_files_is_refused(capsys, tmp_path, finished_run):
    before = tree_digest(finished_run)
    code, _, err = run_cli(capsys, *TRAIN, *QUICK_RUN, "--out", str(finished_run))
    one_line_error(code, err, "already holds a run", "--resume")
    assert tree_digest(finished_run) == before
    mine = tmp_path / "project"
    mine.mkdir()
    (mine / "config.toml").write_text("[tool.mine]\nimportant = true\n")
    code, _, err = run_cli(capsys, *TRAIN, *QUICK_RUN, "--out", str(mine))
    one_line_error(code, err, "config.toml", "overwrite")
    assert (mine / "config.toml").read_text() == "[tool.mine]\nimportant = true\n"


@pytest.mark.parametrize(
    "columns,words",
    [(10, ["10 features", "expects 64"]), (0, ["empty"])],
)
def test_predict_with_the_wrong_feature_count(capsys, tmp_path, finished_run, columns, words):
    header = ",".join(f"f{i}" for i in range(max(columns, 1)))
    rows = (
        "".join(",".join("1" for _ in range(columns)) + "\n" for _ in range(3)) if columns else ""
    )
    path = csv_file(tmp_path, header + "\n" + rows)
    code, _, err = run_cli(capsys, "predict", str(finished_run), str(path))
    one_line_error(code, err, *words)


def test_predict_or_evaluate_a_damaged_run(capsys, tmp_path, finished_run):
    run = copy_run(finished_run, tmp_path / "run")
    (run / "model.safetensors").write_bytes(b"\x00" * 16)
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((2, 64)))
    code, _, err = run_cli(capsys, "predict", str(run), str(x))
    one_line_error(code, err, "model.safetensors")
    code, _, err = run_cli(capsys, "evaluate", str(run))
    one_line_error(code, err, "model.safetensors")
    run = copy_run(finished_run, tmp_path / "run2")
    (run / "summary.json").write_text("{broken")
    code, _, err = run_cli(capsys, "evaluate", str(run))
    one_line_error(code, err, "summary.json", "damaged")
