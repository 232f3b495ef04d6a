"""The sweep report on a hand-made sweep directory: table, Wilson intervals, McNemar, plots."""

from __future__ import annotations

import json

import numpy as np
import pytest
from browser import check_in_browser, problems

from descentlab.cli.main import main
from descentlab.errors import CheckpointError
from descentlab.experiments.plan import SweepPlan, run_name
from descentlab.experiments.report import (
    ReportContext,
    build_report,
    compare_top_two,
    configuration_summaries,
    fmt_uncertain,
)
from descentlab.experiments.stats import mcnemar, mean_std, wilson_interval
from descentlab.experiments.store import collect_results

N_TEST = 400
N_VALID = 300


def _predictions(labels, wrong, rng):
    """Predictions equal to ``labels`` except at the indices ``wrong``."""
    pred = labels.copy()
    pred[wrong] = (labels[wrong] + 1 + rng.integers(0, 8, size=len(wrong))) % 10
    return pred


def make_sweep(tmp_path, configs, seeds=(0, 1)):
    """A sweep directory as run_sweep writes it, without training anything.

    ``configs``: optimizer -> (valid errors per seed, test wrong-index arrays per seed).
    """
    fixed = {"dataset": "digits", "model": "mlp"}
    plan = SweepPlan.build({"optimizer": list(configs)}, fixed, seeds=list(seeds))
    labels = np.arange(N_TEST) % 10
    runs = []
    for opt, (valid, wrong) in configs.items():
        for i, seed in enumerate(seeds):
            options = {**fixed, "optimizer": opt, "lr": 0.1, "seed": seed}
            name = run_name(options, plan.name_keys)
            run_dir = tmp_path / "runs" / name
            run_dir.mkdir(parents=True)
            test_err = len(wrong[i]) / N_TEST
            history = [
                {
                    "epoch": e,
                    "iteration": 10 * e - 1,
                    "examples_seen": 640 * e,
                    "train_nll": 1.0 / e,
                    "valid_error": valid[i] + 0.1 / e,
                    "valid_nll": 0.5 / e,
                    "valid_f1": 0.8,
                    "seconds": 0.5 * e,
                    "lr": 0.1,
                }
                for e in range(1, 4)
            ]
            history[-1]["valid_error"] = valid[i]
            summary = {
                "best_valid_error": valid[i],
                "test_error": test_err,
                "best_valid_nll": 0.2,
                "best_epoch": 3,
                "best_iteration": 29,
                "epochs_run": 3,
                "iterations": 30,
                "train_seconds": 1.5,
                "n_train": 1000,
                "n_valid": N_VALID,
                "n_test": N_TEST,
            }
            status = {
                "status": "ok",
                "error": None,
                "wall_seconds": 2.0,
                "seconds_to_best": 1.5,
                "valid_errors": round(valid[i] * N_VALID),
                "test_errors": len(wrong[i]),
            }
            (run_dir / "summary.json").write_text(json.dumps(summary))
            (run_dir / "sweep_run.json").write_text(json.dumps(status))
            (run_dir / "metrics.jsonl").write_text("\n".join(json.dumps(h) for h in history))
            rng = np.random.default_rng(seed)
            np.save(run_dir / "test_predictions.npy", _predictions(labels, wrong[i], rng))
            np.save(run_dir / "test_labels.npy", labels.astype(np.int16))
            runs.append({"name": name, "label": None, "stages": ["final"], "options": options})
    manifest = {"format": 1, "plan": plan.to_dict(), "runs": runs, "selection": []}
    (tmp_path / "sweep.json").write_text(json.dumps(manifest))
    return tmp_path


def _wrong(start, count):
    return np.arange(start, start + count)


@pytest.fixture
def sweep(tmp_path):
    # adam: best on validation; sgd second; rmsprop is best on TEST but worst on
    # validation, so it must not be among the two configurations tested.
    return make_sweep(
        tmp_path,
        {
            "sgd": ([0.060, 0.070], [_wrong(0, 60), _wrong(0, 64)]),
            "adam": ([0.030, 0.034], [_wrong(0, 20), _wrong(0, 22)]),
            "rmsprop": ([0.200, 0.210], [_wrong(0, 4), _wrong(0, 5)]),
        },
    )


