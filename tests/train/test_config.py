"""Options: validation, presets, config files, did-you-mean."""

from __future__ import annotations

import pytest

from descentlab.errors import ConfigError
from descentlab.train.config import (
    PRESETS,
    TrainConfig,
    from_mapping,
    read_config_file,
    resolve,
    save_config,
)


def test_defaults_are_the_tutorial_logreg():
    cfg = TrainConfig()
    assert (cfg.dataset, cfg.model, cfg.optimizer) == ("mnist", "logreg", "sgd")
    assert (cfg.lr, cfg.batch_size, cfg.max_epochs) == (0.13, 600, 1000)
    assert (cfg.effective_patience, cfg.patience_increase, cfg.improvement_threshold) == (
        5000,
        2.0,
        0.995,
    )
    assert TrainConfig(early_stopping="epochs").effective_patience == 10
    assert cfg.shuffle is False and cfg.drop_last is True


def test_presets():
    mlp = resolve(preset_name="dlt-mlp")
    assert (mlp.model, mlp.hidden, mlp.lr, mlp.l2, mlp.batch_size, mlp.patience) == (
        "mlp",
        (500,),
        0.01,
        1e-4,
        20,
        10000,
    )
    lenet = resolve(preset_name="dlt-lenet")
    assert (lenet.model, lenet.lr, lenet.batch_size, lenet.max_epochs) == ("lenet", 0.1, 500, 200)
    assert "dlt-logreg" in PRESETS


@pytest.mark.parametrize(
    "key,value,word",
    [
        ("lr", -0.1, "lr"),
        ("lr", 0, "lr"),
        ("batch_size", 0, "batch_size"),
        ("momentum", 1.0, "momentum"),
        ("rho", -0.1, "rho"),
        ("patience", 0, "patience"),
        ("dropout", 1.0, "dropout"),
        ("l2", -1e-4, "l2"),
        ("hidden", (0,), "hidden"),
        ("monitor", "valid_acc", "monitor"),
        ("betas", (0.9, 1.0), "betas"),
        ("lr", "fast", "lr"),
        ("batch_size", 2.5, "batch_size"),
        ("lr", float("nan"), "lr"),
    ],
)
def test_bad_values_name_the_option(key, value, word):
    with pytest.raises(ConfigError, match=word):
        from_mapping({key: value})


def test_unknown_key_suggests_closest():
    with pytest.raises(ConfigError, match="did you mean 'batch_size'"):
        from_mapping({"batchsize": 20})
    with pytest.raises(ConfigError, match="did you mean 'momentum'"):
        from_mapping({"momentun": 0.9})


def test_coercions():
    cfg = from_mapping({"hidden": "500,300", "lr": 1, "betas": [0.9, 0.99], "shuffle": "true"})
    assert cfg.hidden == (500, 300) and cfg.lr == 1.0 and cfg.betas == (0.9, 0.99)
    assert cfg.shuffle is True


def test_toml_round_trip(tmp_path):
    cfg = resolve(preset_name="dlt-mlp", overrides={"seed": 7, "schedule": "linear:tau=100"})
    save_config(cfg, tmp_path / "c.toml")
    again = from_mapping(read_config_file(tmp_path / "c.toml"))
    assert again == cfg


def test_config_file_with_preset_and_train_table(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('preset = "dlt-mlp"\n[train]\nlr = 0.05\nhidden = [100]\n')
    cfg = resolve(config_file=path, overrides={"seed": 3})
    assert (cfg.model, cfg.lr, cfg.hidden, cfg.seed) == ("mlp", 0.05, (100,), 3)


def test_config_file_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("lr = = 3\n")
    with pytest.raises(ConfigError, match="cannot parse"):
        read_config_file(bad)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("learning_rate = 0.1\n")
    with pytest.raises(ConfigError, match="unknown option 'learning_rate'"):
        read_config_file(unknown)
    with pytest.raises(ConfigError, match="does not exist"):
        read_config_file(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="unknown preset"):
        resolve(preset_name="dlt-mpl")
