"""``descentlab explain``: the seeds' worked examples, computed by the library."""

from __future__ import annotations

import math

import pytest

from descentlab.cli.main import main
from descentlab.errors import ConfigError
from descentlab.experiments.explain import explain, explain_losses, losses_table


def test_losses_table_has_the_seeds_numbers():
    columns, rows = losses_table()
    averages = {r[0]: r for r in rows if r[1] == "average"}
    ce, mse = columns.index("cross-entropy"), columns.index("squared error (MSE)")
    err = columns.index("classification error")
    # model 1: p(target) = 0.4, 0.4, 0.1; model 2: 0.7, 0.7, 0.3 (seed text 003)
    ce1 = -(math.log(0.4) + math.log(0.4) + math.log(0.1)) / 3
    ce2 = -(math.log(0.7) + math.log(0.7) + math.log(0.3)) / 3
    # squared errors per example: Σ_k (p_k - t_k)²
    mse1 = (0.54 + 0.54 + 1.34) / 3
    mse2 = (0.14 + 0.14 + 0.74) / 3
    assert averages["model 1"][err] == averages["model 2"][err] == "0.3333"
    assert float(averages["model 1"][ce]) == pytest.approx(ce1, abs=1e-4)
    assert float(averages["model 2"][ce]) == pytest.approx(ce2, abs=1e-4)
    assert float(averages["model 1"][mse]) == pytest.approx(mse1, abs=1e-4)
    assert float(averages["model 2"][mse]) == pytest.approx(mse2, abs=1e-4)
    # the per-example rows reproduce the seed's table
    first = [r for r in rows if r[0] == "model 1" and r[1] != "average"]
    assert [r[2] for r in first] == ["0.3 0.3 0.4", "0.3 0.4 0.3", "0.1 0.2 0.7"]
    assert [r[4] for r in first] == ["yes", "yes", "no"]


def test_explain_losses_text():
    text = explain_losses()
    for number in ("1.3784", "0.6391", "0.8067", "0.3400", "0.3333"):
        assert number in text
    assert "democrat" in text


def test_explain_cli(capsys):
    assert main(["explain", "losses"]) == 0
    out = capsys.readouterr().out
    assert "cross-entropy" in out and "1.3784" in out
    assert main(["explain", "significance"]) == 0
    assert "rule of 30" in capsys.readouterr().out
    assert main(["explain", "loses"]) == 2
    assert "did you mean 'losses'" in capsys.readouterr().err
    with pytest.raises(ConfigError):
        explain("nothing")


def test_landscape_command_wraps_the_landscape_lab(tmp_path, monkeypatch, capsys):
    """The CLI passes its flags to run_landscape/plot_landscape, whatever else they take."""
    import sys
    import types

    calls = {}

    def run_landscape(function, optimizers, steps=100, clip_norm=None, noise=0.0, seed=0):
        calls["run"] = {"function": function, "optimizers": optimizers, "steps": steps,
                        "clip_norm": clip_norm, "noise": noise, "seed": seed}  # fmt: skip
        return "result"

    def plot_landscape(result, out, gif=False):
        calls["plot"] = (result, str(out), gif)
        return [out / "paths.png"]

    fake = types.ModuleType("descentlab.experiments.landscape")
    fake.LANDSCAPES = {"rosenbrock": None, "beale": None}
    fake.run_landscape = run_landscape
    fake.plot_landscape = plot_landscape
    monkeypatch.setitem(sys.modules, "descentlab.experiments.landscape", fake)
    argv = ["landscape", "--optimizers", "sgd,adam", "--steps", "50", "--clip-norm", "1.5"]
    assert main([*argv, "--noise", "0.1", "--gif", "--out", str(tmp_path)]) == 0
    assert calls["run"] == {
        "function": "rosenbrock",
        "optimizers": ["sgd", "adam"],
        "steps": 50,
        "clip_norm": 1.5,
        "noise": 0.1,
        "seed": 0,
    }
    assert calls["plot"] == ("result", str(tmp_path), True)
    assert "paths.png" in capsys.readouterr().out
    assert main(["landscape", "--function", "rosenbrok", "--out", str(tmp_path)]) == 2
    assert "did you mean 'rosenbrock'" in capsys.readouterr().err
    # a flag the lab does not take is an error, not silently dropped
    assert main(["landscape", "--lr", "0.1", "--out", str(tmp_path)]) == 2
    assert "--lr" in capsys.readouterr().err