def test_top_two_by_validation_and_seed_matched_mcnemar(sweep):
    plan, rows, selection = collect_results(sweep)
    ctx = ReportContext(sweep, plan, rows, selection, sweep / "figures")
    summaries = configuration_summaries(ctx)
    result = compare_top_two(ctx, summaries)
    assert (result["a"]["label"], result["b"]["label"]) == ("adam", "sgd")
    assert result["pairing"] == "seed-matched runs"
    first = result["pairs"][0]
    # adam wrong on examples 0..19, sgd on 0..59: b = 40 (adam right, sgd wrong), c = 0
    assert (first["b"], first["c"]) == (40, 0)
    assert first["rule_of_30"] and first["significant"]
    labels = np.arange(N_TEST) % 10
    ok_a = np.ones(N_TEST, bool)
    ok_a[:20] = False
    ok_b = np.ones(N_TEST, bool)
    ok_b[:60] = False
    assert first["p_value"] == pytest.approx(mcnemar(ok_a, ok_b)["p_value"])
    assert len(labels) == first["n"]


def test_report_files_table_and_intervals(sweep):
    html, md = build_report(sweep)
    text = md.read_text(encoding="utf-8")
    # the configuration table: adam wins validation, rmsprop has the lowest test error
    adam = next(line for line in text.splitlines() if line.startswith("| adam |"))
    rmsprop = next(line for line in text.splitlines() if line.startswith("| rmsprop |"))
    assert "3.20 ± 0.28% ★" in adam  # mean ± std of 3.0% and 3.4%
    assert "1.12 ± 0.18% ★" in rmsprop
    # Wilson interval of adam's pooled test errors: 42 of 800
    low, high = wilson_interval(42, 2 * N_TEST)
    assert f"[{100 * low:.2f}, {100 * high:.2f}]%" in adam
    assert "McNemar" in text and "rule of 30" in text
    assert "2 found a significant difference" in text
    for stem in ("valid_error_vs_epoch", "valid_error_vs_seconds", "train_nll_vs_iteration"):
        assert (sweep / "figures" / f"{stem}.png").is_file()
        assert (sweep / "figures" / f"{stem}.svg").is_file()
    page = html.read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") >= 3
    assert 'src="figures/' not in page  # self-contained


def test_indistinguishable_configurations(tmp_path):
    # Both wrong on 30 examples, 10 of them different: b = c = 10, nothing to see.
    sweep = make_sweep(
        tmp_path,
        {
            "sgd": ([0.050], [_wrong(0, 30)]),
            "adam": ([0.051], [_wrong(10, 30)]),
        },
        seeds=(0,),
    )
    _, md = build_report(sweep)
    text = md.read_text(encoding="utf-8")
    assert "0 found a significant difference" in text
    assert "cannot be told apart" in text


def test_report_cli_and_errors(sweep, tmp_path, capsys):
    assert main(["report", str(sweep)]) == 0
    assert "report:" in capsys.readouterr().out
    assert (sweep / "results.csv").is_file()
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "not a sweep directory" in capsys.readouterr().err
    with pytest.raises(CheckpointError):
        build_report(tmp_path / "nothing")


def test_user_text_in_labels_and_titles_is_escaped_in_report_html(sweep):
    """Run labels, titles and error messages are user text: shown, never markup."""
    evil = "<script>alert(1)</script>"
    path = sweep / "sweep.json"
    manifest = json.loads(path.read_text())
    manifest["plan"]["grid"] = [
        {"label": [evil if opt == "sgd" else opt], "optimizer": [opt]}
        for opt in ("sgd", "adam", "rmsprop")
    ]
    for run in manifest["runs"]:
        run["label"] = evil if run["options"]["optimizer"] == "sgd" else run["options"]["optimizer"]
    path.write_text(json.dumps(manifest))
    failed = next(sweep.glob("runs/*rmsprop*"))
    (failed / "sweep_run.json").write_text(
        json.dumps({"status": "failed", "error": 'diverged <img src=x onerror="alert(2)">'})
    )
    html, md = build_report(sweep, title=f"Sweep {evil}")
    page = html.read_text(encoding="utf-8")
    assert "<script" not in page and "<img src=x" not in page
    assert "<td>&lt;script&gt;alert(1)&lt;/script&gt;</td>" in page  # the label, in a table
    assert "<title>Sweep &lt;script&gt;alert(1)&lt;/script&gt;</title>" in page
    assert "&lt;img src=x onerror=" in page
    assert "<script>" not in md.read_text(encoding="utf-8")


