"""TrainConfig's option declaration: metadata on every field, validation generated from it."""

from __future__ import annotations

import dataclasses

import pytest

from descentlab.errors import ConfigError
from descentlab.train import config
from descentlab.train.config import (
    OPTIONS,
    PRESETS,
    TrainConfig,
    from_mapping,
    read_config_file,
    register_preset,
)
from descentlab.train.options import Group, Interval, OneOf, declared_options, option
from descentlab.train.presets import PRESET_HELP, preset

# The messages of the hand-written validation this declaration replaced (commit 9dc815e),
# kept word for word: the constraints must say the same thing.
OLD_MESSAGES = [
    ("lr", -0.1, "lr must be > 0, got -0.1 (pass a positive --lr)"),
    ("batch_size", 0, "batch_size must be > 0, got 0 (pass a positive --batch-size)"),
    (
        "eval_batch_size",
        0,
        "eval_batch_size must be > 0, got 0 (pass a positive --eval-batch-size)",
    ),
    ("threads", 0, "threads must be > 0, got 0 (pass a positive --threads)"),
    ("threads", 5000, "threads must be at most 4096, got 5000 (use about the number of CPU cores)"),
    (
        "improvement_threshold",
        0,
        "improvement_threshold must be > 0, got 0.0 (pass a positive --improvement-threshold)",
    ),
    (
        "improvement_threshold",
        1.5,
        "improvement_threshold must be in [0, 1], got 1.5 (fix --improvement-threshold)",
    ),
    ("momentum", 1.0, "momentum must be in [0, 1), got 1.0 (fix --momentum)"),
    ("target_error", 1.5, "target_error must be in [0, 1], got 1.5 (fix --target-error)"),
    ("ema", 1.0, "ema must be in (0, 1), got 1.0 (e.g. --ema 0.999)"),
    ("betas", (0.9,), "betas must be two numbers in [0, 1), got (0.9,) (e.g. --betas 0.9,0.999)"),
    ("l1", -1, "l1 must be >= 0, got -1.0 (fix --l1)"),
    ("weight_decay", -1, "weight_decay must be >= 0, got -1.0 (fix --weight-decay)"),
    ("seed", 2**63, f"seed must be in [0, 2**63), got {2**63} (e.g. --seed 1234)"),
    ("hidden", (), "hidden sizes must be positive integers, got () (e.g. --hidden 500,300)"),
    ("early_stopping", "tutoral", "unknown early_stopping 'tutoral' (did you mean 'tutorial'?)"),
    ("on_nan", "skip", "unknown on_nan 'skip' (did you mean 'skip-batch'?)"),
    ("device", "gpu", "unknown device 'gpu' (use auto, cpu, cuda or cuda:N)"),
    ("lr", "fast", "option 'lr' has the wrong type: 'fast' (expected float)"),
    ("batch_size", 2.5, "option 'batch_size' has the wrong type: 2.5 (expected int)"),
    ("lr", float("nan"), "option 'lr' must be finite, got nan"),
    ("shuffle", "maybe", "option 'shuffle' has the wrong type: 'maybe' (expected bool)"),
]


@pytest.mark.parametrize("name,value,message", OLD_MESSAGES)
def test_constraints_keep_the_old_messages(name, value, message):
    with pytest.raises(ConfigError) as exc:
        from_mapping({name: value})
    assert str(exc.value) == message


def test_every_field_is_declared_with_help_and_group():
    # 54 before issue 11 added pixel_scale, eval_style and log_style;
    # 57 before issue 17 added nproc, backend and dist_timeout; 60 before issue 18's diagnostics
    assert len(OPTIONS) == len(dataclasses.fields(TrainConfig)) == 62
    for opt in OPTIONS:
        assert opt.spec.help and isinstance(opt.spec.group, Group), opt.name
        if opt.default is None:
            assert opt.spec.default_text, f"{opt.name}: say what an unset value means"


def test_declaration_refuses_undeclared_fields_and_silent_exclusions():
    @dataclasses.dataclass
    class Plain:
        x: int = 1

    with pytest.raises(TypeError, match="option"):
        declared_options(Plain)
    with pytest.raises(ValueError, match="cli_reason"):
        option(1, group=Group.RUN, help="h", cli=False)


def test_accepted_edges():
    cfg = from_mapping(
        {
            "momentum": 0.0,
            "improvement_threshold": 1.0,
            "seed": 0,
            "threads": 4096,
            "device": "cuda:1",
            "ema": 0.5,
            "polyak_start": 0,
            "target_error": 0.0,
        }
    )
    assert (cfg.threads, cfg.device, cfg.improvement_threshold) == (4096, "cuda:1", 1.0)


def test_validate_checks_assignments_after_construction():
    cfg = TrainConfig()
    cfg.lr = -1.0
    with pytest.raises(ConfigError, match="lr must be > 0"):
        cfg.validate()


def test_group_accessor():
    cfg = TrainConfig(optimizer="adam", lr=0.001)
    opt = cfg.group(Group.OPTIMIZER)
    assert opt["optimizer"] == "adam" and opt["lr"] == 0.001 and "batch_size" not in opt
    assert set().union(*(cfg.group(g) for g in Group)) == set(cfg.to_dict())


def test_constraint_descriptions():
    assert Interval(low=0, low_open=True).describe() == "> 0"
    assert Interval(low=0, high=1, high_open=True).describe() == "in [0, 1)"
    assert Interval(high=4096).describe() == "at most 4096"
    assert OneOf(("a", "b", "c")).describe() == "a, b or c"
    assert OneOf(("auto", "cpu"), prefix="cuda:").describe() == "auto, cpu or cuda:N"


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_is_a_valid_config_with_help(name):
    cfg = from_mapping(preset(name))
    assert isinstance(cfg, TrainConfig) and PRESET_HELP[name]


def test_presets_live_in_one_table():
    assert set(PRESETS) >= {"dlt-logreg", "dlt-mlp", "dlt-lenet", "fast-mnist"}
    assert config.PRESETS is PRESETS and config.preset is preset
    with pytest.raises(ConfigError, match="did you mean 'dlt-mlp'"):
        preset("dlt-mpl")


def test_register_preset_checks_keys_and_is_read_by_config_files(tmp_path, monkeypatch):
    monkeypatch.setitem(PRESETS, "tmp-preset", {})  # restored afterwards
    with pytest.raises(ConfigError, match="did you mean 'batch_size'"):
        register_preset("tmp-preset", {"batchsize": 3})
    register_preset("tmp-preset", {"batch-size": 3}, help="three")
    monkeypatch.setitem(PRESET_HELP, "tmp-preset", "three")
    path = tmp_path / "c.toml"
    path.write_text('preset = "tmp-preset"\nlr = 0.5\n', encoding="utf-8")
    assert read_config_file(path) == {"batch_size": 3, "lr": 0.5}
