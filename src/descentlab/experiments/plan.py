"""Plans of training runs (grids): which runs a sweep holds, and what each run is called.

A *grid* is a table of option lists, expanded to their Cartesian product; a sweep
may hold the union of several grids (so Adam can get its own learning rates)::

    [grid]                        # or several [[grid]] tables: their union
    optimizer = ["sgd", "adam"]
    lr = [0.01, 0.1]
    batch_size = [20, 128]

    seeds = 3                      # top level: how many seeds (or a list of seeds)
    dataset = "digits"             # top level or [train]: options fixed for every run
    max_epochs = 20

Every key is a :class:`~descentlab.train.TrainConfig` option; a sub-grid may also
carry a ``label`` (a name for its configurations in reports, e.g. ``"L2"``).
Each run's options are validated before anything trains, so a typo fails at once
instead of as forty failed runs.

A run is identified by what it computes: a hash of its resolved options minus the
ones that only say *where* or *how verbosely* it runs (:data:`NON_IDENTITY_OPTIONS`).
Its directory name is that hash behind a readable prefix built from the grid's keys,
so re-running the same sweep finds the same directories (that is what makes a sweep
resumable) and a changed fixed option can never be mistaken for a finished run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from descentlab.errors import ConfigError, did_you_mean
from descentlab.limits import check_count
from descentlab.models import MODEL_NAMES
from descentlab.optim.registry import optimizer_hyperparameters
from descentlab.optim.schedules import parse_schedule_spec
from descentlab.train.config import FIELD_NAMES, TrainConfig, from_mapping, preset

__all__ = [
    "DEFAULT_SELECT_METRIC",
    "LABEL_KEY",
    "NON_IDENTITY_OPTIONS",
    "SweepPlan",
    "config_key",
    "expand_grid",
    "normalize_grid",
    "read_plan_file",
    "run_identity",
    "run_key",
    "run_name",
    "seed_list",
]

#: A sub-grid's display name for its configurations (not a training option).
LABEL_KEY = "label"

#: Options that say where or how a run is carried out, not what it computes: they are
#: left out of a run's identity, so changing ``--jobs`` (hence ``threads``) or the data
#: folder does not invalidate finished runs.
NON_IDENTITY_OPTIONS = frozenset(
    {
        "out",
        "name",
        "quiet",
        "threads",
        "device",
        "data_dir",
        "offline",
        "tensorboard",
        "checkpoint_every",
    }
)

#: What tuning may minimize: validation numbers only.  ``best_valid_error`` is the
#: lowest validation error along the run; ``model_valid_error`` that of the model the
#: run returns (the final one when ``restore_best = false``).
SELECT_METRICS = ("best_valid_error", "model_valid_error", "best_valid_nll")
#: What tuning minimizes unless a plan says otherwise.
DEFAULT_SELECT_METRIC = SELECT_METRICS[0]

# Options a sweep sets itself (per run) and a grid may not vary.
_RESERVED = frozenset({"out", "name", "quiet", "seed"})

# Options whose values name themselves in run directory names ("adam", not "optimizeradam").
_BARE = frozenset({"optimizer", "model", "dataset", "loss"})

# Short names for the readable part of run directory names.
_SHORT = {
    "batch_size": "bs",
    "seed": "s",
    "hidden": "h",
    "dropout": "do",
    "early_stopping": "es",
    "activation": "act",
    "schedule": "sch",
    "max_epochs": "ep",
    "weight_decay": "wd",
    "momentum": "mom",
}


def _normalize_key(key: str, where: str) -> str:
    norm = str(key).replace("-", "_")
    if norm == LABEL_KEY:
        return norm
    if norm not in FIELD_NAMES:
        raise ConfigError(
            f"unknown option {key!r} in {where}",
            hint=did_you_mean(norm, [*FIELD_NAMES, LABEL_KEY]),
        )
    return norm


def normalize_grid(
    grid: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None,
) -> list[dict[str, list[Any]]]:
    """Validate a grid (one table or a list of tables) into a list of ``{option: [values]}``.

    Scalars become one-element lists; keys may use ``-`` or ``_``; ``seed`` is not a
    grid key (seeds are their own setting), nor are ``out``/``name``/``quiet``.
    """
    if grid is None:
        return [{}]
    tables = [grid] if isinstance(grid, Mapping) else list(grid)
    if not tables:
        return [{}]
    out: list[dict[str, list[Any]]] = []
    for i, table in enumerate(tables):
        where = "the grid" if len(tables) == 1 else f"grid table {i + 1}"
        if not isinstance(table, Mapping):
            raise ConfigError(
                f"{where} must be a table of option lists, got {type(table).__name__}",
                hint='e.g. [grid] optimizer = ["sgd", "adam"]',
            )
        clean: dict[str, list[Any]] = {}
        for key, values in table.items():
            norm = _normalize_key(key, where)
            if norm in _RESERVED:
                hint = (
                    "give the number of seeds with --seeds / seeds = N"
                    if norm == "seed"
                    else "the sweep sets it for each run"
                )
                raise ConfigError(f"option {norm!r} cannot be varied in {where}", hint=hint)
            if norm == LABEL_KEY:
                if isinstance(values, list | tuple) and len(values) == 1:
                    values = values[0]  # already normalized
                if not isinstance(values, str) or not values.strip():
                    raise ConfigError(f"label in {where} must be a non-empty string")
                clean[norm] = [values.strip()]
                continue
            vals = list(values) if isinstance(values, list | tuple) else [values]
            if not vals:
                raise ConfigError(
                    f"option {norm!r} in {where} has an empty list of values",
                    hint="give at least one value",
                )
            if norm in clean:
                raise ConfigError(f"option {norm!r} appears twice in {where}")
            clean[norm] = vals
        out.append(clean)
    return out


def seed_list(seeds: int | Sequence[int] | None, *, base: int = 0) -> list[int]:
    """``3`` → ``[base, base + 1, base + 2]``; a list is kept (checked for duplicates)."""
    if seeds is None:
        return [base]
    if isinstance(seeds, bool):
        raise ConfigError(f"seeds must be a count or a list of integers, got {seeds!r}")
    if isinstance(seeds, int):
        if seeds < 1:
            raise ConfigError(
                f"the number of seeds must be >= 1, got {seeds}",
                hint="--seeds 3 runs seeds 0, 1, 2; to run seed 0 alone, --seed 0",
            )
        check_count(seeds, "DESCENTLAB_MAX_RUNS", "number of seeds")
        return [base + i for i in range(seeds)]
    values = list(seeds)
    if not values or not all(isinstance(s, int) and not isinstance(s, bool) for s in values):
        raise ConfigError(f"seeds must be a count or a list of integers, got {seeds!r}")
    if len(set(values)) != len(values):
        raise ConfigError(f"seeds must be distinct, got {values}")
    return values


def run_identity(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options that determine what a run computes (validated, defaults filled in)."""
    cfg = options if isinstance(options, TrainConfig) else from_mapping(dict(options))
    values = cfg.to_dict()
    return {k: v for k, v in values.items() if k not in NON_IDENTITY_OPTIONS}


