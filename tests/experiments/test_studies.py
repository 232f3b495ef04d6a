"""Built-in studies: their plans, their analyses, and tiny real runs of their reports."""

from __future__ import annotations

import json

import pytest

from descentlab.cli.main import main
from descentlab.errors import ConfigError
from descentlab.experiments.report import ReportContext
from descentlab.experiments.studies import (
    KNOWN_GOOD_LR,
    STUDIES,
    StudySettings,
    batch_size,
    batch_size_analysis,
    epoch_ranges,
    get_study,
    lr_grid,
    surrogate_disagreements,
)
from descentlab.experiments.workflow import run_sweep

SMALL = StudySettings(fast=True, datasets=["iris", "wine", "digits"])


def test_lr_grid_is_the_1_3_10_grid():
    assert lr_grid(0.03, 1) == [0.01, 0.03, 0.1]
    assert lr_grid(1e-3, 1, 2) == [3e-4, 1e-3, 3e-3, 1e-2]
    assert lr_grid(0.05, 0) == [0.03]  # snaps to the nearest grid point
    with pytest.raises(ConfigError):
        lr_grid(0.0, 1)


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("name", sorted(STUDIES))
def test_every_study_has_a_valid_plan(name, fast):
    settings = StudySettings(fast=fast, datasets=["iris", "wine"] if name == "batch-size" else None)
    plan = get_study(name).plan(settings)
    assert plan.study == name
    runs = plan.runs()  # validated option by option
    assert runs
    assert len(plan.seeds) >= 3 or name == "batch-size"


def test_optimizers_plan_tunes_lr_around_known_good_values():
    plan = get_study("optimizers").plan(StudySettings(fast=True))
    assert plan.tune == ("lr",) and len(plan.seeds) >= 3
    assert plan.fixed["dataset"] == "mnist" and plan.fixed["subset"] == 10000
    by_opt = {t["optimizer"][0]: t for t in plan.grid}
    assert set(by_opt) == set(KNOWN_GOOD_LR)
    for name, table in by_opt.items():
        assert KNOWN_GOOD_LR[name] in table["lr"]
        assert table["model"] == ["mlp", "logreg"]


def test_batch_size_plan_has_full_batch_and_drops_too_large_batches():
    plan = get_study("batch-size").plan(SMALL)
    sizes: dict[str, set[int]] = {}
    for table in plan.grid:
        sizes.setdefault(table["dataset"][0], set()).update(table["batch_size"])
    assert sizes["iris"] == {1, 4, 16, 64, 90}  # 90 = the whole training set
    assert sizes["wine"] == {1, 4, 16, 64, 106}
    assert sizes["digits"] == {1, 4, 16, 64, 256, 1078}
    assert plan.fixed["early_stopping"] == "none"  # equal epochs for every batch size
    with pytest.raises(ConfigError, match="no dataset 'iriss'"):
        get_study("batch-size").plan(StudySettings(datasets=["iriss"]))
    with pytest.raises(ConfigError, match="unknown study"):
        get_study("optimiser")


def test_regularization_tunes_strength_on_the_returned_models_validation_error():
    plan = get_study("regularization").plan(StudySettings())
    assert plan.select_metric == "model_valid_error"
    assert set(plan.tune) == {"l1", "l2", "dropout"}
    labels = [t["label"][0] for t in plan.grid]
    assert labels == ["none", "L1", "L2", "dropout", "early stopping"]


def test_surrogate_disagreements_and_epoch_ranges():
    epochs = [1, 2, 3, 4, 5, 6, 7]
    nll = [1.0, 0.8, 0.7, 0.65, 0.66, 0.70, 0.72]
    err = [0.30, 0.20, 0.20, 0.21, 0.18, 0.19, 0.17]
    marks = surrogate_disagreements(epochs, nll, err)
    assert marks == {"surrogate_only": [3, 4], "metric_only": [5, 7]}
    assert epoch_ranges([9, 3, 4, 5, 11, 12]) == "3–5, 9, 11–12"
    assert epoch_ranges([]) == ""


