"""The diagnostics through the command line: diagnose, lr-find and train --diagnostics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from descentlab.cli.main import main
from descentlab.diagnostics import DiagnosticsCallback
from descentlab.errors import ConfigError
from descentlab.objective import Objective
from descentlab.train import ValidationRecord, load_run
from descentlab.train import api as train_api
from descentlab.train.build import load_data


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def logreg_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("logreg") / "run"
    code = main(
        ["train", "--dataset", "digits", "--model", "logreg", "--max-epochs", "15",
         "--out", str(out), "--quiet"]
    )  # fmt: skip
    assert code == 0
    return out


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mlp") / "run"
    code = main(
        ["train", "--dataset", "digits", "--model", "mlp", "--hidden", "16", "--max-epochs",
         "3", "--batch-size", "64", "--early-stopping", "none",
         "--optimizer", "momentum", "--lr", "0.05", "--momentum", "0.9",
         "--diagnostics", "2", "--out", str(out), "--quiet"]
    )  # fmt: skip
    assert code == 0
    return out


def _exact_top_eigenvalue(run_dir: Path) -> float:
    """λmax of the full-split training cost from the dense Hessian (float64)."""
    run = load_run(run_dir)
    data = load_data(run.config, quiet=True)
    model = run.model.double()
    x, y = data.train.x.double(), data.train.y
    objective = Objective(run.config.loss, l1=run.config.l1, l2=run.config.l2)
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def cost(flat: torch.Tensor) -> torch.Tensor:
        params, offset = {}, 0
        for name, shape in zip(names, shapes):
            n = shape.numel()
            params[name] = flat[offset : offset + n].view(shape)
            offset += n
        logits = torch.func.functional_call(model, params, (x,))
        return objective.loss(logits, y)

    hessian = torch.autograd.functional.hessian(cost, flat0)
    return float(torch.linalg.eigvalsh(hessian)[-1])


def test_diagnose_json_lambda_max_matches_the_exact_hessian(
    logreg_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _cli(capsys, "diagnose", str(logreg_run), "--json", "--sample", "all")
    assert code == 0
    got = json.loads(out)
    for key in ("lambda_max", "lambda_min", "lr", "lr_stability_bound", "noise_scale",
                "critical_batch", "n_examples"):  # fmt: skip
        assert got[key] is not None, key
    exact = _exact_top_eigenvalue(logreg_run)
    assert got["n_examples"] == 1078
    assert abs(got["lambda_max"] - exact) <= 0.01 * exact
    assert got["lr"] == pytest.approx(0.13)
    assert got["lr_stability_bound"] == pytest.approx(2 / got["lambda_max"])
    # softmax regression's NLL is convex: no negative curvature beyond Lanczos' tolerance
    assert got["lambda_min"] >= -1e-3 * got["lambda_max"]


def test_diagnose_text_at_last_names_every_quantity(
    mlp_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _cli(capsys, "diagnose", str(mlp_run), "--at", "last", "--top-k", "2")
    assert code == 0
    for word in ("at last (iteration 48)", "λmax", "λmin", "trace", "momentum lr 0.05",
                 "2(1+α)/λmax", "‖g‖", "B_simple", "critical batch", "1,078 of 1,078",
                 "1 torch thread"):  # fmt: skip
        assert word in out, word


def test_diagnose_refuses_small_samples_and_useless_repeats(
    mlp_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _cli(capsys, "diagnose", str(mlp_run), "--sample", "100")
    assert code == 2 and "--sample 4096" in err and "Traceback" not in err
    code, _, err = _cli(capsys, "diagnose", str(mlp_run), "--repeats", "3")
    assert code == 2 and "repeats" in err


@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [
        ("--repeats", "0", "must be >= 1"),  # was accepted: exit 0, nothing measured
        ("--repeats", "-3", "must be >= 1"),
        ("--noise-repeats", "0", "must be >= 1"),
        ("--top-k", "x", "expected a whole number"),
        ("--trace-probes", "1", "must be 0 (no trace) or >= 2"),
        ("--trace-probes", "-1", "must be 0 (no trace) or >= 2"),
    ],
)
def test_diagnose_counts_are_refused_by_their_flag(
    logreg_run: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, says: str
) -> None:
    from clihelpers import one_line_error, run_cli

    code, _, err = run_cli(capsys, "diagnose", str(logreg_run), flag, value)
    one_line_error(code, err, f"argument {flag}: {says}")


def test_diagnose_options_refuse_counts_by_their_name() -> None:
    from descentlab.diagnostics.report import DiagnoseOptions

    for name, value in (("repeats", 0), ("top_k", True), ("noise_repeats", 2.5)):
        with pytest.raises(ConfigError, match=f"^{name} must be a whole number >= 1"):
            DiagnoseOptions(**{name: value})
    with pytest.raises(ConfigError, match="trace_probes must be 0"):
        DiagnoseOptions(trace_probes=1)
    assert DiagnoseOptions(trace_probes=0).trace_probes == 0


def test_diagnose_last_without_checkpoint_is_one_line(
    logreg_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "run"
    copy.mkdir()
    for name in ("config.toml", "summary.json", "metrics.jsonl", "model.safetensors"):
        (copy / name).write_bytes((logreg_run / name).read_bytes())
    code, _, err = _cli(capsys, "diagnose", str(copy), "--at", "last")
    assert code == 2 and "checkpoint" in err and len(err.strip().splitlines()) == 1


def test_train_diagnostics_records_rows_and_draws_the_figure(mlp_run: Path) -> None:
    rows = [json.loads(line) for line in (mlp_run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 3  # one validation per epoch
    measured = [i for i, r in enumerate(rows) if r["lambda_max"] is not None]
    assert measured == [0, 2]  # every 2nd validation, the first included
    for i in measured:
        r = rows[i]
        assert r["lambda_max"] > 0 and r["full_grad_norm"] > 0 and r["diag_examples"] == 1078
        assert r["lr_stability_bound"] == pytest.approx(2 * 1.9 / r["lambda_max"])
        assert r["noise_scale"] is not None and r["step_ratio"] is not None
    assert (mlp_run / "diagnostics.png").stat().st_size > 10_000
    # rows written before these fields existed still read
    old = {k: v for k, v in rows[1].items() if k not in ("lambda_max", "noise_scale")}
    assert ValidationRecord.from_row(old).lambda_max is None


def test_fit_names_the_missing_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(train_api, "OPTION_CALLBACKS", {})
    with pytest.raises(ConfigError, match=r"import descentlab\.diagnostics"):
        train_api.fit("logreg", "digits", diagnostics=1, max_epochs=1, quiet=True)
    # a callback passed in serves the option itself
    cb = DiagnosticsCallback(1)
    result = train_api.fit(
        "logreg", "digits", diagnostics=1, max_epochs=1, quiet=True, callbacks=[cb]
    )
    assert result.history[0]["lambda_max"] is not None


def test_lr_find_cli_plots_and_suggests(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cli(
        capsys, "lr-find", "--dataset", "digits", "--model", "logreg", "--batch-size", "32",
        "--steps", "60", "--out", str(tmp_path), "--json",
    )  # fmt: skip
    assert code == 0
    got = json.loads(out)
    assert (tmp_path / "lr_find.png").is_file()
    assert 1e-5 <= got["suggested_lr"] <= 10
    assert got["lambda_max_init"] > 0
    assert got["lr_stability_bound_init"] == pytest.approx(2 / got["lambda_max_init"])
    code, out, _ = _cli(
        capsys, "lr-find", "--dataset", "digits", "--model", "logreg", "--steps", "20",
        "--out", str(tmp_path),
    )  # fmt: skip
    assert code == 0 and "suggested lr" in out and "curvature bound at initialization" in out


def test_compare_report_shows_diagnostics_per_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sweep"
    code, _, err = _cli(
        capsys, "compare", "--dataset", "digits", "--model", "logreg", "--lr", "0.05,0.2",
        "--max-epochs", "2", "--early-stopping", "none", "--diagnostics", "1",
        "--jobs", "1", "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "## Diagnostics" in md
    section = md.split("## Diagnostics", 1)[1].split("\n## ", 1)[0]
    assert "λmax" in section and "lr / bound" in section
    assert "lr=0.05" in section and "lr=0.2" in section


def test_edge_of_stability_study_records_lambda_max_against_two_over_lr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from descentlab.experiments.studies import edge_of_stability as eos

    monkeypatch.setitem(eos.FAST, "max_epochs", 30)  # tiny: 30 full-batch steps
    out = tmp_path / "eos"
    code, _, err = _cli(
        capsys, "study", "edge-of-stability", "--fast", "--seeds", "1", "--jobs", "1",
        "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "Sharpness under full-batch gradient descent" in md
    assert "runs ended with λmax within 20 % of 2/ε" in md
    assert (out / "figures" / "edge_of_stability.png").is_file()
    summary = eos.sharpness_summary(
        [{"lambda_max": 1.0, "train_nll": 2.0}, {"lambda_max": 3.0, "train_nll": 1.0}], lr=0.5
    )
    assert summary["peak"] == pytest.approx(0.75) and summary["first"] == pytest.approx(0.25)
