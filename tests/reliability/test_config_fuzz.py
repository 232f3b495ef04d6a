"""Property tests for the config parser: random TOML/JSON → a TrainConfig or ConfigError.

Whatever a config file holds — random structures, random values of every JSON/TOML
type, random bytes, mutations of a valid file — reading it must either give a
validated :class:`TrainConfig` or raise :class:`ConfigError` (whose message is one
line).  Anything else would surface as an "internal error" in the CLI.
``tests/reliability/fuzz_config.py`` runs the same target for much longer.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math

import pytest
import tomli_w
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from descentlab.errors import ConfigError
from descentlab.train.config import FIELD_NAMES, TrainConfig, from_mapping, resolve, save_config

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Keys: real option names (both spellings), the special ones, and noise.
option_names = st.sampled_from(
    [*FIELD_NAMES, *(n.replace("_", "-") for n in FIELD_NAMES), "preset", "train", "extra"]
)
keys = option_names | st.text(min_size=1, max_size=12)
# Strings that look like numbers, booleans and option values are the interesting ones.
tricky_strings = st.sampled_from(
    [
        *("", "0", "-1", "1e400", "nan", "inf", "-inf", "1_000", "0x10", "true", "yes"),
        *("1,2", "a,b", "sgd", "adam", "mlp", "linear:tau=10", "plateau:factor=2", "cuda:x"),
        *("dlt-mlp", " 5 "),
    ]
)
scalars = (
    st.booleans()
    | st.integers()
    | st.integers(-(2**80), 2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
    | tricky_strings
)


def nested(leaves):
    return st.recursive(
        leaves,
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=3)
        ),
        max_leaves=10,
    )


json_values = nested(scalars | st.none() | st.floats())  # JSON also has null, NaN, ±Infinity
toml_values = nested(scalars | st.datetimes() | st.dates() | st.times())
json_docs = st.dictionaries(keys, json_values, max_size=8)
toml_docs = st.dictionaries(keys, toml_values, max_size=8)


def _read(tmp_path, name: str, data: bytes) -> TrainConfig | None:
    """The fuzz target: the parser's whole contract in one call."""
    path = tmp_path / name
    path.write_bytes(data)
    try:
        return resolve(config_file=path)
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(exc).strip()
        return None


@FUZZ
@given(doc=json_docs)
@example(doc={"lr": float("nan")})
@example(doc={"hidden": [[1]], "betas": [0.9]})
@example(doc={"train": {"lr": "fast"}, "preset": {"x": 1}})
@example(doc={"extra": [1, 2]})
def test_random_json_configs(tmp_path, doc):
    _read(tmp_path, "c.json", json.dumps(doc).encode())


@FUZZ
@given(doc=toml_docs)
@example(doc={"lr": dt.date(2024, 1, 1)})
@example(doc={"train": {"batch_size": 1.5}})
def test_random_toml_configs(tmp_path, doc):
    try:
        text = tomli_w.dumps(doc)
    except (TypeError, ValueError):
        assume(False)  # not representable in TOML
    _read(tmp_path, "c.toml", text.encode())


@FUZZ
@given(data=st.binary(max_size=200), suffix=st.sampled_from([".toml", ".json"]))
@example(data=b"\xff\xfe\x00", suffix=".json")
@example(data=b'{"lr": 1e999}', suffix=".json")
def test_random_bytes(tmp_path, data, suffix):
    _read(tmp_path, "c" + suffix, data)


VALID = (
    'dataset = "digits"\nmodel = "mlp"\nhidden = [32, 16]\noptimizer = "adam"\n'
    "lr = 0.001\nbetas = [0.9, 0.999]\nbatch_size = 20\nshuffle = true\n"
    'schedule = "linear:tau=100"\n[train]\nmax_epochs = 3\n'
)


@FUZZ
@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(VALID)), st.integers(0, 3), st.text(max_size=3)),
        min_size=1,
        max_size=4,
    )
)
def test_mutated_valid_file(tmp_path, edits):
    text = VALID
    for at, cut, insert in edits:
        text = text[:at] + insert + text[at + cut :]
    _read(tmp_path, "c.toml", text.encode("utf-8", "surrogatepass"))


