"""Class 6: inputs that used to give silently wrong results are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from clihelpers import one_line_error, run_cli
from descentlab import fit
from descentlab.errors import ConfigError, DataError
from descentlab.train.config import from_mapping
from descentlab.train.options import parse_list

TRAIN = ("train", "--dataset", "digits", "--max-epochs", "1", "--quiet")


@pytest.fixture(scope="module")
def digits_result(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "r"
    fit("logreg", "digits", max_epochs=1, quiet=True, out=str(out))
    from descentlab import load_run

    return load_run(out)


@settings(max_examples=200, deadline=None)
@given(items=st.lists(st.sampled_from(["", " ", "10", "3", "x", "2.5", "-1"]), min_size=1))
def test_list_options_are_strict(items):
    text = ",".join(items)
    stripped = [i.strip() for i in items]
    ok = all(s and s.lstrip("-").isdigit() for s in stripped)
    try:
        value = parse_list("hidden", text, int)
    except ConfigError:
        assert not ok
        return
    assert ok and value == tuple(int(s) for s in stripped)


def test_empty_item_in_hidden(capsys, tmp_path):
    code, _, err = run_cli(capsys, *TRAIN, "--model", "mlp", "--hidden", "10,,10",
                           "--out", str(tmp_path / "r"))  # fmt: skip
    one_line_error(code, err, "hidden")


def test_string_for_a_list_in_toml(capsys, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('model = "mlp"\nhidden = "500"\n')
    code, _, err = run_cli(capsys, *TRAIN, "--config", str(config), "--out", str(tmp_path / "r"))
    one_line_error(code, err, "hidden", "[500]")


def test_label_column_on_a_built_in_dataset(capsys, tmp_path):
    code, _, err = run_cli(capsys, *TRAIN, "--label-column", "y", "--out", str(tmp_path / "r"))
    one_line_error(code, err, "label_column", ".csv")


def test_predict_refuses_values_that_overflow_float32(capsys, tmp_path, digits_result):
    x = tmp_path / "big.npy"
    np.save(x, np.full((2, 64), 1e300))
    code, out, err = run_cli(capsys, "predict", str(digits_result.path), str(x))
    one_line_error(code, err, "float32")
    assert "nan" not in out


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e39])
def test_run_predict_refuses_non_finite_inputs(digits_result, bad):
    x = np.zeros((3, 64))
    x[1, 5] = bad
    with pytest.raises(DataError):
        digits_result.predict(x)
    with pytest.raises(DataError):
        digits_result.predict(torch.from_numpy(x))


def test_run_predict_on_an_empty_array(digits_result):
    with pytest.raises(DataError, match="no inputs"):
        digits_result.predict(np.zeros((0, 64)))


def test_predict_npz_without_x_is_refused(capsys, tmp_path, digits_result):
    f = tmp_path / "two.npz"
    np.savez(f, x_train=np.zeros((2, 64)), x_test=np.ones((2, 64)), images=np.ones((2, 64)))
    code, _, err = run_cli(capsys, "predict", str(digits_result.path), str(f))
    one_line_error(code, err, "'x'")


def test_fit_with_arguments_of_the_wrong_kind():
    with pytest.raises(ConfigError, match="data must be"):
        fit("logreg", 42)
    with pytest.raises(ConfigError, match="model must be"):
        fit(3.5, "digits")


@pytest.mark.parametrize("kind", [np.int8, np.int32, np.int64, np.uint16])
def test_numpy_integers_are_accepted_where_ints_are(kind):
    cfg = from_mapping({"seed": kind(3), "batch_size": kind(20), "max_epochs": kind(1)})
    assert cfg.seed == 3 and type(cfg.seed) is int and cfg.batch_size == 20
    assert from_mapping({"lr": np.float32(0.5)}).lr == 0.5


def test_fit_with_numpy_seed(tmp_path: Path):
    result = fit("logreg", "digits", seed=np.int64(3), max_epochs=1, quiet=True)
    assert result.config.seed == 3
