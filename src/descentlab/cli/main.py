"""``descentlab``: the command line, a thin layer over the Python API.

Each sub-command lives in its own module with ``register(subparsers)``; this
module assembles them and turns every user-facing error into one line on
stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import Sequence

# Idle OpenMP threads sleep instead of spinning on a core another process needs.  The
# runtime reads this once, when torch loads it, so it is set before anything imports
# torch; a value the user set is kept (train/threads.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from descentlab._version import __version__
from descentlab.cli import bench, diagnose, experiments, reproduce, train
from descentlab.errors import DescentlabError, closest

# Each module declares its sub-commands with register(subparsers), in this order.
COMMAND_MODULES = (train, bench, experiments, reproduce, diagnose)

# Spellings from other tools that difflib would not map to ours.
FLAG_SYNONYMS = {
    "--learning-rate": "--lr",
    "--learning_rate": "--lr",
    "--epochs": "--max-epochs",
    "--n-epochs": "--max-epochs",
    "--batch": "--batch-size",
    "--bs": "--batch-size",
    "--opt": "--optimizer",
    "--weight_decay": "--weight-decay",
    "--data": "--dataset",
    "--output": "--out",
}


def _closest_flag(word: str, flags: list[str]) -> str | None:
    """The flag ``word`` was meant as, matched against our flags and their known aliases.

    ``--lerning-rate`` is closer to the alias ``--learning-rate`` than to any flag of
    ours, so it is answered with the alias's flag (``--lr``).
    """
    best = closest(word, [*flags, *FLAG_SYNONYMS])
    return FLAG_SYNONYMS.get(best, best) if best else None


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line naming the problem and where to look."""

    def error(self, message: str) -> None:  # type: ignore[override]
        hint = f"see '{self.prog} --help'"
        if message.startswith("unrecognized arguments:"):
            unknown = [w for w in message.split(":", 1)[1].split() if w.startswith("--")]
            flags = [o for a in self._all_actions() for o in a.option_strings]
            word = unknown[0].split("=")[0] if unknown else ""
            best = FLAG_SYNONYMS.get(word) or (_closest_flag(word, flags) if word else None)
            if best:
                hint = f"did you mean {best}?"
        self.exit(2, f"{self.prog}: error: {message} ({hint})\n")

    def _all_actions(self) -> list[argparse.Action]:
        # unknown flags are reported by the top parser: look inside the sub-commands too
        actions = list(self._actions)
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                for parser in action.choices.values():
                    actions.extend(parser._actions)
        return actions


def build_parser() -> Parser:
    parser = Parser(
        prog="descentlab",
        description="Train classifiers with minibatch SGD and the optimizers of "
        "Deep Learning ch. 8, and study how they behave.",
    )
    parser.add_argument("--version", action="version", version=f"descentlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]  # train --nproc relaunches it
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except DescentlabError as exc:
        # An interruption (exit 130/143) is not an error: the line says how to resume.
        label = "" if exc.exit_code in (130, 143) else "error: "
        print(f"descentlab: {label}{exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("descentlab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 141
    except OSError as exc:
        if exc.errno not in USER_OS_ERRORS:
            return _internal_error(exc)
        where = f" {exc.filename}" if exc.filename else ""
        print(
            f"descentlab: error: cannot use{where}: {exc.strerror} "
            "(free some space or choose a writable location)",
            file=sys.stderr,
        )
        return 2
    except Exception as exc:  # a bug of ours: still no traceback unless asked for
        return _internal_error(exc)


# Operating-system errors a user causes and fixes (full disk, read-only or foreign folder).
# (ENOTDIR/EEXIST/EISDIR: a file where a folder is needed or the other way round;
# ENAMETOOLONG: a path longer than the filesystem allows; ELOOP: a symlink loop.)
USER_OS_ERRORS = (
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.ENOTDIR,
    errno.EEXIST,
    errno.EISDIR,
    errno.ENAMETOOLONG,
    errno.ELOOP,
)


def _internal_error(exc: Exception) -> int:
    if os.environ.get("DESCENTLAB_DEBUG"):
        raise exc
    print(
        f"descentlab: internal error: {type(exc).__name__}: {exc} "
        "(rerun with DESCENTLAB_DEBUG=1 for the traceback, and please report it)",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
