"""``descentlab bench sweep``: fused and separate runs of one grid agree."""

from __future__ import annotations

import json

import pytest

from descentlab.bench.sweep import format_sweep_bench, sweep_grid
from descentlab.cli.main import main


def test_grid_is_lr_by_momentum_by_seed():
    configs = sweep_grid(model="logreg", lrs=(0.1, 0.2), momenta=(0.0, 0.9), seeds=(1, 2))
    assert len(configs) == 8
    assert {(c.optimizer, c.momentum) for c in configs} == {("sgd", None), ("momentum", 0.9)}


def test_bench_sweep_reports_runs_per_hour_and_no_differences(capsys):
    argv = ["bench", "sweep", "--model", "logreg", "--lrs", "0.1", "--momenta", "0,0.9",
            "--seeds", "1", "--max-epochs", "1", "--threads", "1", "--quiet", "--json"]  # fmt: skip
    assert main(argv) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["runs"] == 2
    assert row["runs_per_hour"]["fused"] > 0 and row["runs_per_hour"]["separate"] > 0
    assert row["max_param_diff"] < 1e-5
    assert row["max_error_diff"] == 0.0
    assert row["best_iteration_mismatches"] == 0
    assert "runs/hour" in format_sweep_bench(row)


def test_a_grid_of_optimizers_fuses_one_group_per_algorithm(capsys):
    configs = sweep_grid(model="logreg", lrs=(0.01, 0.1), seeds=(1,), optimizers=("sgd", "adam"))
    assert [(c.optimizer, c.lr) for c in configs] == [
        ("sgd", 0.01), ("sgd", 0.1), ("adam", 0.01), ("adam", 0.1)
    ]  # fmt: skip
    argv = ["bench", "sweep", "--model", "logreg", "--optimizers", "sgd,adam", "--lrs",
            "0.01,0.1", "--seeds", "1", "--max-epochs", "1", "--threads", "1", "--quiet",
            "--json"]  # fmt: skip
    assert main(argv) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["runs"] == 4 and row["best_iteration_mismatches"] == 0
    assert row["max_error_diff"] == 0.0


def test_zero_repeats_is_refused_by_flag_and_by_the_api(capsys):
    # `bench sweep --repeats 0` ended in an internal error (min() of no timings)
    from clihelpers import one_line_error, run_cli
    from descentlab.bench.sweep import run_sweep_bench
    from descentlab.errors import ConfigError

    code, _, err = run_cli(capsys, "bench", "sweep", "--repeats", "0")
    one_line_error(code, err, "argument --repeats: must be >= 1")
    with pytest.raises(ConfigError, match="repeats must be an integer >= 1"):
        run_sweep_bench([], repeats=0)
