"""Docs that cannot rot: every command and Python block of README.md and docs/*.md runs.

Sybil (https://sybil.readthedocs.io) collects the Markdown files as pytest tests
(``testpaths`` in pyproject.toml names them, so ``make test`` runs them):

* a ```python block runs as is; the blocks of one file share a namespace, in order;
* a ```console / ```bash block runs its ``descentlab ...`` commands in-process, one by
  one, each with a time limit (:data:`COMMAND_SECONDS`); in a transcript (lines starting
  with ``$``) only the ``$`` lines are commands.  Other commands (``make``, ``pip``,
  scripts) are not run.  ``train`` and ``compare`` get :data:`TINY` appended (later
  flags win), so the documented command runs as written at the scale of a test;
* a ```toml block whose first line is ``# NAME.toml`` is written to ``NAME.toml``, so a
  later command can use it (``--config NAME.toml``).

The files' commands may use ``inputs.npy`` / ``images.npy`` (:func:`write_example_inputs`).

Each file runs in its own temporary directory with ``$DESCENTLAB_DATA`` as the test
suite sets it.  A block that must not run is marked, with the reason, right above it::

    <!-- skip: next "downloads the 50 MB MNIST files" -->

Keep those few: downloads, runs of minutes or hours, machines we do not have.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sybil import Example, Sybil
from sybil.parsers.markdown import CodeBlockParser, PythonCodeBlockParser, SkipParser

#: Seconds one documented command may take (a hung command fails instead of blocking CI).
COMMAND_SECONDS = 120
#: What makes a documented training command tiny: one epoch on at most 1,000 examples per
#: split, one worker, never a download.
TINY = {
    "train": ["--max-epochs", "1", "--subset", "1000", "--offline"],
    "compare": ["--max-epochs", "1", "--subset", "600", "--jobs", "1", "--offline"],
}


def _commands(source: str) -> Iterator[str]:
    """The ``descentlab`` command lines of a shell block (continuations joined)."""
    lines = source.replace("\\\n", " ").splitlines()
    transcript = any(line.startswith("$ ") for line in lines)
    for line in lines:
        if transcript:
            if not line.startswith("$ "):
                continue  # the command's output
            line = line[2:]
        words = shlex.split(line, comments=True)
        if words and words[0] == "descentlab":
            yield line


class _Timeout(BaseException):  # not an Exception: the CLI must not swallow it
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise _Timeout


def run_command(line: str) -> str:
    """Run one documented ``descentlab ...`` line in-process; its output, or an assertion."""
    from descentlab.cli.main import main  # imported here: collection must stay cheap

    argv = shlex.split(line, comments=True)[1:]
    if argv and argv[0] in TINY and "--resume" not in argv:
        argv += TINY[argv[0]]
    out, err = io.StringIO(), io.StringIO()
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(COMMAND_SECONDS)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    except _Timeout:
        raise AssertionError(f"{line!r} took more than {COMMAND_SECONDS}s") from None
    except SystemExit as exc:  # argparse: a bad flag, or --help
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    if code != 0:
        raise AssertionError(
            f"{line!r} exited with {code}:\n{err.getvalue()[-2000:]}{out.getvalue()[-2000:]}"
        )
    return out.getvalue()


def evaluate_shell(example: Example) -> None:
    for line in _commands(example.parsed):
        run_command(line)


def write_file(example: Example) -> None:
    first = example.parsed.lstrip().splitlines()[0] if example.parsed.strip() else ""
    name = re.match(r"#\s*([\w.-]+\.toml)\b", first)
    if name:
        Path(name.group(1)).write_text(example.parsed, encoding="utf-8")


def _setup(namespace: dict[str, Any]) -> None:
    namespace["_cwd"] = os.getcwd()
    namespace["_tmp"] = tempfile.TemporaryDirectory(prefix="descentlab-docs-")
    os.chdir(namespace["_tmp"].name)
    write_example_inputs()


def write_example_inputs() -> None:
    """``inputs.npy`` and ``images.npy``, the files the docs' ``predict`` lines read:
    ten MNIST test images as raw pixels (0..255), as a user would have them."""
    import numpy as np

    from descentlab.data import load_dataset

    x = load_dataset("mnist", subset=10, offline=True).test.x
    pixels = (x.numpy() * 255).round().astype(np.uint8).reshape(len(x), -1)
    for name in ("inputs.npy", "images.npy"):
        np.save(name, pixels)


def _teardown(namespace: dict[str, Any]) -> None:
    os.chdir(namespace["_cwd"])
    namespace["_tmp"].cleanup()


pytest_collect_file = Sybil(
    parsers=[
        SkipParser(),
        PythonCodeBlockParser(),
        CodeBlockParser("console", evaluate_shell),
        CodeBlockParser("bash", evaluate_shell),
        CodeBlockParser("toml", write_file),
    ],
    patterns=["README.md", "docs/*.md"],
    setup=_setup,
    teardown=_teardown,
).pytest()
