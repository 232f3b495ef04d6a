"""Grid expansion, run identity and names, sweep files."""

from __future__ import annotations

import pytest

from descentlab.errors import ConfigError
from descentlab.experiments.plan import (
    SweepPlan,
    expand_grid,
    normalize_grid,
    read_plan_file,
    run_identity,
    run_key,
    run_name,
    seed_list,
)

FIXED = {"dataset": "digits", "model": "mlp", "max_epochs": 2}


def test_product_times_seeds_in_order():
    runs = expand_grid(
        {"optimizer": ["sgd", "adam"], "lr": [0.01, 0.1], "batch_size": [20, 128]},
        FIXED,
        seeds=3,
    )
    assert len(runs) == 2 * 2 * 2 * 3
    # the last key varies fastest, seeds innermost
    first = [(r["optimizer"], r["lr"], r["batch_size"], r["seed"]) for r in runs[:4]]
    assert first == [
        ("sgd", 0.01, 20, 0),
        ("sgd", 0.01, 20, 1),
        ("sgd", 0.01, 20, 2),
        ("sgd", 0.01, 128, 0),
    ]
    assert all(r["dataset"] == "digits" and r["max_epochs"] == 2 for r in runs)
    assert len({run_key(r) for r in runs}) == len(runs)


def test_union_of_subgrids_drops_duplicates():
    runs = expand_grid(
        [
            {"optimizer": ["sgd"], "lr": [0.01, 0.1]},
            {"optimizer": ["adam", "sgd"], "lr": [0.001, 0.1]},  # (sgd, 0.1) again
        ],
        FIXED,
    )
    pairs = [(r["optimizer"], r["lr"]) for r in runs]
    assert pairs == [("sgd", 0.01), ("sgd", 0.1), ("adam", 0.001), ("adam", 0.1), ("sgd", 0.001)]


def test_label_scalars_and_dash_keys():
    tables = normalize_grid({"label": "L2", "l2": 1e-4, "batch-size": [10]})
    assert tables == [{"label": ["L2"], "l2": [1e-4], "batch_size": [10]}]
    runs = expand_grid(tables, FIXED)
    assert runs[0]["label"] == "L2" and runs[0]["l2"] == 1e-4


def test_seed_base_from_fixed_options():
    assert [r["seed"] for r in expand_grid({}, {**FIXED, "seed": 7}, seeds=3)] == [7, 8, 9]
    assert seed_list([3, 1]) == [3, 1]


@pytest.mark.parametrize(
    ("grid", "fixed", "match"),
    [
        ({"lerning_rate": [0.1]}, {}, "unknown option 'lerning_rate'"),
        ({"seed": [1, 2]}, {}, "cannot be varied"),
        ({"lr": []}, {}, "empty list"),
        ({"lr": [-1.0]}, {}, "lr must be > 0"),
        ({"optimizer": ["adamm"]}, {}, "unknown optimizer"),
        ({"model": ["resnet"]}, {}, "unknown model"),
        ({"schedule": ["cosine:t=1"]}, {}, "schedule"),
        ({}, {"out": "x"}, "cannot be fixed"),
    ],
)
def test_bad_grids_fail_before_anything_runs(grid, fixed, match):
    with pytest.raises(ConfigError, match=match):
        expand_grid(grid, {**FIXED, **fixed})


def test_bad_seeds():
    with pytest.raises(ConfigError, match=">= 1") as info:
        seed_list(0)
    assert "--seed 0" in (info.value.hint or "")  # a user who meant the seed, not the count
    with pytest.raises(ConfigError, match="distinct"):
        seed_list([1, 1])


def test_identity_ignores_where_and_how_a_run_is_carried_out():
    a = {**FIXED, "lr": 0.1, "seed": 0}
    b = {**a, "threads": 4, "quiet": True, "out": "/x", "data_dir": "/d", "device": "cpu"}
    assert run_key(a) == run_key(b)
    assert run_identity(a) == run_identity(b)
    assert run_key(a) != run_key({**a, "lr": 0.2})
    # defaults are filled in: an explicit default is the same run
    assert run_key(a) == run_key({**a, "batch_size": 600})


def test_run_names_are_readable_unique_and_stable():
    keys = ["optimizer", "lr", "batch_size", "hidden", "seed"]
    run = {**FIXED, "optimizer": "adam", "lr": 0.001, "batch_size": 20, "hidden": [100, 50]}
    name = run_name({**run, "seed": 2}, keys)
    assert name.startswith("adam-lr0.001-bs20-h100x50-s2-")
    assert name == run_name({**run, "seed": 2}, keys)
    assert name != run_name({**run, "seed": 3}, keys)
    assert run_name({**run, "schedule": "linear:tau=10,final_ratio=0.01"}, ["schedule"]).startswith(
        "schlinear-tau=10-final_ratio=0.01-"
    )
    assert run_name(run, keys, label="early stopping").startswith("early-stopping-adam")


