"""``descentlab``: the command line, a thin layer over the Python API.

Each sub-command lives in its own module with ``register(subparsers)``; this
module assembles them and turns every user-facing error into one line on
stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from descentlab._version import __version__
from descentlab.errors import DescentlabError

COMMAND_MODULES = ("train", "bench", "experiments")


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line naming the problem and where to look."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> Parser:
    import importlib

    parser = Parser(
        prog="descentlab",
        description="Train classifiers with minibatch SGD and the optimizers of "
        "Deep Learning ch. 8, and study how they behave.",
    )
    parser.add_argument("--version", action="version", version=f"descentlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"descentlab.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"descentlab.cli.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except DescentlabError as exc:
        print(f"descentlab: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("descentlab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 141
    except Exception as exc:  # a bug of ours: still no traceback unless asked for
        if os.environ.get("DESCENTLAB_DEBUG"):
            raise
        print(
            f"descentlab: internal error: {type(exc).__name__}: {exc} "
            "(rerun with DESCENTLAB_DEBUG=1 for the traceback, and please report it)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
