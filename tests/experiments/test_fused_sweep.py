"""Fused sweeps: ``compare`` and ``study`` train groups as one model, with the same results."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from clihelpers import TINY_COMPARE
from descentlab.cli.main import main
from descentlab.experiments.fused_runs import FusedTask, describe_units, plan_units
from descentlab.experiments.plan import SweepPlan, train_options
from descentlab.experiments.runs import RunTask

# Columns that are measured, not computed: they differ between any two runs of a sweep.
TIMING = {"wall_seconds", "train_seconds", "seconds_per_epoch", "seconds_to_best",
          "seconds_to_target", "valid_target_seconds", "resumed"}  # fmt: skip
NLL = {"best_valid_nll", "test_nll"}  # float32 rounding of the batched products

ARGV = [*TINY_COMPARE, "--threads", "1", "--no-report"]


def _table(path):
    with open(path / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_compare_fused_equals_no_fuse(tmp_path, capsys):
    assert main([*ARGV, "--jobs", "1", "--out", str(tmp_path / "fused")]) == 0
    printed = capsys.readouterr().out
    # stage 1: sgd x 2 lrs and adam x 2 lrs form one group (each optimizer updates its
    # own rows); stage 2: the two second seeds, sgd and adam, another
    assert "(4 runs in 1 fused group + 0 separate)" in printed
    assert "(2 runs in 1 fused group + 0 separate)" in printed
    assert main([*ARGV, "--jobs", "1", "--no-fuse", "--out", str(tmp_path / "alone")]) == 0
    assert "fused groups" not in capsys.readouterr().out
    fused, alone = _table(tmp_path / "fused"), _table(tmp_path / "alone")
    assert len(fused) == len(alone) == 6
    for f, a in zip(fused, alone):
        assert {k: v for k, v in f.items() if k not in TIMING | NLL} == {
            k: v for k, v in a.items() if k not in TIMING | NLL
        }
        for key in NLL:
            assert abs(float(f[key]) - float(a[key])) <= 1e-4 * abs(float(a[key]))
    for run in (tmp_path / "alone" / "runs").iterdir():
        twin = tmp_path / "fused" / "runs" / run.name
        names = {p.name for p in run.iterdir()} - {"checkpoint"}
        assert {p.name for p in twin.iterdir()} == names
        status = json.loads((twin / "sweep_run.json").read_text())
        assert status["status"] == "ok" and status["model_test_error"] is not None


def test_two_workers_each_get_a_group_and_a_diverging_member_fails_alone(tmp_path, capsys):
    argv = ["compare", "--dataset", "digits", "--model", "logreg", "--optimizer", "sgd",
            "--lr", "0.05", "0.1", "0.2", "1e38", "--batch-size", "64", "--max-epochs", "2",
            "--early-stopping", "none", "--threads", "1", "--no-report", "--jobs", "2",
            "--out", str(tmp_path / "s")]  # fmt: skip
    assert main(argv) == 1  # one run failed
    assert "(4 runs in 2 fused groups + 0 separate)" in capsys.readouterr().out
    rows = {float(r["lr"]): r for r in _table(tmp_path / "s")}
    assert rows[1e38]["status"] == "failed" and "non-finite" in rows[1e38]["error"]
    assert all(rows[lr]["status"] == "ok" for lr in (0.05, 0.1, 0.2))


def test_runs_the_fused_trainer_cannot_handle_run_separately(tmp_path):
    plan = SweepPlan.build(
        {"lr": [0.05, 0.1], "dropout": [0.0, 0.2]},
        {"dataset": "digits", "model": "mlp", "hidden": [16], "max_epochs": 1},
        seeds=1,
    )
    tasks = [
        RunTask(f"r{i}", str(tmp_path / f"r{i}"), train_options(run))
        for i, run in enumerate(plan.runs())
    ]
    tasks.append(RunTask("resumed", str(tmp_path / "x"), tasks[0].options, resume=True))
    units = plan_units(tasks, workers=1)
    groups = [u for u in units if isinstance(u, FusedTask)]
    assert len(groups) == 1 and all(t.options["dropout"] == 0.0 for t in groups[0].tasks)
    assert describe_units(units) == "5 runs in 1 fused group + 3 separate"


def test_resumed_runs_checkpointed_at_one_point_train_as_a_group_again(tmp_path):
    import torch

    from descentlab.train.checkpoint import save_checkpoint

    plan = SweepPlan.build(
        {"lr": [0.01, 0.03, 0.1, 0.3, 1.0]},
        {"dataset": "digits", "model": "logreg", "max_epochs": 3},
        seeds=1,
    )
    options = [train_options(run) for run in plan.runs()]
    tasks = [
        RunTask(f"r{i}", str(tmp_path / f"r{i}"), o, resume=True) for i, o in enumerate(options)
    ]
    # r4: no readable checkpoint; r5: a manifest whose point is not numbers (crafted)
    points = [(40, 1), (40, 1), (40, 1), (17, 0), None, ([40], "1")]
    tasks.append(RunTask("r5", str(tmp_path / "r5"), options[0], resume=True))
    for task, point in zip(tasks, points):
        folder = tmp_path / task.name / "checkpoint"
        if point is None:
            folder.mkdir(parents=True)
            continue
        meta = {"iteration": point[0], "epoch": point[1]}
        save_checkpoint(folder, {"w": torch.zeros(2)}, meta)
    fresh = RunTask("fresh", str(tmp_path / "fresh"), options[0])
    units = plan_units([*tasks, fresh], workers=1)
    groups = sorted([t.name for t in u.tasks] for u in units if isinstance(u, FusedTask))
    assert groups == [["r0", "r1", "r2"]]  # one point: one group; the others alone
    assert sorted(u.name for u in units if isinstance(u, RunTask)) == ["fresh", "r3", "r4", "r5"]
    assert all(u.resume for u in units if isinstance(u, FusedTask))


def test_units_are_cut_to_a_workers_share_and_run_largest_first(tmp_path):
    plan = SweepPlan.build(
        {"model": ["logreg", "mlp"], "lr": [0.01, 0.03, 0.1, 0.3]},
        {"dataset": "digits", "hidden": [64], "max_epochs": 1},
        seeds=1,
    )
    tasks = [
        RunTask(f"r{i}", str(tmp_path / f"r{i}"), train_options(run))
        for i, run in enumerate(plan.runs())
    ]
    one = plan_units(tasks, workers=1)
    assert [len(u.tasks) for u in one if isinstance(u, FusedTask)] == [4, 4]
    assert one[0].tasks[0].options["model"] == "mlp"  # the most work first
    # two workers: the MLP group (most of the work) is split, one half each
    two = plan_units(tasks, workers=2)
    sizes = [(u.tasks[0].options["model"], len(u.tasks)) for u in two if isinstance(u, FusedTask)]
    assert sizes[:2] == [("mlp", 2), ("mlp", 2)]


def test_a_sweep_interrupted_in_a_fused_group_resumes_to_the_same_results(tmp_path, capsys):
    import os
    import signal
    import subprocess
    import sys
    import time

    argv = ["compare", "--dataset", "digits", "--model", "mlp", "--hidden", "16",
            "--optimizer", "momentum", "--lr", "0.01", "0.03", "--batch-size", "64",
            "--max-epochs", "300", "--early-stopping", "none", "--shuffle", "--seeds", "1",
            "--jobs", "1", "--threads", "1", "--no-report"]  # fmt: skip
    out = tmp_path / "fused"
    proc = subprocess.Popen(
        [sys.executable, "-m", "descentlab", *argv, "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        rows = [p.read_text().count("\n") for p in out.glob("runs/*/metrics.jsonl")]
        if len(rows) == 2 and min(rows) >= 20:  # both members well into training
            break
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGINT)
    printed = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, printed
    assert "2 runs in 1 fused group " in printed
    assert all((d / "checkpoint").is_dir() for d in (out / "runs").iterdir())
    capsys.readouterr()
    assert main([*argv, "--out", str(out)]) == 0  # resumes both, each from its checkpoint
    assert "2 runs in 1 fused group " in capsys.readouterr().out  # together again
    assert main([*argv, "--out", str(tmp_path / "alone"), "--no-fuse"]) == 0
    resumed, alone = _table(out), _table(tmp_path / "alone")
    for run in (out / "runs").iterdir():
        assert json.loads((run / "sweep_run.json").read_text())["resumed"] is True
    for f, a in zip(resumed, alone):
        for key in ("best_valid_error", "test_error", "best_iteration", "iterations"):
            assert f[key] == a[key], key


def test_a_damaged_checkpoint_in_a_resumed_group_starts_that_run_over(tmp_path):
    import os
    import signal

    from descentlab.experiments.fused_runs import execute_fused
    from descentlab.train.callbacks import Callback, MetricsFiles, RunDirectory
    from descentlab.train.config import from_mapping
    from descentlab.train.fused import fit_group

    class Interrupt(Callback):  # Ctrl-C after epoch 1
        def on_epoch_end(self, trainer, epoch):
            if epoch == 1 and trainer.run_dir.name == "r0":
                os.kill(os.getpid(), signal.SIGINT)

    plan = SweepPlan.build(
        {"lr": [0.01, 0.03, 0.1]},
        {"dataset": "digits", "model": "logreg", "max_epochs": 3, "early_stopping": "none"},
        seeds=1,
    )
    tasks = []
    for i, run in enumerate(plan.runs()):  # as a sweep's tasks: options name the folder
        folder = str(tmp_path / f"r{i}")
        options = {**train_options(run), "out": folder, "quiet": True}
        tasks.append(RunTask(f"r{i}", folder, options, resume=True))
    fit_group(
        [from_mapping(t.options) for t in tasks],
        out=[t.run_dir for t in tasks],
        callbacks=lambda d: [MetricsFiles(d), RunDirectory(d, plot=False), Interrupt()],
    )
    for slot in (tmp_path / "r1" / "checkpoint").glob("*.safetensors"):
        slot.write_bytes(slot.read_bytes()[:100])  # truncated
    outcome = execute_fused(FusedTask("g", tasks))
    members = outcome["members"]
    assert [m["status"] for m in members] == ["ok"] * 3, members
    status = [json.loads((Path(t.run_dir) / "sweep_run.json").read_text()) for t in tasks]
    assert [s["resumed"] for s in status] == [True, False, True]
    for task in tasks:
        summary = json.loads((Path(task.run_dir) / "summary.json").read_text())
        assert summary["epochs_run"] == 3