def test_plan_stage_helpers():
    plan = SweepPlan.build(
        [{"optimizer": ["sgd"], "lr": [0.1, 0.3]}, {"optimizer": ["adam"], "lr": [1e-3]}],
        FIXED,
        seeds=2,
        tune=["lr"],
    )
    assert plan.name_keys == ["optimizer", "lr", "seed"]
    assert plan.config_keys == ["optimizer", "lr"]
    assert len(plan.runs()) == 6 and len(plan.runs(seeds=[0])) == 3
    again = SweepPlan.from_dict(plan.to_dict())
    assert again.to_dict() == plan.to_dict() and again.digest() == plan.digest()
    with pytest.raises(ConfigError, match="not in the grid"):
        SweepPlan.build({"optimizer": ["sgd"]}, FIXED, tune=["lr"])
    with pytest.raises(ConfigError, match="tune on a validation number"):
        SweepPlan.build({"lr": [1, 2]}, FIXED, tune=["lr"], select_metric="test_error")


def test_read_plan_file(tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text(
        """
seeds = 3
select_lr = true
preset = "dlt-mlp"
dataset = "digits"

[train]
max_epochs = 5

[[grid]]
optimizer = ["sgd", "momentum"]
lr = [0.01, 0.1]

[[grid]]
optimizer = ["adam"]
lr = [0.0003, 0.001]
""",
        encoding="utf-8",
    )
    fixed, grid, settings = read_plan_file(path)
    assert settings == {"seeds": 3, "select_lr": True}
    assert fixed["dataset"] == "digits" and fixed["max_epochs"] == 5
    assert fixed["model"] == "mlp" and fixed["l2"] == 1e-4  # from the preset
    assert grid[1] == {"optimizer": ["adam"], "lr": [0.0003, 0.001]}
    assert len(expand_grid(grid, fixed, seeds=settings["seeds"])) == (4 + 2) * 3


def test_read_plan_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        read_plan_file(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[grid\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot parse"):
        read_plan_file(bad)
    odd = tmp_path / "odd.toml"
    odd.write_text("[model]\nname = 'x'\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="unexpected table"):
        read_plan_file(odd)


def _compare_plan(argv):
    from descentlab.cli.experiments import build_compare_plan
    from descentlab.cli.main import build_parser

    args = build_parser().parse_args(["compare", *argv])
    return build_compare_plan(args, args._typed, args._flags)


def test_compare_command_line_makes_grid_axes_and_fixed_options(tmp_path):
    plan, _, quiet = _compare_plan(
        [
            "--dataset", "digits",
            "--optimizer", "sgd,adam",
            "--lr", "0.01", "0.1",
            "--hidden", "100", "200,100",
            "--batch-size", "20",
            "--shuffle",
            "--quiet",
            "--seeds", "2",
            "--select-lr",
        ]
    )  # fmt: skip
    assert quiet is True and "quiet" not in plan.fixed
    assert plan.grid == [
        {"optimizer": ["sgd", "adam"], "lr": [0.01, 0.1], "hidden": [[100], [200, 100]]}
    ]
    assert plan.fixed == {"dataset": "digits", "batch_size": 20, "shuffle": True}
    assert plan.tune == ("lr",) and plan.seeds == [0, 1]
    assert len(plan.runs()) == 2 * 2 * 2 * 2

    sweep = tmp_path / "s.toml"
    sweep.write_text(
        'seeds = [5, 6]\ndataset = "iris"\n[[grid]]\noptimizer = ["sgd"]\nlr = [0.1, 0.3]\n'
        '[[grid]]\noptimizer = ["adam"]\nlr = [0.001]\n',
        encoding="utf-8",
    )
    # the command line overrides the file: one value fixes an option, several make an axis
    plan, _, _ = _compare_plan(["--config", str(sweep), "--lr", "0.05", "--max-epochs", "3,6"])
    assert plan.fixed["lr"] == 0.05 and plan.fixed["dataset"] == "iris"
    assert plan.grid == [
        {"optimizer": ["sgd"], "max_epochs": [3, 6]},
        {"optimizer": ["adam"], "max_epochs": [3, 6]},
    ]
    assert plan.seeds == [5, 6]
    with pytest.raises(ConfigError, match="several learning rates"):
        _compare_plan(["--config", str(sweep), "--lr", "0.05", "--select-lr"])