def run_key(options: Mapping[str, Any]) -> str:
    """A short stable hash of :func:`run_identity` (10 hex digits)."""
    text = json.dumps(run_identity(options), sort_keys=True, default=str)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:10]


def config_key(options: Mapping[str, Any], keys: Iterable[str]) -> tuple[Any, ...]:
    """The values of ``keys`` as a hashable tuple (lists become tuples)."""
    return tuple(_hashable(options.get(k)) for k in keys)


def _hashable(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value


def format_value(value: Any) -> str:
    """Compact text for an option value: ``0.001``, ``1e-05``, ``100x50``, ``sgd``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e6:
            return str(int(value)) if abs(value) >= 1 else repr(value)
        return repr(value)
    if isinstance(value, list | tuple):
        return "x".join(format_value(v) for v in value)
    if value is None:
        return "none"
    return str(value)


_UNSAFE = re.compile(r"[^A-Za-z0-9._=+-]+")


def run_name(options: Mapping[str, Any], name_keys: Sequence[str], label: str | None = None) -> str:
    """``<label>-<optimizer>-lr0.01-bs20-s0-<hash>``: readable, and unique by the hash."""
    parts: list[str] = []
    if label:
        parts.append(label)
    for key in name_keys:
        if key == LABEL_KEY or options.get(key) is None:
            continue
        value = format_value(options[key])
        parts.append(value if key in _BARE else f"{_SHORT.get(key, key)}{value}")
    readable = _UNSAFE.sub("-", "-".join(parts)).strip("-")[:90]
    key = run_key(options)
    return f"{readable}-{key}" if readable else key


def expand_grid(
    grid: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None,
    fixed: Mapping[str, Any] | None = None,
    *,
    seeds: int | Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """All runs of a grid: each sub-grid's Cartesian product × seeds, fixed options added.

    Returns one dict per run holding the fixed options, the grid's values, ``seed`` and,
    when the sub-grid has one, ``label``.  Order: sub-grids in order, then the product in
    the order the keys were given (the last key varies fastest), seeds innermost.
    Duplicate runs (the same options twice, e.g. from overlapping sub-grids) are dropped.
    Every run is validated as a :class:`TrainConfig`.
    """
    tables = normalize_grid(grid)
    base = {_normalize_key(k, "the fixed options"): v for k, v in (fixed or {}).items()}
    for key in ("out", "name"):
        if base.get(key) is not None:
            raise ConfigError(
                f"option {key!r} cannot be fixed for a sweep",
                hint="the sweep names each run directory itself; use --out for the sweep",
            )
    base_seed = base.pop("seed", 0)
    seed_values = seed_list(seeds, base=int(base_seed) if base_seed is not None else 0)
    # Decided from the declared sizes before a single run is built.
    declared = sum(math.prod(len(v) for k, v in t.items() if k != LABEL_KEY) for t in tables)
    check_count(declared * len(seed_values), "DESCENTLAB_MAX_RUNS", "runs in the sweep")
    runs: list[dict[str, Any]] = []
    seen: set[str] = set()
    for table in tables:
        label = table.get(LABEL_KEY, [None])[0]
        keys = [k for k in table if k != LABEL_KEY]
        for combo in itertools.product(*(table[k] for k in keys)):
            for seed in seed_values:
                options = {**base, **dict(zip(keys, combo)), "seed": seed}
                cfg = _validated(options)
                ident = run_key(cfg.to_dict())
                if ident in seen:
                    continue
                seen.add(ident)
                run = {**options}
                if label is not None:
                    run[LABEL_KEY] = label
                runs.append(run)
    return runs


def _validated(options: Mapping[str, Any]) -> TrainConfig:
    """Check one run's options now, including names only the trainer would look up."""
    cfg = from_mapping({k: v for k, v in options.items() if k != LABEL_KEY})
    optimizer_hyperparameters(cfg.optimizer)  # unknown optimizer -> ConfigError
    parse_schedule_spec(cfg.schedule)
    if cfg.model not in MODEL_NAMES:
        raise ConfigError(f"unknown model {cfg.model!r}", hint=did_you_mean(cfg.model, MODEL_NAMES))
    return cfg


def train_options(run: Mapping[str, Any]) -> dict[str, Any]:
    """A run dict without the sweep's own keys (``label``): only TrainConfig options."""
    return {k: v for k, v in run.items() if k != LABEL_KEY}


@dataclasses.dataclass
class SweepPlan:
    """Everything that defines a sweep: grid, fixed options, seeds, what to tune first.

    ``tune`` names options chosen on the validation set before the seeds are run (the
    honest protocol: stage 1 runs the grid with one seed; stage 2 re-runs the best value
    of the tuned options for every other configuration with all seeds).  Empty: every
    grid point is run with every seed.
    """

    grid: list[dict[str, list[Any]]]
    fixed: dict[str, Any]
    seeds: list[int]
    tune: tuple[str, ...] = ()
    title: str | None = None
    study: str | None = None
    select_metric: str = DEFAULT_SELECT_METRIC

    def __post_init__(self) -> None:
        self.grid = normalize_grid(self.grid)
        self.fixed = {_normalize_key(k, "the fixed options"): v for k, v in self.fixed.items()}
        self.tune = tuple(_normalize_key(k, "the tuned options") for k in self.tune)
        self.seeds = seed_list(self.seeds)
        if self.select_metric not in SELECT_METRICS:
            raise ConfigError(
                f"cannot tune on {self.select_metric!r}",
                hint="tune on a validation number: " + ", ".join(SELECT_METRICS),
            )
        for key in self.tune:
            if key == LABEL_KEY:
                raise ConfigError("label cannot be tuned")
            if not any(key in table for table in self.grid):
                raise ConfigError(
                    f"cannot tune {key!r}: it is not in the grid",
                    hint=f"give several values, e.g. [grid] {key} = [...]",
                )

    @classmethod
    def build(
        cls,
        grid: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None,
        fixed: Mapping[str, Any] | None = None,
        *,
        seeds: int | Sequence[int] | None = 1,
        tune: Sequence[str] = (),
        title: str | None = None,
        study: str | None = None,
        select_metric: str = DEFAULT_SELECT_METRIC,
    ) -> SweepPlan:
        fixed = dict(fixed or {})
        base = fixed.pop("seed", 0)
        return cls(
            grid=normalize_grid(grid),
            fixed=fixed,
            seeds=seed_list(seeds, base=int(base or 0)),
            tune=tuple(tune),
            title=title,
            study=study,
            select_metric=select_metric,
        )

    @property
    def name_keys(self) -> list[str]:
        """The grid's keys in order of first appearance, then ``seed``."""
        keys: list[str] = []
        for table in self.grid:
            keys += [k for k in table if k != LABEL_KEY and k not in keys]
        return [*keys, "seed"]

    @property
    def config_keys(self) -> list[str]:
        """What tells configurations apart in a report: label and grid keys, not the seed."""
        keys = [k for k in self.name_keys if k != "seed"]
        has_label = any(LABEL_KEY in t for t in self.grid)
        return [LABEL_KEY, *keys] if has_label else keys

    def runs(self, seeds: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """Every run of the grid with ``seeds`` (default: all the plan's seeds)."""
        return expand_grid(self.grid, self.fixed, seeds=list(seeds or self.seeds))

    def to_dict(self) -> dict[str, Any]:
        return {
            "grid": self.grid,
            "fixed": _jsonable(self.fixed),
            "seeds": self.seeds,
            "tune": list(self.tune),
            "title": self.title,
            "study": self.study,
            "select_metric": self.select_metric,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SweepPlan:
        return cls(
            grid=data.get("grid") or [{}],
            fixed=dict(data.get("fixed") or {}),
            seeds=list(data.get("seeds") or [0]),
            tune=tuple(data.get("tune") or ()),
            title=data.get("title"),
            study=data.get("study"),
            select_metric=data.get("select_metric") or DEFAULT_SELECT_METRIC,
        )

    def digest(self) -> str:
        """A short hash of the plan (used for a default sweep directory name)."""
        text = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]


def _jsonable(values: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in values.items():
        if isinstance(v, tuple):
            v = list(v)
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"option {k!r} must be finite, got {v}")
        out[k] = v
    return out


#: Top-level keys of a sweep file that are sweep settings, not training options.
PLAN_SETTINGS = ("seeds", "tune", "select_lr", "title", "jobs", "preset")


def read_plan_file(path: str | Path) -> tuple[dict[str, Any], list[dict[str, list[Any]]], dict]:
    """Read a sweep TOML file into ``(fixed options, grid tables, settings)``.

    Fixed options sit at the top level or under ``[train]`` (a ``preset = "..."`` key
    starts from that preset); the grid is ``[grid]`` or an array ``[[grid]]``; the
    settings are ``seeds``, ``tune`` (list of options), ``select_lr`` (bool),
    ``title`` and ``jobs``.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sweep file {str(path)!r} does not exist", hint="check the path")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot parse sweep file {str(path)!r}: {exc}", hint="fix the TOML syntax"
        ) from None
    grid = data.pop("grid", None)
    train = data.pop("train", {})
    if not isinstance(train, dict):
        raise ConfigError(f"[train] in {str(path)!r} must be a table of options")
    settings = {k: data.pop(k) for k in PLAN_SETTINGS if k in data}
    fixed: dict[str, Any] = {}
    if "preset" in settings:
        fixed.update(preset(str(settings.pop("preset"))))
    for key, value in {**data, **train}.items():
        if isinstance(value, dict) and key != "extra":
            raise ConfigError(
                f"unexpected table [{key}] in {str(path)!r}",
                hint="use [grid] (or [[grid]]) for varied options and [train] for fixed ones",
            )
        fixed[_normalize_key(key, str(path))] = value
    if grid is not None and not isinstance(grid, dict | list):
        raise ConfigError(f"grid in {str(path)!r} must be a table [grid] or tables [[grid]]")
    return fixed, normalize_grid(grid), settings
