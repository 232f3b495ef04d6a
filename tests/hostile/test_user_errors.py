"""Class 5: errors caused by the user's input exit 2 with one line, never 'internal error'."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from clihelpers import one_line_error, run_cli
from descentlab import fit, load_run
from descentlab.data import write_idx
from descentlab.errors import CheckpointError


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "r"
    fit("logreg", "digits", max_epochs=1, quiet=True, out=str(out))
    return out


def test_idx_with_255_dimensions(capsys, tmp_path):
    folder = tmp_path / "mnist-like"
    folder.mkdir()
    for name in ("train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        write_idx(folder / name, np.zeros((2, 28, 28) if "images" in name else 2, np.uint8))
    (folder / "train-images-idx3-ubyte").write_bytes(
        bytes([0, 0, 8, 255]) + struct.pack(">255I", *([1] * 255)) + b"\x00"
    )
    code, _, err = run_cli(capsys, "train", "--dataset", str(folder), "--out", str(tmp_path / "r"))
    one_line_error(code, err, "255 dimensions")


@pytest.mark.parametrize("name", ["torch.SparseAdam", "torch.LBFGS"])
def test_torch_optimizers_that_cannot_step_are_refused_up_front(capsys, tmp_path, name):
    code, _, err = run_cli(
        capsys, "train", "--dataset", "digits", "--optimizer", name, "--max-epochs", "1",
        "--quiet", "--out", str(tmp_path / "r"),
    )  # fmt: skip
    if code == 0:  # an optimizer that can step on dense gradients trains normally
        return
    one_line_error(code, err, name)
    assert not (tmp_path / "r").exists()


def test_evaluate_on_a_dataset_of_another_shape(capsys, digits_run):
    code, _, err = run_cli(capsys, "evaluate", str(digits_run), "--dataset", "iris")
    one_line_error(code, err, "shape")


def test_landscape_out_is_an_existing_file(capsys, tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("mine")
    code, _, err = run_cli(capsys, "landscape", "--out", str(target))
    one_line_error(code, err, "not a folder")
    assert target.read_text() == "mine"


META_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    key=st.sampled_from(["input_shape", "input_scale", "model_spec", "n_classes", "class_names"]),
    value=META_VALUES,
)
def test_model_metadata_of_any_type_is_read_or_refused(tmp_path_factory, digits_run, key, value):
    copy = tmp_path_factory.mktemp("meta") / "r"
    shutil.copytree(digits_run, copy)
    tensors = load_file(copy / "model.safetensors")
    from safetensors import safe_open

    with safe_open(str(copy / "model.safetensors"), framework="pt") as f:
        meta = json.loads(f.metadata()["descentlab"])
    meta[key] = value
    # Written without a checksum, as a file from before checksums were recorded would be.
    save_file(tensors, copy / "model.safetensors", metadata={"descentlab": json.dumps(meta)})
    try:
        run = load_run(copy)
        run.predict(np.zeros((2, 64)))
    except CheckpointError:
        pass
    except Exception as exc:
        from descentlab.errors import DescentlabError

        assert isinstance(exc, DescentlabError), repr(exc)


def test_crafted_huge_hidden_in_model_spec_is_refused(tmp_path, digits_run, monkeypatch):
    copy = tmp_path / "r"
    shutil.copytree(digits_run, copy)
    from safetensors import safe_open

    with safe_open(str(copy / "model.safetensors"), framework="pt") as f:
        meta = json.loads(f.metadata()["descentlab"])
    meta["model_spec"].update(name="mlp", hidden=[20_000_000, 20_000_000])
    save_file(
        load_file(copy / "model.safetensors"),
        copy / "model.safetensors",
        metadata={"descentlab": json.dumps(meta)},
    )
    with pytest.raises(CheckpointError, match="DESCENTLAB_MAX_BYTES"):
        load_run(copy)


@pytest.fixture(scope="module")
def small_sweep(tmp_path_factory) -> Path:
    from descentlab.cli.main import main

    out = tmp_path_factory.mktemp("sweep") / "s"
    code = main(
        ["compare", "--dataset", "digits", "--lr", "0.01", "0.1", "--max-epochs", "1",
         "--jobs", "1", "--out", str(out), "--no-report"]
    )  # fmt: skip
    assert code == 0
    return out


@pytest.mark.parametrize(
    "damage",
    [
        ("summary.json", b"{not json"),
        ("summary.json", b"[1, 2]"),
        ("metrics.jsonl", b'{"epoch": 1}\n{broken'),
        ("test_predictions.npy", b"\x93NUMPY garbage"),
    ],
    ids=["summary-syntax", "summary-type", "metrics", "predictions"],
)
def test_a_report_skips_a_damaged_run_and_says_so(capsys, tmp_path, small_sweep, damage):
    sweep = tmp_path / "s"
    shutil.copytree(small_sweep, sweep)
    victim = sorted((sweep / "runs").iterdir())[0]
    (victim / damage[0]).write_bytes(damage[1])
    code, _, err = run_cli(capsys, "report", str(sweep))
    assert code == 0, err
    report = (sweep / "report.md").read_text()
    assert victim.name in report and "damaged" in report
