"""docs/cli.md is generated from the argument parser and must stay in sync with it."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from descentlab.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gen_cli_docs.py"


def _generator():
    spec = importlib.util.spec_from_file_location("gen_cli_docs", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_md_is_up_to_date():
    expected = _generator().render()
    current = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert current == expected, "docs/cli.md is stale: run python scripts/gen_cli_docs.py"


def _walk(parser, prog="descentlab"):
    yield prog, parser
    for action in parser._actions:
        if isinstance(getattr(action, "choices", None), dict):
            for name, child in action.choices.items():
                yield from _walk(child, f"{prog} {name}")


def test_cli_md_documents_every_command_and_flag():
    text = _generator().render()
    for prog, parser in _walk(build_parser()):
        assert f"`{prog}`" in text, prog
        for action in parser._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert f"`{flag}`" in text, (prog, flag)


def test_check_mode_reports_a_stale_file(tmp_path, monkeypatch):
    gen = _generator()
    monkeypatch.setattr(gen, "DOC", tmp_path / "cli.md")
    (tmp_path / "cli.md").write_text("# old\n", encoding="utf-8")
    assert gen.main(["--check"]) == 1
    assert gen.main([]) == 0  # regenerates ...
    assert gen.main(["--check"]) == 0  # ... and is then in sync


def test_script_runs_standalone():
    # It finds docs/ from its own location, whatever the working directory.
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT / "scripts",
    )
    assert out.returncode == 0, out.stderr
