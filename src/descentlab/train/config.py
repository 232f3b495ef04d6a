"""The options of one training run, validated, with presets and TOML/JSON files.

`TrainConfig` is the single source of truth for what a run does: the CLI builds
one from flags, a config file or a preset; the Python API builds one from
keyword arguments; the run directory stores it resolved so a run can be
repeated exactly.  Defaults are the Deep Learning Tutorials' logistic
regression on MNIST (``logistic_sgd.py``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from descentlab.errors import ConfigError, did_you_mean

EARLY_STOPPING_MODES = ("tutorial", "epochs", "none")
EVAL_STYLES = ("full", "tutorial")
LOG_STYLES = ("descentlab", "tutorial")
MONITORS = ("valid_error", "valid_nll", "valid_f1")
ON_NAN = ("stop", "skip-batch", "lr-backoff")


@dataclass
class TrainConfig:
    """Every option of a training run (field names are the public option names).

    Defaults reproduce the tutorial's ``logistic_sgd.py``: softmax regression on
    MNIST, zero init, SGD lr 0.13, minibatches of 600 without shuffling,
    patience 5000 iterations, patience increase 2, improvement threshold 0.995.
    """

    # what to train on
    dataset: str = "mnist"
    data_dir: str | None = None
    offline: bool = False
    standardize: bool | None = None  # None: the dataset's default (tabular: on, images: off)
    subset: int | None = None
    label_column: str = "label"
    # MNIST-family pixels k/pixel_scale; None: 255 ([0, 1]).  The tutorial presets use 256,
    # the encoding of the tutorial's mnist.pkl.gz (see data/preprocess.scale_images).
    pixel_scale: float | None = None
    # the model
    model: str = "logreg"
    hidden: tuple[int, ...] = (500,)
    activation: str = "tanh"
    dropout: float = 0.0
    batch_norm: bool = False
    init: str | None = None
    # the cost: loss + λ1·Σ|W| + λ2·ΣW² (weights only)
    loss: str = "nll"
    l1: float = 0.0
    l2: float = 0.0
    # the optimizer (None = the optimizer's own default)
    optimizer: str = "sgd"
    lr: float | None = 0.13
    momentum: float | None = None
    rho: float | None = None
    betas: tuple[float, float] | None = None
    eps: float | None = None
    weight_decay: float | None = None
    nesterov: bool | None = None
    schedule: str | None = None
    clip_norm: float | None = None
    clip_value: float | None = None
    polyak_start: int | None = None
    ema: float | None = None
    # minibatches
    batch_size: int = 600
    shuffle: bool = False
    drop_last: bool = True
    # stopping
    max_epochs: int = 1000
    early_stopping: str = "tutorial"
    patience: int | None = None  # None: 5000 iterations (tutorial mode), 10 epochs (epochs mode)
    patience_increase: float = 2.0
    improvement_threshold: float = 0.995
    validation_frequency: int | None = None
    min_delta: float = 0.0
    restore_best: bool = True
    monitor: str = "valid_error"
    target_error: float | None = None
    # faults
    on_nan: str = "stop"
    # the run itself
    seed: int = 1234
    device: str = "auto"
    threads: int | None = None
    fast_path: bool = True  # hand-written backward for dense models (train/fast.py)
    eval_batch_size: int = 10000
    # "full": error over every example of the split; "tutorial": the mean of per-minibatch
    # error rates over the whole minibatches of batch_size (train/tutorial_eval.py).
    eval_style: str = "full"
    # console lines: descentlab's own, or the tutorial scripts' (train/tutorial_log.py)
    log_style: str = "descentlab"
    checkpoint_every: int | None = None
    log_grad_norm: bool = False
    out: str | None = None
    name: str | None = None
    quiet: bool = False
    tensorboard: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise ConfigError naming the first invalid option and what is allowed."""
        _coerce_types(self)

        def positive(name: str) -> None:
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(
                    f"{name} must be > 0, got {value}", hint=f"pass a positive --{_flag(name)}"
                )

        def unit_interval(name: str, *, closed_high: bool = False) -> None:
            value = getattr(self, name)
            if value is None:
                return
            ok = 0 <= value <= 1 if closed_high else 0 <= value < 1
            if not ok:
                bound = "[0, 1]" if closed_high else "[0, 1)"
                raise ConfigError(
                    f"{name} must be in {bound}, got {value}", hint=f"fix --{_flag(name)}"
                )

        for name in (
            "lr",
            "batch_size",
            "max_epochs",
            "patience",
            "eps",
            "eval_batch_size",
            "clip_norm",
            "clip_value",
            "checkpoint_every",
            "validation_frequency",
            "threads",
            "subset",
            "pixel_scale",
            "patience_increase",
            "improvement_threshold",
        ):
            positive(name)
        for name in ("momentum", "rho", "dropout"):
            unit_interval(name)
        for name in ("target_error", "improvement_threshold"):
            unit_interval(name, closed_high=True)
        if self.ema is not None and not 0 < self.ema < 1:
            raise ConfigError(f"ema must be in (0, 1), got {self.ema}", hint="e.g. --ema 0.999")
        if self.betas is not None and (
            len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas)
        ):
            raise ConfigError(
                f"betas must be two numbers in [0, 1), got {self.betas}",
                hint="e.g. --betas 0.9,0.999",
            )
        for name in ("l1", "l2", "min_delta", "weight_decay"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise ConfigError(f"{name} must be >= 0, got {value}", hint=f"fix --{_flag(name)}")
        if not 0 <= self.seed < 2**63:
            raise ConfigError(
                f"seed must be in [0, 2**63), got {self.seed}", hint="e.g. --seed 1234"
            )
        if self.threads is not None and self.threads > 4096:
            raise ConfigError(
                f"threads must be at most 4096, got {self.threads}",
                hint="use about the number of CPU cores",
            )
        if self.polyak_start is not None and self.polyak_start < 0:
            raise ConfigError(f"polyak_start must be >= 0, got {self.polyak_start}")
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ConfigError(
                f"hidden sizes must be positive integers, got {self.hidden}",
                hint="e.g. --hidden 500,300",
            )
        for name, allowed in (
            ("early_stopping", EARLY_STOPPING_MODES),
            ("monitor", MONITORS),
            ("on_nan", ON_NAN),
            ("eval_style", EVAL_STYLES),
            ("log_style", LOG_STYLES),
        ):
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(f"unknown {name} {value!r}", hint=did_you_mean(value, allowed))
        if not (self.device in ("auto", "cpu", "cuda", "mps") or self.device.startswith("cuda:")):
            raise ConfigError(
                f"unknown device {self.device!r}", hint="use auto, cpu, cuda or cuda:N"
            )

    # -------------------------------------------------------------- conversion
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/TOML-able values (tuples as lists; None values kept)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some options changed (validated)."""
        return from_mapping({**self.to_dict(), **changes})

    @property
    def effective_patience(self) -> int:
        """``patience`` with its per-mode default filled in (iterations or epochs)."""
        if self.patience is not None:
            return self.patience
        return 5000 if self.early_stopping == "tutorial" else 10

    def optimizer_hparams(self) -> dict[str, Any]:
        """The optimizer hyperparameters that were set (None means 'the optimizer's default')."""
        names = ("lr", "momentum", "rho", "betas", "eps", "weight_decay", "nesterov")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}


def _flag(name: str) -> str:
    return name.replace("_", "-")


FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TrainConfig))


