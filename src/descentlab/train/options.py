"""How a training option is declared: ``option(...)`` metadata, groups and constraints.

Every option of a run is one field of :class:`descentlab.train.config.TrainConfig`
declared with :func:`option`.  Its metadata -- help text, group, command-line flag,
constraints, how an unset default reads -- is the single declaration that the
validation (:func:`check_option`), the ``descentlab train`` flags
(``descentlab.cli.train.add_train_options``) and ``docs/cli.md`` are generated
from, in the spirit of scikit-learn's ``_parameter_constraints``.

The value's *type* is the field's annotation (``float | None``, ``tuple[int, ...]``):
:func:`coerce` accepts the obvious spellings of it (ints for floats, lists or
``"500,300"`` for tuples, ``"true"`` for booleans) and refuses the rest.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from descentlab.errors import ConfigError, did_you_mean

METADATA_KEY = "descentlab.option"


class Group(StrEnum):
    """The option groups; each value is the group's title in ``--help`` and docs/cli.md."""

    DATA = "data"
    MODEL = "model"
    COST = "cost"
    OPTIMIZER = "optimizer"
    STOPPING = "minibatches and stopping"
    RUN = "run"
    OUTPUT = "output"


# ------------------------------------------------------------------ constraints
class Constraint:
    """One rule a value must follow; ``check`` raises ConfigError naming the option."""

    def check(self, name: str, value: Any, flag: str) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        """A short phrase for help texts ("> 0", "one of a, b")."""
        return ""


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


@dataclass(frozen=True)
class Interval(Constraint):
    """``low < value`` / ``low <= value`` and ``value < high`` / ``value <= high``.

    With only ``low``: "must be > low" (``low_open``) or ">= low"; with only
    ``high``: "must be at most high"; with both: "must be in [low, high)".
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    high_text: str | None = None  # how the upper bound reads (e.g. 2**63)
    hint: str | None = None

    def contains(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (
            self.high is not None and (value >= self.high if self.high_open else value > self.high)
        )

    def describe(self) -> str:
        high = self.high_text or (_num(self.high) if self.high is not None else "")
        if self.high is None and self.low is not None:
            return f"{'>' if self.low_open else '>='} {_num(self.low)}"
        if self.low is None:
            return f"at most {high}"
        assert self.low is not None
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"in {left}{_num(self.low)}, {high}{right}"

    def check(self, name: str, value: Any, flag: str) -> None:
        if value is None or self.contains(value):
            return
        if self.hint:
            hint = self.hint
        elif self.high is None and self.low == 0 and self.low_open:
            hint = f"pass a positive {flag}"
        else:
            hint = f"fix {flag}"
        raise ConfigError(f"{name} must be {self.describe()}, got {value}", hint=hint)


@dataclass(frozen=True)
class Items(Constraint):
    """Every item of a tuple lies in ``each``; optionally exactly ``length`` items."""

    each: Interval
    what: str  # the whole message before ", got ...", e.g. "betas must be two numbers in [0, 1)"
    hint: str
    length: int | None = None

    def check(self, name: str, value: Any, flag: str) -> None:
        if value is None:
            return
        ok = bool(value) and all(self.each.contains(v) for v in value)
        if not ok or (self.length is not None and len(value) != self.length):
            raise ConfigError(f"{self.what}, got {value}", hint=self.hint)

    def describe(self) -> str:
        return ""


@dataclass(frozen=True)
class OneOf(Constraint):
    """One of ``choices`` (or, when ``prefix`` is set, any text starting with it)."""

    choices: tuple[str, ...]
    prefix: str | None = None
    hint: str | None = None

    def check(self, name: str, value: Any, flag: str) -> None:
        if value is None or value in self.choices:
            return
        if self.prefix and isinstance(value, str) and value.startswith(self.prefix):
            return
        hint = self.hint or did_you_mean(value, self.choices)
        raise ConfigError(f"unknown {name} {value!r}", hint=hint)

    def describe(self) -> str:
        names = [*self.choices, *([f"{self.prefix}N"] if self.prefix else [])]
        return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]


POSITIVE = Interval(low=0, low_open=True)
NON_NEGATIVE = Interval(low=0)
UNIT = Interval(low=0, high=1, high_open=True)  # [0, 1)
CLOSED_UNIT = Interval(low=0, high=1)  # [0, 1]


# ---------------------------------------------------------------- the metadata
@dataclass(frozen=True)
class OptionSpec:
    """What :func:`option` records about one option (the field holds name, type, default)."""

    help: str
    group: Group
    constraints: tuple[Constraint, ...] = ()
    flag: str | None = None  # default: --name-with-dashes
    metavar: str | None = None
    parse: Any = None  # a text -> value function for the flag (default: from the type)
    cli: bool = True
    cli_reason: str = ""  # why an option has no generated flag
    negation: tuple[str, str] | None = None  # a second switch (flag, help) setting the opposite
    default_text: str | None = None  # how an unset (None) default reads in help texts


def option(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    group: Group,
    constraint: Constraint | Sequence[Constraint] = (),
    flag: str | None = None,
    metavar: str | None = None,
    parse: Any = None,
    cli: bool = True,
    cli_reason: str = "",
    negation: tuple[str, str] | None = None,
    default_text: str | None = None,
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field carrying its option declaration as metadata.

    ``flag`` may name a switch for a boolean (``--keep-last`` sets ``drop_last``
    to the opposite of its default ``True``); ``negation`` adds the opposite switch.
    """
    constraints = (constraint,) if isinstance(constraint, Constraint) else tuple(constraint)
    if not cli and not cli_reason:
        raise ValueError("an option without a flag must say why (cli_reason)")
    spec = OptionSpec(
        help=help,
        group=group,
        constraints=constraints,
        flag=flag,
        metavar=metavar,
        parse=parse,
        cli=cli,
        cli_reason=cli_reason,
        negation=negation,
        default_text=default_text,
    )
    metadata = {METADATA_KEY: spec}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(frozen=True)
