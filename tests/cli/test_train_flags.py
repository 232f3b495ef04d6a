"""The train flags are generated from TrainConfig's declaration: the old flags, real defaults."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from descentlab.cli import train as cli_train
from descentlab.cli.main import build_parser, main
from descentlab.errors import ConfigError
from descentlab.train.config import OPTIONS, TrainConfig, from_mapping, resolve
from descentlab.train.options import Group, declared_options, option

# Every flag of `add_train_options` before the flags were generated (dumped from the
# hand-written parser of commit 9dc815e): flag, destination, how it parsed its value.
OLD_FLAGS = [
    ("--dataset", "dataset", "str"),
    ("--data-dir", "data_dir", "str"),
    ("--offline", "offline", "switch:True"),
    ("--standardize", "standardize", "switch:True"),
    ("--subset", "subset", "int"),
    ("--label-column", "label_column", "str"),
    ("--model", "model", "str"),
    ("--hidden", "hidden", "ints"),
    ("--activation", "activation", "str"),
    ("--dropout", "dropout", "float"),
    ("--batch-norm", "batch_norm", "switch:True"),
    ("--init", "init", "str"),
    ("--loss", "loss", "str"),
    ("--l1", "l1", "float"),
    ("--l2", "l2", "float"),
    ("--optimizer", "optimizer", "str"),
    ("--lr", "lr", "float"),
    ("--momentum", "momentum", "float"),
    ("--rho", "rho", "float"),
    ("--betas", "betas", "floats"),
    ("--eps", "eps", "float"),
    ("--weight-decay", "weight_decay", "float"),
    ("--schedule", "schedule", "str"),
    ("--clip-norm", "clip_norm", "float"),
    ("--clip-value", "clip_value", "float"),
    ("--polyak-start", "polyak_start", "int"),
    ("--ema", "ema", "float"),
    ("--batch-size", "batch_size", "int"),
    ("--shuffle", "shuffle", "switch:True"),
    ("--no-shuffle", "shuffle", "switch:False"),
    ("--keep-last", "drop_last", "switch:False"),
    ("--max-epochs", "max_epochs", "int"),
    ("--early-stopping", "early_stopping", "str"),
    ("--patience", "patience", "int"),
    ("--patience-increase", "patience_increase", "float"),
    ("--improvement-threshold", "improvement_threshold", "float"),
    ("--validation-frequency", "validation_frequency", "int"),
    ("--min-delta", "min_delta", "float"),
    ("--monitor", "monitor", "str"),
    ("--target-error", "target_error", "float"),
    ("--on-nan", "on_nan", "str"),
    ("--seed", "seed", "int"),
    ("--device", "device", "str"),
    ("--threads", "threads", "int"),
    ("--no-fast-path", "fast_path", "switch:False"),
    ("--checkpoint-every", "checkpoint_every", "int"),
    ("--log-grad-norm", "log_grad_norm", "switch:True"),
    ("--tensorboard", "tensorboard", "switch:True"),
    ("--quiet", "quiet", "switch:True"),
]
# Flags of `descentlab train` itself (where options come from, where the run goes).
OLD_TRAIN_ONLY = ["--preset", "--config", "--out", "--name", "--resume", "--resume-previous"]
SAMPLE = {
    "str": ("x", "x"),
    "int": ("7", 7),
    "float": ("0.5", 0.5),
    "ints": ("500,300", (500, 300)),
    "floats": ("0.9,0.99", (0.9, 0.99)),
}


def _probe() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    cli_train.add_train_options(p)
    return p


def _train_parser() -> argparse.ArgumentParser:
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices["train"]
    raise AssertionError("no sub-commands")


def _actions_by_flag(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in parser._actions for s in a.option_strings}


@pytest.mark.parametrize("flag,dest,kind", OLD_FLAGS, ids=[f for f, _, _ in OLD_FLAGS])
def test_generated_parser_accepts_every_old_flag(flag, dest, kind):
    p = _probe()
    if kind.startswith("switch:"):
        assert vars(p.parse_args([flag])) == {dest: kind == "switch:True"}
    else:
        text, value = SAMPLE[kind]
        assert vars(p.parse_args([flag, text])) == {dest: value}
    assert vars(p.parse_args([])) == {}  # absent flags stay absent (presets keep their values)


def test_train_command_keeps_its_own_flags():
    flags = _actions_by_flag(_train_parser())
    for flag in [f for f, _, _ in OLD_FLAGS] + OLD_TRAIN_ONLY:
        assert flag in flags, flag


def test_every_option_has_a_flag_or_says_why_not():
    flags = _actions_by_flag(_probe())
    dests = {a.dest for a in flags.values()}
    excluded = {o.name for o in OPTIONS if not o.spec.cli}
    assert excluded == {"out", "name", "extra"}
    for opt in OPTIONS:
        if opt.spec.cli:
            assert opt.flag in flags and flags[opt.flag].dest == opt.name, opt.name
        else:
            assert opt.spec.cli_reason and opt.name not in dests, opt.name
    assert {f.name for f in dataclasses.fields(TrainConfig)} == {o.name for o in OPTIONS}


def test_argument_groups_follow_the_option_groups():
    p = _probe()
    titles = {a.dest: g.title for g in p._action_groups for a in g._group_actions}
    for opt in OPTIONS:
        if opt.spec.cli:
            assert titles[opt.name] == opt.spec.group.value, opt.name
    assert [g.title for g in p._action_groups[2:]] == [
        "data",
        "model",
        "cost",
        "optimizer",
        "minibatches and stopping",
        "run",
    ]


def _shown(default: object) -> str:
    return ",".join(map(str, default)) if isinstance(default, tuple) else str(default)


def test_help_shows_the_declared_default():
    flags = _actions_by_flag(_probe())
    for opt in OPTIONS:
        if not opt.spec.cli or opt.is_switch:
            continue
        help_text = flags[opt.flag].help
        if opt.default is None:
            assert help_text.endswith(f"(default: {opt.spec.default_text})"), opt.name
        else:
            assert help_text.endswith(f"(default: {_shown(opt.default)})"), opt.name
    # issue 14: the default lr is the optimizer's own (the tutorial's 0.13 for sgd)
    assert "sgd 0.13" in flags["--lr"].help and "adam 0.001" in flags["--lr"].help
    assert flags["--batch-size"].help.endswith("(default: 600)")
    assert flags["--shuffle"].help.endswith("(default: off)")
    assert flags["--no-shuffle"].help.endswith("(default: on)")
    assert flags["--keep-last"].help.endswith("(default: off)")


def test_help_follows_a_changed_declaration(monkeypatch):
    @dataclasses.dataclass
    class Tiny:
        width: int = option(42, group=Group.MODEL, help="units per layer")
        rate: float | None = option(
            None, group=Group.OPTIMIZER, help="step size", default_text="the optimizer's own"
        )
        wide: bool = option(True, group=Group.MODEL, flag="--narrow", help="halve the units")

    monkeypatch.setattr(cli_train, "OPTIONS", tuple(declared_options(Tiny)))
    flags = _actions_by_flag(_probe())
    assert flags["--width"].help == "units per layer (default: 42)"
    assert flags["--rate"].help == "step size (default: the optimizer's own)"
    assert flags["--narrow"].help == "halve the units (default: off)"
    assert vars(_probe().parse_args(["--narrow", "--width", "3"])) == {"wide": False, "width": 3}


def test_options_from_args_keeps_only_declared_options():
    args = _train_parser().parse_args(["--lr", "0.1", "--out", "r", "--preset", "dlt-mlp"])
    assert cli_train.options_from_args(args) == {"lr": 0.1}


# A value breaking each kind of constraint: (option, command-line text, TOML text).
VIOLATIONS = [
    ("lr", "-0.1", "-0.1"),
    ("batch_size", "0", "0"),
    ("patience", "0", "0"),
    ("momentum", "1.5", "1.5"),
    ("dropout", "1.0", "1.0"),
    ("l2", "-1e-4", "-1e-4"),
    ("improvement_threshold", "1.5", "1.5"),
    ("ema", "1.0", "1.0"),
    ("seed", "-1", "-1"),
    ("threads", "5000", "5000"),
    ("polyak_start", "-1", "-1"),
    ("betas", "0.9,1.0", "[0.9, 1.0]"),
    ("hidden", "500,0", "[500, 0]"),
    ("early_stopping", "tutoral", '"tutoral"'),
    ("monitor", "valid_acc", '"valid_acc"'),
    ("on_nan", "skip", '"skip"'),
    ("device", "gpu", '"gpu"'),
]


@pytest.mark.parametrize("name,cli_text,toml_text", VIOLATIONS, ids=[v[0] for v in VIOLATIONS])
def test_a_violation_reads_the_same_from_cli_toml_and_python(
    name, cli_text, toml_text, tmp_path, capsys
):
    opt = {o.name: o for o in OPTIONS}[name]
    value = cli_train.flag_type(opt)(cli_text) if cli_train.flag_type(opt) else cli_text
    with pytest.raises(ConfigError) as from_python:
        from_mapping({name: value})
    config = tmp_path / "run.toml"
    config.write_text(f"{name} = {toml_text}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as from_toml:
        resolve(config_file=config)
    code = main(["train", f"{opt.flag}={cli_text}", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    message = str(from_python.value)
    assert name in message
    assert str(from_toml.value) == message
    assert code == 2 and err == f"descentlab: error: {message}"