def _fake_ctx(tmp_path, curves):
    """A report context holding one run per (dataset, batch size) with given error curves."""
    from descentlab.experiments.plan import SweepPlan

    plan = SweepPlan.build({"batch_size": [1, 2]}, {"dataset": "digits"}, study="batch-size")
    rows, hists = [], {}
    for (dataset, b, n_train), errors in curves.items():
        name = f"{dataset}-{b}"
        rows.append(
            {
                "name": name,
                "stages": ["final"],
                "status": "ok",
                "dataset": dataset,
                "batch_size": b,
                "lr": 0.1,
                "n_train": n_train,
                "label": None,
            }
        )
        steps = max(1, n_train // b)
        hists[name] = [
            {
                "epoch": e,
                "valid_error": v,
                "examples_seen": e * steps * b,
                "seconds": e * (0.001 * steps + 0.01),
            }
            for e, v in enumerate(errors, 1)
        ]
    ctx = ReportContext(tmp_path, plan, rows, [], tmp_path / "figures")
    ctx._histories.update(hists)
    return ctx


def test_batch_size_verdict_is_computed_from_the_runs(tmp_path):
    _batch_sections = batch_size.report_sections

    ctx = _fake_ctx(
        tmp_path,
        {
            # "fast": on-line training gets there first (agrees with the paper)
            ("fast", 1, 100): [0.20, 0.10, 0.08, 0.08],
            ("fast", 100, 100): [0.60, 0.40, 0.30, 0.20],
            # "slow": full batch gets there first (disagrees)
            ("slow", 1, 100): [0.50, 0.45, 0.40, 0.30],
            ("slow", 100, 100): [0.30, 0.20, 0.15, 0.10],
        },
    )
    analysis = {a["dataset"]: a for a in batch_size_analysis(ctx)}
    fast = {r["batch_size"]: r for r in analysis["fast"]["rows"]}
    assert analysis["fast"]["target_error"] == pytest.approx(0.20)
    assert fast[1]["epochs_to_target"] == 1 and fast[100]["epochs_to_target"] == 4
    assert fast[1]["acc_epoch1"] == pytest.approx(0.80)
    assert fast[100]["acc_epoch_last"] == pytest.approx(0.80)
    text = "\n".join(v for k, v in _batch_sections(ctx)[0].blocks if k == "text")
    assert "**fast**" in text and "(agree with the paper)" in text
    assert "**slow**" in text and "(disagree with the paper)" in text
    assert "On 1 of 2 datasets" in text and "only partly" in text


# ============================================================ tiny real studies
def _shrink(name, settings=None, grid=None, **fixed):
    plan = get_study(name).plan(settings or StudySettings(fast=True, seeds=1))
    # one torch thread: two threads per process stall badly on a busy two-core machine
    plan.fixed.update({"max_epochs": 2, "threads": 1, **fixed})
    if grid is not None:
        plan.grid = grid
    return plan


def test_tiny_regularization_study(tmp_path):
    plan = _shrink("regularization", hidden=[16])
    plan.grid = [
        {"label": ["none"]},
        {"label": ["L2"], "l2": [1e-4, 1e-2]},
        {"label": ["early stopping"], "early_stopping": ["epochs"], "restore_best": [True]},
    ]
    plan.tune = ("l2",)
    result = run_sweep(plan, tmp_path, jobs=1, progress=False)
    assert not result.failed
    for row in result.rows:
        assert 0 <= row["model_train_error"] <= 1
        if not row["restore_best"]:  # scored with its final parameters
            last = json.loads(
                (tmp_path / row["run_dir"] / "metrics.jsonl").read_text().splitlines()[-1]
            )
            assert row["model_valid_error"] == pytest.approx(last["valid_error"])
        else:  # the best validation point's parameters, scored again: the same errors
            from descentlab.train.build import load_data
            from descentlab.train.evaluate import evaluate
            from descentlab.train.run_dir import load_run

            run = load_run(tmp_path / row["run_dir"])
            data = load_data(run.config)
            for split in ("valid", "test"):
                again = evaluate(run.model, getattr(data, split), n_classes=data.n_classes).error
                assert row[f"model_{split}_error"] == pytest.approx(again, abs=1e-12)
    text = result.report[1].read_text(encoding="utf-8")
    assert "train–valid gap" in text and "Smallest train–valid gap" in text


def test_tiny_surrogate_and_schedules_studies(tmp_path):
    plan = _shrink("surrogate", hidden=[16], max_epochs=4)
    result = run_sweep(plan, tmp_path / "s", jobs=1, progress=False)
    text = result.report[1].read_text(encoding="utf-8")
    assert "validation NLL was lowest at epoch" in text
    assert (tmp_path / "s" / "figures" / "surrogate_vs_metric.svg").is_file()

    plan = _shrink("schedules", hidden=[16])
    plan.grid = [{**t, "lr": [0.1]} for t in plan.grid]
    result = run_sweep(plan, tmp_path / "l", jobs=1, progress=False)
    text = result.report[1].read_text(encoding="utf-8")
    assert "Ranked by validation error" in text
    assert (tmp_path / "l" / "figures" / "lr_vs_epoch.png").is_file()


def test_tiny_batch_size_study_from_the_cli(tmp_path, capsys, monkeypatch):
    from descentlab.experiments import studies

    real = batch_size.build_plan

    def tiny(settings):
        plan = real(settings)
        plan.fixed.update(max_epochs=2, hidden=[8], threads=1)
        plan.grid = [{**t, "lr": [0.1]} for t in plan.grid]
        return plan

    monkeypatch.setitem(
        studies.STUDIES,
        "batch-size",
        studies.STUDIES["batch-size"].__class__(
            "batch-size", "tiny", tiny, batch_size.report_sections, split_by="dataset"
        ),
    )
    out = tmp_path / "b"
    argv = ["study", "batch-size", "--fast", "--datasets", "iris", "--seeds", "1"]
    assert main([*argv, "--jobs", "1", "--out", str(out)]) == 0
    text = (out / "report.md").read_text(encoding="utf-8")
    assert "Verdict (computed from the runs above)" in text
    assert "full (90)" in text


def test_study_list(capsys):
    assert main(["study", "--list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in STUDIES)