class DeclaredOption:
    """One option as the CLI, the docs and the validation see it."""

    name: str
    type: Any
    default: Any
    spec: OptionSpec

    @property
    def flag(self) -> str:
        return self.spec.flag or "--" + self.name.replace("_", "-")

    @property
    def is_switch(self) -> bool:
        """A boolean option: its flag takes no value."""
        return bool in _inner_types(self.type)

    @property
    def switch_value(self) -> bool:
        """The value the (first) switch sets: the opposite of a True default."""
        return self.default is not True

    def flags(self) -> list[str]:
        return [self.flag, *([self.spec.negation[0]] if self.spec.negation else [])]

    def default_phrase(self, value: Any = dataclasses.MISSING) -> str:
        """How the default reads in help: the declared value, or ``default_text`` for None."""
        if value is dataclasses.MISSING:
            value = self.default
        if value is None:
            return self.spec.default_text or "unset"
        if isinstance(value, tuple):
            return ",".join(str(v) for v in value)
        return str(value)

    def description(self) -> str:
        """The declared help, with the allowed choices when a constraint lists them."""
        choices = [c.describe() for c in self.spec.constraints if isinstance(c, OneOf)]
        return f"{self.spec.help}: {choices[0]}" if choices else self.spec.help

    def help_text(self, *, negated: bool = False) -> str:
        """The flag's help: the declared text and the declared default."""
        if not self.is_switch:
            return f"{self.description()} (default: {self.default_phrase()})"
        text = self.spec.help
        sets = self.switch_value
        if negated:
            assert self.spec.negation is not None
            text, sets = self.spec.negation[1], not sets
        if self.default is None:
            return f"{text} (default: {self.default_phrase()})"
        return f"{text} (default: {'on' if self.default == sets else 'off'})"


def declared_options(cls: type) -> list[DeclaredOption]:
    """The options of a dataclass declared with :func:`option`, in declaration order."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        spec = f.metadata.get(METADATA_KEY)
        if spec is None:
            raise TypeError(f"{cls.__name__}.{f.name} is not declared with option(...)")
        default = f.default
        if default is dataclasses.MISSING and f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        out.append(DeclaredOption(f.name, hints[f.name], default, spec))
    return out


def check_option(opt: DeclaredOption, value: Any) -> Any:
    """The value coerced to the option's type and checked against its constraints."""
    value = coerce(opt.name, value, opt.type)
    for constraint in opt.spec.constraints:
        constraint.check(opt.name, value, opt.flag)
    return value


# -------------------------------------------------------------------- coercion
def _inner_types(hint: Any) -> tuple[Any, ...]:
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        return tuple(a for a in typing.get_args(hint) if a is not type(None))
    return (hint,)


def value_type(hint: Any) -> Any:
    """The annotation without its ``| None``."""
    return _inner_types(hint)[0]


def is_list_option(hint: Any) -> bool:
    """Whether an option's type is a list (a tuple annotation, maybe ``| None``)."""
    return typing.get_origin(value_type(hint)) is tuple


def parse_list(name: str, text: str, item: Any) -> tuple[Any, ...]:
    """``a,b,c`` as a tuple of ``item`` values, strictly (the command line's list flags)."""
    return _sequence(name, text, item)


def _sequence(name: str, value: Any, item: Any) -> tuple[Any, ...]:
    """A list-typed option: a list (config files, Python) or ``a,b,c`` (the command line).

    Strict, so that a typo never silently changes the value: no empty items (``10,,10``).
    (Config files must write lists as lists: :func:`~descentlab.train.config.read_config_file`.)
    A single number is accepted as a one-element list.
    """
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
        if not value.strip() or any(not v for v in items):
            raise ConfigError(
                f"option {name!r} has an empty item in {value!r}",
                hint="give comma-separated values with nothing empty between commas, e.g. 500,300",
            )
        value = items
    if not isinstance(value, list | tuple):
        value = [value]
    return tuple(coerce(name, v, item) for v in value)


def coerce(name: str, value: Any, hint: Any) -> Any:
    """Accept the obvious spellings (ints for floats, lists for tuples); refuse the rest."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        # TOML has no null: save_config writes "default" for a numeric option left unset
        if value == "default" and type(None) in args and inner[0] is not str:
            return None
        return coerce(name, value, inner[0])
    bad = ConfigError(
        f"option {name!r} has the wrong type: {value!r}", hint=f"expected {type_name(hint)}"
    )
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise bad
    if hint is int or hint is float:
        return _number(name, value, hint, bad)
    if hint is str:
        if not isinstance(value, str):
            raise bad
        return value
    if origin is tuple:
        return _sequence(name, value, args[0])
    if origin is dict:
        if not isinstance(value, dict):
            raise bad
        return dict(value)
    return value


def _number(name: str, value: Any, hint: type, bad: ConfigError) -> Any:
    if isinstance(value, bool | np.bool_):
        raise bad
    if isinstance(value, np.integer):
        value = int(value)  # numpy scalars are numbers too (seed=np.int64(3))
    elif isinstance(value, np.floating):
        value = float(value)
    if hint is int:
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                raise bad from None
        raise bad
    if isinstance(value, int | float):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value)
        except ValueError:
            raise bad from None
    else:
        raise bad
    if not math.isfinite(result):
        raise ConfigError(f"option {name!r} must be finite, got {value!r}")
    return result


def type_name(hint: Any) -> str:
    if typing.get_origin(hint) is tuple:
        return "a comma-separated list"
    return getattr(hint, "__name__", str(hint))
