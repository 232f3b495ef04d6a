"""Issue 14: what a new user meets in the first hour (one test per point of the issue)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from descentlab.cli.main import main
from descentlab.cli.train import epochs_phrase
from descentlab.data import load_dataset
from descentlab.experiments.executor import Executor
from descentlab.experiments.plan import SweepPlan
from descentlab.experiments.sweep import SweepInterrupted, execute_sweep, preflight
from descentlab.plots import plot_lr_sensitivity
from descentlab.sklearn import DescentClassifier
from descentlab.train import Trainer, fit, load_run
from descentlab.train.build import data_use_warnings, seeds_can_differ
from descentlab.train.callbacks import RunHeader
from descentlab.train.config import TrainConfig

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ------------------------------------------------------------ default learning rates
@pytest.mark.parametrize(
    ("optimizer", "lr"),
    [("sgd", 0.13), ("momentum", 0.013), ("nesterov", 0.013), ("adam", 0.001),
     ("rmsprop", 0.001), ("adagrad", 0.01), ("adadelta", 1.0)],
)  # fmt: skip
def test_each_optimizer_has_its_own_default_lr(optimizer, lr):
    assert TrainConfig(optimizer=optimizer).lr == lr
    assert TrainConfig(optimizer=optimizer, lr=0.5).lr == 0.5


def test_the_first_line_shows_the_optimizer_default_lr(in_tmp, capsys):
    rc = main(["train", "--dataset", "iris", "--optimizer", "adam", "--max-epochs", "1",
               "--batch-size", "16", "--out", "r"])  # fmt: skip
    first = capsys.readouterr().out.splitlines()[0]
    assert rc == 0 and "with adam (lr 0.001, batch 16)" in first and "run directory r" in first


# ----------------------------------------------------- validation before any output
@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--optimizer", "adamm"], "did you mean 'adam'"),
        (["--dataset", "irsi"], "did you mean 'iris'"),
        (["--model", "mpl"], "did you mean 'mlp'"),
        (["--schedule", "lineer"], "did you mean 'linear'"),
        (["--batch-size", "5000"], "larger than the training set"),
        (["--data-dir", "/nonexistent/descentlab"], "does not exist"),
    ],
)
def test_a_bad_option_prints_only_its_error(in_tmp, capsys, flags, message):
    argv = ["train", "--dataset", "iris", "--max-epochs", "1", *flags]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and message in err and "Traceback" not in err
    assert not (in_tmp / "runs").exists()


def test_a_misspelt_flag_suggests_the_flag_its_alias_names(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--lerning-rate", "0.1"])
    assert "did you mean --lr?" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "says", "never"),
    [
        # a flag of other commands: say whose it is, never suggest the flag itself
        (["study", "optimizers", "--threads", "1"],
         "--threads is an option of descentlab train", "did you mean --threads"),
        (["bench", "train", "--no-fuse"],
         "--no-fuse is an option of descentlab compare, descentlab study, not of "
         "'descentlab bench train'", "did you mean"),
        (["study", "optimizers", "--thread", "1"], "--threads is an option of", "--help?"),
        # matched against the flags of the command run, not of every command
        (["train", "--threds", "2"], "did you mean --threads?", "option of"),
        (["bench", "optim", "--treads", "1"], "did you mean --threads?", "option of"),
        (["train", "--scheduler", "x"], "did you mean --schedule?", "Traceback"),
        (["train", "--foo", "1"], "see 'descentlab train --help'", "did you mean"),
    ],
)  # fmt: skip
def test_an_unknown_flag_is_matched_against_the_command_that_was_run(capsys, argv, says, never):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert says in err and never not in err
    assert len(err.strip().splitlines()) == 1


def test_config_of_a_run_reruns_into_a_new_directory(in_tmp, capsys):
    base = ["--dataset", "iris", "--max-epochs", "1", "--batch-size", "16", "--quiet"]
    assert main(["train", *base, "--out", "first"]) == 0
    assert main(["train", "--config", "first/config.toml"]) == 0
    runs = list((in_tmp / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "summary.json").is_file()


# --------------------------------------------------------------- data-aware batches
def test_one_step_epochs_and_dropped_examples_are_warned_about():
    cfg = TrainConfig(dataset="digits")  # batch 600 on 1,078 training examples
    text = " ".join(data_use_warnings(cfg, 1078))
    assert "one minibatch step per epoch" in text and "leaves 478 of 1078" in text
    assert data_use_warnings(cfg.replace(batch_size=32), 1078) == []


def test_the_warning_reaches_the_console(in_tmp, capsys):
    assert main(["train", "--dataset", "digits", "--max-epochs", "1", "--out", "r"]) == 0
    assert "one minibatch step per epoch" in capsys.readouterr().err


# -------------------------------------------------------------------------- seeds
def test_seeds_that_cannot_differ_are_warned_about(mnist_dir):
    fixed = {"dataset": "mnist", "subset": 600, "data_dir": str(mnist_dir), "max_epochs": 1}
    plan = SweepPlan.build({"optimizer": ["sgd"]}, fixed, seeds=3)
    assert any("identical runs" in w for w in preflight(plan))
    assert seeds_can_differ(TrainConfig(shuffle=True))
    assert seeds_can_differ(TrainConfig(model="mlp"))
    assert not seeds_can_differ(TrainConfig())


def test_a_seeded_split_lets_seeds_differ():
    plan = SweepPlan.build({"optimizer": ["sgd"]}, {"dataset": "iris", "batch_size": 16}, seeds=2)
    assert not any("identical runs" in w for w in preflight(plan))


def test_identical_seeds_plot_without_a_negative_error_bar(tmp_path):
    # the float mean of 0.1, 0.1, 0.1 is 0.10000000000000002: above the max
    rows = [{"lr": lr, "valid_error": 0.1, "optimizer": "sgd"} for lr in (0.01, 0.1) for _ in "abc"]
    assert plot_lr_sensitivity(rows, tmp_path / "lr")


# ------------------------------------------------------------- interrupt and resume
class _Interrupted(Executor):
    jobs = threads = 1

    def map(self, tasks, on_done):
        raise KeyboardInterrupt

    def close(self):
        pass


def test_an_interrupted_sweep_says_how_to_resume(in_tmp):
    plan = SweepPlan.build({"optimizer": ["sgd"]}, {"dataset": "iris", "batch_size": 16})
    with pytest.raises(SweepInterrupted) as info:
        execute_sweep(plan, "sw", executor=_Interrupted(), command=["descentlab", "compare"])
    assert info.value.exit_code == 130 and "resume with: descentlab compare" in str(info.value)


def test_a_resumed_run_says_where_it_continues(capsys):
    trainer = Trainer(TrainConfig(dataset="iris", batch_size=16, max_epochs=1))
    trainer.progress.counters.epoch = 4
    RunHeader().on_train_start(trainer)
    assert "resuming from epoch 5" in capsys.readouterr().out


# ------------------------------------------------------------------- 1-based counts
def test_epoch_counts_read_the_same_everywhere():
    one = {"epochs_run": 1, "iterations": 3, "n_train": 90, "batch_size": 30}
    assert epochs_phrase(one) == "1 epoch"
    partial = {"epochs_run": 172, "iterations": 171 * 83 + 63, "n_train": 50000, "batch_size": 600}
    assert epochs_phrase(partial) == "171 epochs and 63 minibatches of epoch 172"


def test_descent_classifier_takes_an_int_verbose(capsys):
    x, y = np.random.default_rng(0).normal(size=(60, 4)), np.arange(60) % 3
    DescentClassifier(verbose=1, max_epochs=2, random_state=0).fit(x, y)
    with pytest.raises(ValueError):
        DescentClassifier(verbose=-1).fit(x, y)


# ------------------------------------------------------------------------- predict
def test_predict_recognises_inputs_already_scaled(tmp_path):
    fit("logreg", "digits", batch_size=32, max_epochs=2, quiet=True, out=str(tmp_path / "r"))
    run = load_run(tmp_path / "r")
    scaled = load_dataset("digits").test.x[:20]  # what load_dataset returns: pixels / 16
    raw = (scaled * 16).round()
    with pytest.warns(UserWarning, match="already scaled"):
        guessed = run.predict(scaled)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(guessed, run.predict(raw))
        assert torch.equal(guessed, run.predict(scaled, scaled=True))


# --------------------------------------------------------------------- help and docs
def test_help_describes_run_dir_split_and_landscape_functions(capsys):
    for argv in (["evaluate", "--help"], ["landscape", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
    text = " ".join(capsys.readouterr().out.split())
    assert "a run directory written by 'descentlab train'" in text
    assert "which split to score" in text and "rosenbrock" in text and "saddle" in text


def test_the_split_table_in_data_md_is_measured():
    table = (ROOT / "docs" / "data.md").read_text(encoding="utf-8")
    for name in ("digits", "iris", "wine", "breast-cancer"):
        row = re.search(rf"^\| `{name}` .*$", table, re.M)
        assert row is not None
        d = load_dataset(name)
        sizes = [f"{len(s.y):,}" for s in (d.train, d.valid, d.test)]
        assert " / ".join(sizes) in row.group(0), name


def test_landscape_md_does_not_promise_a_curve_the_default_plot_lacks():
    text = (ROOT / "docs" / "landscape.md").read_text(encoding="utf-8")
    assert "--optimizers sgd,momentum,nesterov,adam" in text
