"""Sweeps: lr selection on validation only, resuming, failures, and a tiny parallel compare."""

from __future__ import annotations

import csv
import json
import math
import shutil

import pytest

from clihelpers import TINY_COMPARE
from descentlab.cli.main import main
from descentlab.errors import ConfigError
from descentlab.experiments.executor import threads_per_job
from descentlab.experiments.plan import SweepPlan
from descentlab.experiments.runs import execute_run
from descentlab.experiments.store import RUN_STATUS, collect_results, run_state
from descentlab.experiments.tuning import select_best
from descentlab.experiments.workflow import run_sweep
from descentlab.train import fit
from descentlab.train.config import from_mapping

TINY = {
    "dataset": "digits",
    "model": "mlp",
    "hidden": [16],
    "batch_size": 64,
    "max_epochs": 2,
    "early_stopping": "none",
    "shuffle": True,
    "threads": 1,  # two threads per process stall badly on a busy two-core machine
}


def _row(opt, lr, valid, test, *, nll=0.5, status="ok", bs=20):
    return {
        "optimizer": opt,
        "lr": lr,
        "batch_size": bs,
        "label": None,
        "best_valid_error": valid,
        "best_valid_nll": nll,
        "test_error": test,
        "status": status,
    }


# ============================================================ choosing on validation
def test_lr_is_chosen_on_validation_never_on_test():
    # For sgd the test set would pick lr=0.1 and for adam lr=0.01; validation says otherwise.
    rows = [
        _row("sgd", 0.01, valid=0.050, test=0.090),
        _row("sgd", 0.1, valid=0.080, test=0.010),
        _row("sgd", 1.0, valid=0.300, test=0.300),
        _row("adam", 0.001, valid=0.030, test=0.060),
        _row("adam", 0.01, valid=0.040, test=0.001),
    ]
    sel = select_best(rows, ["lr"], ["optimizer"])
    chosen = {s["group"]["optimizer"]: s["chosen"]["lr"] for s in sel}
    assert chosen == {"sgd": 0.01, "adam": 0.001}
    assert sel[0]["score"] == pytest.approx(0.05)
    assert sel[0]["at_edge"] is True  # 0.01 is the smallest of three rates tried
    # changing only the test numbers never changes the choice
    shuffled = [{**r, "test_error": 1.0 - r["test_error"]} for r in rows]
    assert select_best(shuffled, ["lr"], ["optimizer"]) == sel


def test_selection_per_batch_size_mean_over_seeds_failures_and_ties():
    rows = [
        # batch 20: lr 0.1 wins on the mean of two seeds (0.06) over lr 0.01 (0.065)
        _row("sgd", 0.01, 0.06, 0.0, bs=20),
        _row("sgd", 0.01, 0.07, 0.0, bs=20),
        _row("sgd", 0.1, 0.05, 0.0, bs=20),
        _row("sgd", 0.1, 0.07, 0.0, bs=20),
        # batch 128: lr 1.0 diverged (failed), 0.1 and 0.3 tie on error, 0.3 has lower NLL
        _row("sgd", 1.0, None, None, status="failed", bs=128),
        _row("sgd", 0.1, 0.10, 0.0, nll=0.40, bs=128),
        _row("sgd", 0.3, 0.10, 0.0, nll=0.35, bs=128),
        # batch 512: everything failed
        _row("sgd", 0.1, math.nan, None, bs=512),
    ]
    sel = {s["group"]["batch_size"]: s for s in select_best(rows, ["lr"], ["batch_size"])}
    assert sel[20]["chosen"] == {"lr": 0.1} and sel[20]["score"] == pytest.approx(0.06)
    assert sel[128]["chosen"] == {"lr": 0.3}
    assert sel[128]["candidates"][0]["failed"] == 1
    assert sel[512]["chosen"] is None
    with pytest.raises(ConfigError, match="both tuned and grouped"):
        select_best(rows, ["lr"], ["lr"])


def test_threads_never_oversubscribe():
    assert threads_per_job(1) >= 1
    assert threads_per_job(10**6) == 1


