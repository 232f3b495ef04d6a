"""``descentlab``: the command line, a thin layer over the Python API.

Each sub-command lives in its own module with ``register(subparsers)``; this
module assembles them and turns every user-facing error into one line on
stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import difflib
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


def _closest_flag(word: str, flags: Sequence[str]) -> str | None:
    """The flag ``word`` was meant as, matched against ``flags`` and their known aliases.

    ``--lerning-rate`` is closer to the alias ``--learning-rate`` than to any flag of
    ours, so it is answered with the alias's flag (``--lr``).  Compared without the
    leading dashes, which every flag shares.
    """
    if word in FLAG_SYNONYMS and FLAG_SYNONYMS[word] in flags:
        return FLAG_SYNONYMS[word]
    known = {
        f.lstrip("-"): f for f in [*flags, *(a for a in FLAG_SYNONYMS if FLAG_SYNONYMS[a] in flags)]
    }
    best = closest(word.lstrip("-"), known)
    if best is None:
        return None
    flag = known[best]
    return FLAG_SYNONYMS.get(flag, flag)


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line naming the problem and where to look."""

    _argv: list[str] | None = None

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self._argv = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> None:  # type: ignore[override]
        command = self._command()
        hint = f"see '{command.prog} --help'"
        unknown = [w for w in message.split(":", 1)[-1].split() if w.startswith("--")]
        if message.startswith("unrecognized arguments:") and unknown:
            word = unknown[0].split("=")[0]
            # Unknown flags are reported by the top parser: match them against the flags
            # of the command that was run, then say which other commands take them.
            best = _closest_flag(word, _flags(command))
            every = _flags(self, deep=True)
            elsewhere = word if word in every else None
            if elsewhere is None and best is None:
                elsewhere = _closest_flag(word, every)
            if elsewhere:
                users = [p.prog for p in _commands(self) if elsewhere in _flags(p)]
                more = ", ..." if len(users) > 3 else ""
                # a flag of other commands: suggest one of ours only if nearly the same
                near = best and difflib.SequenceMatcher(None, word, best).ratio() >= 0.8
                then = f"did you mean {best}?" if near else hint
                hint = (
                    f"{elsewhere} is an option of {', '.join(users[:3])}{more}, "
                    f"not of '{command.prog}'; {then}"
                )
            elif best:
                hint = f"did you mean {best}?"
        self.exit(2, f"{self.prog}: error: {message} ({hint})\n")

    def _command(self) -> argparse.ArgumentParser:
        """The (sub-)command the arguments named: follow the sub-command words."""
        parser: argparse.ArgumentParser = self
        for word in self._argv or []:
            subs = _subcommands(parser)
            if word in subs:
                parser = subs[word]
        return parser


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _commands(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every command below ``parser`` that takes flags of its own (no sub-commands)."""
    subs = _subcommands(parser)
    if not subs:
        return [parser]
    return [leaf for sub in subs.values() for leaf in _commands(sub)]


def _flags(parser: argparse.ArgumentParser, *, deep: bool = False) -> list[str]:
    parsers = _commands(parser) if deep else [parser]
    return sorted({o for p in parsers for a in p._actions for o in a.option_strings})


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