def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def _coerce_types(cfg: TrainConfig) -> None:
    """Accept the obvious spellings (ints for floats, lists for tuples); refuse the rest."""
    hints = _field_types()
    for f in dataclasses.fields(cfg):
        setattr(cfg, f.name, _coerce(f.name, getattr(cfg, f.name), hints[f.name]))


def _coerce(name: str, value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        # TOML has no null: save_config writes "default" for a numeric option left unset
        if value == "default" and type(None) in args and inner[0] is not str:
            return None
        return _coerce(name, value, inner[0])
    bad = ConfigError(
        f"option {name!r} has the wrong type: {value!r}", hint=f"expected {_type_name(hint)}"
    )
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise bad
    if hint is int:
        if isinstance(value, bool):
            raise bad
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
    if hint is float:
        if isinstance(value, bool):
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
    if hint is str:
        if not isinstance(value, str):
            raise bad
        return value
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.replace(" ", "").split(",") if v]
        if not isinstance(value, list | tuple):
            value = [value]
        elem = args[0]
        return tuple(_coerce(name, v, elem) for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise bad
        return dict(value)
    return value


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is tuple:
        return "a comma-separated list"
    return getattr(hint, "__name__", str(hint))


# ---------------------------------------------------------------------- presets
# What every tutorial preset shares: the pixels of mnist.pkl.gz (k/256) and the
# tutorial's scoring (mean of per-minibatch errors over whole minibatches).
TUTORIAL_DATA_AND_SCORING: dict[str, Any] = {"pixel_scale": 256.0, "eval_style": "tutorial"}

PRESETS: dict[str, dict[str, Any]] = {
    # logistic_sgd.py (zero weights: the models' default init for logreg)
    "dlt-logreg": {**TUTORIAL_DATA_AND_SCORING},
    # mlp.py: 500 tanh hidden units, L2 1e-4, minibatches of 20
    "dlt-mlp": {
        "model": "mlp",
        "hidden": (500,),
        "activation": "tanh",
        "lr": 0.01,
        "l1": 0.0,
        "l2": 1e-4,
        "batch_size": 20,
        "patience": 10000,
        "max_epochs": 1000,
        "init": "tutorial:seed=1234",
        **TUTORIAL_DATA_AND_SCORING,
    },
    # convolutional_mlp.py (LeNet5): 20 and 50 kernels, 500 hidden units
    "dlt-lenet": {
        "model": "lenet",
        "hidden": (500,),
        "activation": "tanh",
        "lr": 0.1,
        "batch_size": 500,
        "max_epochs": 200,
        "patience": 10000,
        "init": "tutorial:seed=23455",
        **TUTORIAL_DATA_AND_SCORING,
    },
}

PRESET_HELP: dict[str, str] = {
    "dlt-logreg": "the tutorial's logistic regression (7.5% test error)",
    "dlt-mlp": "the tutorial's 500-tanh MLP with L2 (1.65% after 828 epochs)",
    "dlt-lenet": "the tutorial's LeNet convnet (0.9% test error)",
}


def register_preset(name: str, options: dict[str, Any], help: str = "") -> None:
    """Add a named preset (used by the fast-MNIST preset and by users)."""
    for key in options:
        _check_key(key, f"preset {name!r}")
    PRESETS[name] = dict(options)
    PRESET_HELP[name] = help


def preset(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}", hint=did_you_mean(name, list(PRESETS)))
    return dict(PRESETS[name])


# ------------------------------------------------------------------ construction
def _normalize_key(key: str) -> str:
    return key.replace("-", "_")


def _check_key(key: str, where: str) -> str:
    norm = _normalize_key(key)
    if norm not in FIELD_NAMES:
        raise ConfigError(
            f"unknown option {key!r} in {where}", hint=did_you_mean(norm, list(FIELD_NAMES))
        )
    return norm


def from_mapping(values: dict[str, Any], *, where: str = "the options") -> TrainConfig:
    """Build a validated config from a flat mapping (keys with '-' or '_')."""
    clean: dict[str, Any] = {}
    for key, value in values.items():
        clean[_check_key(key, where)] = value
    return TrainConfig(**clean)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML or JSON config file into a flat mapping of options.

    A TOML file may put the options at the top level or under ``[train]``;
    a ``preset = "..."`` key starts from that preset.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"config file {str(path)!r} does not exist", hint="check the --config path"
        )
    text = path.read_bytes()
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            data = tomllib.loads(text.decode("utf-8"))
    except RecursionError:
        raise ConfigError(
            f"config file {str(path)!r} is nested too deeply",
            hint="a config file is a flat table of options",
        ) from None
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot parse config file {str(path)!r}: {exc}", hint="fix the file's syntax"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a table of options")
    if "train" in data and isinstance(data["train"], dict):
        rest = {k: v for k, v in data.items() if k != "train"}
        data = {**rest, **data["train"]}
    out: dict[str, Any] = {}
    if "preset" in data:
        out.update(preset(str(data.pop("preset"))))
    for key, value in data.items():
        if isinstance(value, dict) and _normalize_key(key) != "extra":
            raise ConfigError(
                f"unexpected table [{key}] in {str(path)!r}",
                hint="put training options at the top level or under [train]",
            )
        out[_check_key(key, str(path))] = value
    return out


def resolve(
    *,
    preset_name: str | None = None,
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> TrainConfig:
    """Preset, then config file, then explicit overrides (later wins)."""
    values: dict[str, Any] = {}
    if preset_name:
        values.update(preset(preset_name))
    if config_file:
        values.update(read_config_file(config_file))
    for key, value in (overrides or {}).items():
        values[_check_key(key, "the options")] = value
    return from_mapping(values)


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    """Write the resolved config as TOML (None values are left out: they mean 'default')."""
    import tomli_w

    defaults = TrainConfig.__dataclass_fields__
    data: dict[str, Any] = {}
    for key, value in cfg.to_dict().items():
        if key == "extra":
            continue
        if value is not None:
            data[key] = value
        elif defaults[key].default is not None:
            # None here means "the optimizer's own default", unlike the field's default
            data[key] = "default"
    if cfg.extra:
        data["extra"] = cfg.extra
    Path(path).write_text(tomli_w.dumps(data), encoding="utf-8")
