"""Errors that descentlab shows to people.

Every error a user can cause (a missing file, a bad option value, a damaged
checkpoint) is a :class:`DescentlabError`.  Its text is one line that names the
problem and the fix, so the CLI can print it as-is and exit with
:attr:`DescentlabError.exit_code` instead of dumping a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable


class DescentlabError(Exception):
    """Base class for user-facing errors: one line, problem and fix."""

    exit_code: int = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = " ".join(str(message).split())
        self.hint = " ".join(hint.split()) if hint else None
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class ConfigError(DescentlabError, ValueError):
    """An option, hyperparameter or config-file value is invalid."""


class DataError(DescentlabError, ValueError):
    """A dataset is missing, damaged, or does not fit the model."""


class CheckpointError(DescentlabError):
    """A run directory or checkpoint is missing, damaged or incompatible."""


class DivergenceError(DescentlabError):
    """Training produced a non-finite loss, gradient or parameter."""

    exit_code = 3


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate most similar to ``word`` (for "did you mean ...?" hints)."""
    import difflib

    match = difflib.get_close_matches(word, sorted(candidates), n=1, cutoff=0.5)
    return match[0] if match else None


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """A hint naming the closest valid choice, or listing the choices."""
    candidates = list(candidates)
    best = closest(word, candidates)
    if best is not None:
        return f"did you mean {best!r}?"
    return "valid choices: " + ", ".join(sorted(candidates))
