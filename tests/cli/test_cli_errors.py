"""Bad input on the command line: one line on stderr, exit code 2, no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from descentlab.cli.main import main


def run_cli(capsys, *argv):
    with pytest.raises(SystemExit) as exc:
        code = main(list(argv))
        raise SystemExit(code)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def assert_one_line_error(code, err, *words):
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], (w, lines[0])


@pytest.mark.parametrize(
    "argv,words",
    [
        (["train", "--dataset", "digits", "--lr", "-0.1"], ["lr", "> 0"]),
        (["train", "--dataset", "digits", "--lr", "abc"], ["--lr", "invalid float"]),
        (["train", "--dataset", "digits", "--batch-size", "0"], ["batch_size"]),
        (
            ["train", "--dataset", "digits", "--batch-size", "100000"],
            ["larger than the training set"],
        ),
        (["train", "--dataset", "digits", "--momentum", "1.5"], ["momentum"]),
        (["train", "--dataset", "digits", "--patience", "0"], ["patience"]),
        (["train", "--dataset", "digits", "--optimizer", "adamm"], ["adamm", "adam"]),
        (["train", "--dataset", "digits", "--model", "mpl"], ["mpl", "mlp"]),
        (["train", "--preset", "dlt-mpl"], ["preset", "dlt-mlp"]),
        (["train", "--learning-rate", "0.1"], ["unrecognized", "--learning-rate"]),
        (["train", "--dataset", "no-such-dataset", "--offline"], ["no-such-dataset"]),
        (["train", "--config", "/nonexistent/run.toml"], ["does not exist"]),
    ],
)
def test_train_errors(capsys, tmp_path, argv, words):
    code, _, err = run_cli(capsys, *argv, "--out", str(tmp_path / "run"))
    assert_one_line_error(code, err, *words)


def test_unknown_config_key_suggests(capsys, tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text("dataset = 'digits'\nbatchsize = 20\n")
    code, _, err = run_cli(capsys, "train", "--config", str(cfg), "--out", str(tmp_path / "r"))
    assert_one_line_error(code, err, "batchsize", "batch_size")


def test_resume_from_non_run(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "--resume", str(tmp_path))
    assert_one_line_error(code, err, "not a descentlab run")


def test_evaluate_non_run(capsys, tmp_path):
    code, _, err = run_cli(capsys, "evaluate", str(tmp_path))
    assert_one_line_error(code, err, "not a finished descentlab run")


def test_real_process_exit_code(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "descentlab",
            "train",
            "--dataset",
            "digits",
            "--lr",
            "0",
            "--out",
            str(tmp_path / "r"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert "lr must be > 0" in proc.stderr