# =================================================================== resuming
def test_resume_skips_finished_reruns_failed_and_resumes_interrupted(tmp_path):
    plan = SweepPlan.build({"lr": [0.05, 0.2]}, {**TINY, "optimizer": "sgd"}, seeds=1)
    first = run_sweep(plan, tmp_path, jobs=1, progress=False, report=False)
    assert [r["status"] for r in first.rows] == ["ok", "ok"]
    names = [r["name"] for r in first.rows]

    calls = []

    def recording(task):
        calls.append((task.name, task.resume))
        return execute_run(task)

    # 1. the same sweep again: nothing runs
    run_sweep(plan, tmp_path, jobs=1, progress=False, report=False, runner=recording)
    assert calls == []

    # 2. one run was killed after its last checkpoint (no summary): it is resumed from
    #    the checkpoint; the other failed: it starts over
    interrupted, failed = (tmp_path / "runs" / n for n in names)
    options = json.loads((tmp_path / "sweep.json").read_text())["runs"][0]["options"]
    shutil.rmtree(interrupted)
    fit(config=from_mapping({**options, "out": str(interrupted), "quiet": True}))
    (interrupted / "summary.json").unlink()  # as if killed before the end
    assert (interrupted / "checkpoint").is_dir()
    (failed / RUN_STATUS).write_text('{"status": "failed", "error": "boom"}')
    assert run_state(interrupted, options) == "resume"
    assert run_state(failed, options) == "fresh"
    assert run_state(tmp_path / "runs" / "nope", options) == "fresh"
    assert run_state(interrupted, {**options, "lr": 0.5}) == "fresh"  # options differ
    calls.clear()
    again = run_sweep(plan, tmp_path, jobs=1, progress=False, report=False, runner=recording)
    assert sorted(calls) == sorted([(names[0], True), (names[1], False)])
    assert json.loads((interrupted / RUN_STATUS).read_text())["resumed"] is True
    assert [r["best_valid_error"] for r in again.rows] == [
        r["best_valid_error"] for r in first.rows
    ]


def test_a_diverging_run_is_recorded_and_the_sweep_goes_on(tmp_path):
    fixed = {**TINY, "model": "logreg", "optimizer": "sgd"}
    plan = SweepPlan.build({"lr": [0.1, 1e38]}, fixed, seeds=1)
    result = run_sweep(plan, tmp_path, jobs=1, progress=False, report=False)
    ok, bad = result.rows
    assert ok["status"] == "ok" and ok["best_valid_error"] < 0.9
    assert bad["status"] == "failed" and "non-finite" in bad["error"]
    with open(tmp_path / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows] == ["ok", "failed"]
    assert "non-finite" in rows[1]["error"]


# ============================================================ end to end, 2 jobs
def test_compare_end_to_end_two_jobs(tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = [*TINY_COMPARE, "--jobs", "2", "--target-error", "0.5", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "stage 1" in printed and "stage 2" in printed and "report:" in printed
    plan, rows, selection = collect_results(out)
    assert plan.tune == ("lr",) and plan.seeds == [0, 1]
    # stage 1: 2 optimizers x 2 lrs, seed 0; stage 2 adds seed 1 of the chosen lrs
    assert len(rows) == 6 and all(r["status"] == "ok" for r in rows)
    finals = [r for r in rows if "final" in r["stages"]]
    assert len(finals) == 4
    for sel in selection:
        opt = sel["group"]["optimizer"]
        search = [r for r in rows if r["optimizer"] == opt and "search" in r["stages"]]
        best = min(search, key=lambda r: r["best_valid_error"])
        assert sel["chosen"]["lr"] == best["lr"]
        assert {r["lr"] for r in finals if r["optimizer"] == opt} == {best["lr"]}
    with open(out / "results.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 6
    for col in ("optimizer", "lr", "seed", "best_valid_error", "test_error", "epochs_run"):
        assert all(r[col] != "" for r in table), col
    assert all(r["threads"] == "" or int(r["threads"]) >= 1 for r in table)
    assert all(r["valid_target_iteration"] != "" for r in table)  # 50% is reached
    report = (out / "report.md").read_text()
    assert "McNemar" in report and "Wilson" in report
    assert (out / "report.html").read_text().count("data:image/png;base64") >= 4
    assert (out / "figures" / "lr_sensitivity.svg").is_file()
    # the same command again finishes at once, everything skipped
    assert main(argv) == 0
    assert "4 already finished (skipped)" in capsys.readouterr().out
