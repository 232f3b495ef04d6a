"""What the sub-commands share: how a command is declared, and the flags several take.

A command's ``--help`` description (and its section in docs/cli.md) is the docstring
of the function that runs it, so the text is written once, next to the code it
describes; a command whose function has no docstring has no description.
"""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable
from typing import Any

Command = Callable[[argparse.Namespace], int]


def positive_int(text: str, *, what: str = "a whole number", below: str = "must be >= 1") -> int:
    """A whole number >= 1 (``--jobs``); ``what`` and ``below`` word the two refusals."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{below}, got {value}")
    return value


# The flags several commands take, with their usual wording; a command may word one
# differently (see add_flags).
SHARED_FLAGS: dict[str, dict[str, Any]] = {
    "--json": {"action": "store_true", "help": "machine-readable output"},
    "--threads": {"type": int, "default": None, "help": "torch CPU threads"},
    "--data-dir": {"default": None, "help": "folder holding mnist/ ..."},
    "--subset": {"type": int, "default": None, "help": "first N examples of each split"},
    "--device": {"default": "cpu", "help": "cpu or cuda (default %(default)s)"},
    "--quiet": {"action": "store_true", "help": "no progress lines on stderr"},
    "--jobs": {"type": positive_int, "default": None, "help": "worker processes (default: cores)"},
    "--no-report": {"action": "store_true", "help": "write results.csv only"},
    "--scheduler": {
        "default": None,
        "metavar": "tcp://HOST:8786",
        "help": "run the runs on this Dask cluster instead of local processes (needs "
        "descentlab[dask]; --out must be on storage every worker sees)",
    },
    "--no-fuse": {
        "action": "store_true",
        "help": "one run per worker at a time (default: runs that differ only in seed, optimizer, "
        "lr, optimizer hyperparameters, schedule or L1/L2 train together as one fused model)",
    },
}


def add_command(
    sub: Any, name: str, func: Command, help: str, **parser_options: Any
) -> argparse.ArgumentParser:
    """Add the sub-command ``name``, run by ``func`` and described by its docstring."""
    p: argparse.ArgumentParser = sub.add_parser(
        name, help=help, description=inspect.getdoc(func), **parser_options
    )
    p.set_defaults(func=func)
    return p


def add_flags(p: Any, *flags: str, **reworded: Any) -> None:
    """Add the shared ``flags`` to ``p`` (a parser or group), in the order given.

    ``reworded`` changes one flag's keywords for this command, keyed by its dest:
    a string is its help, a dict any ``add_argument`` keywords
    (``device={"default": None, "help": "..."}``).
    """
    for flag in flags:
        change = reworded.get(flag[2:].replace("-", "_"), {})
        if isinstance(change, str):
            change = {"help": change}
        p.add_argument(flag, **{**SHARED_FLAGS[flag], **change})


def arguments_for(fn: Callable[..., Any], args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    """``fn``'s keyword arguments: the parsed flags named like its parameters, and ``extra``.

    The commands' flags carry the Python API's parameter names (``--data-dir`` is
    ``data_dir``), so a command hands them over by name instead of one line per flag.
    """
    params = inspect.signature(fn).parameters
    return {**{k: v for k, v in vars(args).items() if k in params}, **extra}
