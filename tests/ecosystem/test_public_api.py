"""The public Python API: names, laziness, type hints, layering, and parity with the CLI."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import descentlab
from descentlab.cli.main import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "descentlab"
API_DOC = ROOT / "docs" / "api.md"


def test_every_top_level_name_resolves():
    for name in descentlab.__all__:
        assert getattr(descentlab, name) is not None, name
        assert name in dir(descentlab)
    for module in ("data", "models", "losses", "metrics", "optim", "train", "sklearn"):
        assert getattr(descentlab, module).__name__ == f"descentlab.{module}"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        descentlab.nope  # noqa: B018


def test_import_descentlab_is_lazy():
    code = "import sys, descentlab; print(sorted({'torch', 'numpy'} & set(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def _imported_modules(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value)
    return names


def test_no_module_outside_cli_imports_the_cli():
    # descentlab/__main__.py (``python -m descentlab``) is the command line's entry point.
    modules = [
        p
        for p in PACKAGE.rglob("*.py")
        if "cli" not in p.relative_to(PACKAGE).parts and p != PACKAGE / "__main__.py"
    ]
    assert len(modules) > 20  # the walk found the package
    offenders = {
        str(p.relative_to(PACKAGE)): sorted(
            m
            for m in _imported_modules(p)
            if m == "descentlab.cli" or m.startswith("descentlab.cli.")
        )
        for p in modules
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_import_scanner_sees_every_kind_of_import(tmp_path, monkeypatch):
    """The layering check above must be able to fail: feed it each way of importing."""
    fake = PACKAGE / "train" / "_probe.py"  # never written: only its path is used
    sources = {
        "import descentlab.cli.main": "descentlab.cli.main",
        "from descentlab.cli import main": "descentlab.cli",
        "from ..cli import main": "descentlab.cli",
        "from ..cli.main import build_parser": "descentlab.cli.main",
        "import importlib\nimportlib.import_module('descentlab.cli.train')": "descentlab.cli.train",
    }
    for source, expected in sources.items():
        monkeypatch.setattr(Path, "read_text", lambda self, encoding=None, s=source: s)
        assert expected in _imported_modules(fake), source


def _public_callables():
    for name in descentlab.__all__:
        obj = getattr(descentlab, name)
        if inspect.isfunction(obj):
            yield name, obj
        elif inspect.isclass(obj) and not issubclass(obj, Exception):
            for attr, member in vars(obj).items():
                if inspect.isfunction(member) and (attr == "__init__" or not attr.startswith("_")):
                    yield f"{name}.{attr}", member


def test_public_api_has_type_hints():
    missing = []
    for name, func in _public_callables():
        sig = inspect.signature(func)
        for param in sig.parameters.values():
            if param.name not in ("self", "cls") and param.annotation is inspect.Parameter.empty:
                missing.append(f"{name}({param.name})")
        if sig.return_annotation is inspect.Signature.empty:
            missing.append(f"{name} -> ?")
    assert missing == []


def _commands(parser, prefix=("descentlab",)):
    """Every runnable command path of the parser, e.g. ('descentlab', 'train')."""
    for action in parser._actions:
        choices = getattr(action, "choices", None)
        if isinstance(choices, dict):
            for name, child in choices.items():
                path = (*prefix, name)
                if child.get_default("func") is not None:
                    yield path
                yield from _commands(child, path)


def test_api_doc_lists_every_cli_command():
    text = API_DOC.read_text(encoding="utf-8")
    table = text[text.index("## The command line in Python") :]
    commands = list(_commands(build_parser()))
    assert ("descentlab", "train") in commands
    undocumented = [" ".join(c) for c in commands if f"| `{' '.join(c)}" not in table]
    assert undocumented == [], "add their Python equivalents to docs/api.md"


# Modules that docs/api.md describes and that are being written at the same time as it;
# their names are checked as soon as the module exists.
PENDING_MODULES = {"descentlab.experiments.landscape": "the landscape lab"}


def test_every_name_in_the_api_doc_exists():
    names = set(re.findall(r"\bdescentlab(?:\.[A-Za-z_]\w*)+", API_DOC.read_text("utf-8")))
    assert "descentlab.train.resolve" in names
    pending = []
    for dotted in sorted(names):
        parts = dotted.split(".")
        module = next((m for m in PENDING_MODULES if dotted.startswith(m + ".")), None)
        if module is not None and importlib.util.find_spec(module) is None:
            pending.append(f"{dotted} ({PENDING_MODULES[module]} is not there yet)")
            continue
        # the longest importable module prefix, then attributes
        for cut in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
                break
            except ModuleNotFoundError:
                continue
        for attr in parts[cut:]:
            assert hasattr(obj, attr), f"docs/api.md names {dotted}, which does not exist"
            obj = getattr(obj, attr)
    if pending:
        pytest.skip("not checked: " + "; ".join(pending))


# ------------------------------------------------------------- CLI ↔ Python parity
TRAIN_FLAGS = {
    "dataset": "digits",
    "model": "mlp",
    "hidden": "16",
    "optimizer": "adam",
    "lr": "0.01",
    "batch-size": "50",
    "max-epochs": "2",
    "early-stopping": "none",
    "shuffle": None,
    "seed": "3",
}


def _cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """A run trained by ``descentlab train``, and the same run trained by ``fit``."""
    root = tmp_path_factory.mktemp("runs")
    argv = ["train", "--out", str(root / "cli"), "--quiet"]
    for flag, value in TRAIN_FLAGS.items():
        argv += [f"--{flag}"] + ([value] if value is not None else [])
    assert main(argv) == 0
    result = descentlab.fit(
        data="digits",
        model="mlp",
        hidden=(16,),
        optimizer="adam",
        lr=0.01,
        batch_size=50,
        max_epochs=2,
        early_stopping="none",
        shuffle=True,
        seed=3,
        quiet=True,
        out=str(root / "python"),
    )
    return root / "cli", result


def test_train_is_fit(cli_run):
    run_dir, result = cli_run
    summary = json.loads((run_dir / "summary.json").read_text())
    for key in ("best_valid_error", "test_error", "best_iteration", "iterations", "epochs_run"):
        assert summary[key] == result.summary[key], key

    def timeless(rows):
        return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]

    history = json.loads(json.dumps(result.history))
    assert timeless(descentlab.load_run(run_dir).history) == timeless(history)


def test_evaluate_is_load_run_and_evaluate(cli_run, capsys):
    from descentlab.experiments.stats import wilson_interval

    run_dir, _ = cli_run
    row = json.loads(_cli(capsys, "evaluate", str(run_dir), "--split", "valid", "--json"))
    run = descentlab.load_run(run_dir)
    cfg = run.config
    data = descentlab.load_dataset(
        cfg.dataset,
        data_dir=cfg.data_dir,
        standardize=cfg.standardize,
        label_column=cfg.label_column,
        seed=cfg.seed,
        subset=cfg.subset,
    )
    e = descentlab.evaluate(run.model, data.valid, n_classes=data.n_classes)
    assert (row["n"], row["errors"]) == (e.n, e.n_errors)
    assert row["error"] == pytest.approx(e.error) and row["nll"] == pytest.approx(e.nll)
    assert row["error_95ci"] == pytest.approx(list(wilson_interval(e.n_errors, e.n)))
    assert e.error == pytest.approx(run.summary["best_valid_error"])


def test_predict_is_run_predict(cli_run, capsys, tmp_path):
    from sklearn.datasets import load_digits

    from descentlab.data.features import read_features

    run_dir, _ = cli_run
    raw = load_digits().data[:25]  # raw pixels 0..16: the run applies its own scaling
    np.save(tmp_path / "x.npy", raw)
    lines = _cli(capsys, "predict", str(run_dir), str(tmp_path / "x.npy")).splitlines()
    run = descentlab.load_run(run_dir)
    proba = run.predict_proba(read_features(tmp_path / "x.npy"))
    assert [int(line.split("\t")[1]) for line in lines] == proba.argmax(1).tolist()
    assert [float(line.split("\t")[2]) for line in lines] == pytest.approx(
        proba.max(1).values.tolist(), abs=1e-4
    )


def test_datasets_is_describe_datasets(capsys, tmp_path, monkeypatch):
    from descentlab.data import describe_datasets

    monkeypatch.setenv("DESCENTLAB_DATA", str(tmp_path))  # nothing to hash: fast
    shown = json.loads(_cli(capsys, "datasets", "--json"))
    assert shown == json.loads(json.dumps(describe_datasets(), default=str))