@FUZZ
@given(values=st.dictionaries(option_names, json_values | toml_values, max_size=6))
def test_python_mappings(values):
    """The Python API path (fit(**options) → from_mapping) has the same contract."""
    with contextlib.suppress(ConfigError):
        from_mapping(values)


def _plausible_docs() -> st.SearchStrategy:
    """Configs that mostly validate: every option type, numbers in range, real choices."""
    unit = st.floats(0, 1, exclude_max=True)
    positive_int = st.integers(1, 10_000) | st.sampled_from(["12", 3.0])
    return st.fixed_dictionaries(
        {"lr": st.floats(1e-6, 10) | st.sampled_from(["0.5", 1])},
        optional={
            "dataset": st.sampled_from(["digits", "mnist", "data/x.npz", "ünï côdé.csv"]),
            "model": st.sampled_from(["logreg", "mlp", "lenet"]),
            "hidden": st.lists(st.integers(1, 600), min_size=1, max_size=3) | st.just("10,20"),
            "dropout": unit,
            "batch_norm": st.booleans() | st.sampled_from(["true", "no", "1"]),
            "init": st.none() | st.sampled_from(["glorot", "normal:std=0.1"]),
            "l1": st.floats(0, 1),
            "optimizer": st.sampled_from(["sgd", "momentum", "adam", "torch.AdamW"]),
            "momentum": st.none() | unit,
            "betas": st.tuples(unit, unit).map(list),
            "schedule": st.none() | st.sampled_from(["linear:tau=10", "plateau:factor=0.5"]),
            "polyak_start": st.none() | st.integers(0, 100),
            "batch_size": positive_int,
            "shuffle": st.booleans(),
            "max_epochs": positive_int,
            "early_stopping": st.sampled_from(["tutorial", "epochs", "none"]),
            "patience": positive_int,
            "improvement_threshold": st.floats(0.5, 1),
            "monitor": st.sampled_from(["valid_error", "valid_nll", "valid_f1"]),
            "on_nan": st.sampled_from(["stop", "skip-batch", "lr-backoff"]),
            "seed": st.integers(0, 2**31),
            "checkpoint_every": st.none() | positive_int,
            "name": st.none() | st.text(max_size=10),
            "extra": st.dictionaries(st.text(min_size=1, max_size=5), st.integers(), max_size=2),
        },
    )


@FUZZ
@given(doc=_plausible_docs())
def test_what_validates_survives_a_save_and_reload(tmp_path, doc):
    """A config that reads back differently would make a resumed run a different run."""
    cfg = _read(tmp_path, "c.json", json.dumps(doc).encode())
    assume(cfg is not None)
    save_config(cfg, tmp_path / "saved.toml")
    again = resolve(config_file=tmp_path / "saved.toml")
    assert again.to_dict() == cfg.to_dict()


# ------------------------------------------ formerly known gaps, fixed in config.py
@pytest.mark.parametrize(
    "name,data", [("deep.json", b"[" * 100_000), ("deep.toml", b"a = " + b"[" * 100_000)]
)
def test_deeply_nested_file(tmp_path, name, data):
    _read(tmp_path, name, data)


@pytest.mark.parametrize("option", [{"seed": -5}, {"seed": 2**70}, {"threads": 10**12}])
def test_out_of_range_seed_and_threads_are_config_errors(option):
    with pytest.raises(ConfigError):
        from_mapping({"dataset": "digits", **option})


def test_lr_none_survives_a_save(tmp_path):
    # lr=None means "the optimizer's own default" (issue 14): it is filled in when the
    # config is made, so the saved file holds a number and reads back the same.
    cfg = from_mapping({"optimizer": "adam", "lr": None})
    save_config(cfg, tmp_path / "c.toml")
    assert cfg.lr == 0.001
    assert resolve(config_file=tmp_path / "c.toml").lr == cfg.lr


def test_non_finite_numbers_are_refused():
    for bad in (math.nan, math.inf, "nan", "-inf", "1e999"):
        with pytest.raises(ConfigError, match="finite"):
            from_mapping({"lr": bad})