def _table_column(text, header, column):
    """The cells of ``column`` in the Markdown table whose header row starts with ``header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    names = [c.strip() for c in lines[start].strip("|").split("|")]
    at = names.index(column)
    cells = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells.append([c.strip() for c in line.strip("|").split("|")][at])
    return cells


def test_stars_mark_only_errors_and_spreads_keep_sensible_digits(sweep):
    _, md = build_report(sweep)
    text = md.read_text(encoding="utf-8")
    header = "| configuration | seeds ok |"
    # Every configuration reached its best at epoch 3 after 1.5 s: a tie that used to
    # star every row, as if "fewer epochs to the best point" were a merit.
    assert _table_column(text, header, "epochs to best") == ["3 ± 0"] * 3
    assert _table_column(text, header, "seconds to best") == ["1.5 ± 0"] * 3
    assert sum("★" in c for c in _table_column(text, header, "best valid error")) == 1
    assert "epochs and seconds to the best point are not ranked" in text


@pytest.mark.parametrize(
    ("mean", "std", "text"),
    [
        (0.0399, 0.000801, "0.0399 ± 0.0008"),  # was "0.0399 ± 0.000801"
        (3.0, 1.414, "3.0 ± 1.4"),
        (4.0, 0.0, "4 ± 0"),
        (0.431, 0.0, "0.431 ± 0"),
        (123.4, 15.2, "123 ± 15"),
        (12.34, 0.26, "12.3 ± 0.3"),
    ],
)
def test_uncertain_numbers_show_the_digits_the_spread_allows(mean, std, text):
    assert fmt_uncertain(mean, std) == text


def test_mean_std_of_agreeing_seeds_is_exact():
    for value in (0.1, 0.0583, 1 / 3, 0.07799442896935933):
        assert mean_std([value] * 3) == (value, 0.0)


def test_the_lr_is_left_out_of_a_name_to_join_learning_rates(tmp_path):
    fixed = {"dataset": "digits", "model": "logreg"}
    plan = SweepPlan.build({"optimizer": ["sgd", "adam"], "lr": [0.01, 0.1]}, fixed, seeds=[0])
    rows = [
        {
            "name": f"{o}-{lr}",
            "stages": ["final"],
            "status": "ok",
            **fixed,
            "optimizer": o,
            "lr": lr,
            "seed": 0,
        }
        for o in ("sgd", "adam")
        for lr in (0.01, 0.1)
    ]
    ctx = ReportContext(tmp_path, plan, rows, [], tmp_path / "figures")
    assert ctx.label(rows[1]) == "sgd, lr=0.1"
    assert ctx.label(rows[1], without=("lr",)) == "sgd"
    assert ctx.name == "logreg on digits"


# ------------------------------------------------------------- in a browser
def test_report_renders_cleanly_in_chromium(sweep, tmp_path):
    html, _ = build_report(sweep)
    verdict = check_in_browser(html, tmp_path)
    assert verdict["images"] >= 3
    assert problems(verdict) == []


def test_the_browser_check_sees_what_a_reader_would_stumble_on(tmp_path):
    # The check itself can fail: a broken image, a too-wide block and a console error.
    page = tmp_path / "report.html"
    page.write_text(
        "<!doctype html><html><head><title>t</title></head><body>"
        '<img alt="lost figure" src="data:image/png;base64,AAAA">'
        '<div style="width:4000px">wide</div>'
        '<script>console.error("boom")</script></body></html>',
        encoding="utf-8",
    )
    found = " | ".join(problems(check_in_browser(page, tmp_path)))
    assert "lost figure" in found and "px wide" in found and "boom" in found
