"""The options of one training run: the one declaration, validated, with TOML/JSON files.

`TrainConfig` is the single source of truth for what a run does: the CLI builds
one from flags, a config file or a preset; the Python API builds one from
keyword arguments; the run directory stores it resolved so a run can be
repeated exactly.  Defaults are the Deep Learning Tutorials' logistic
regression on MNIST (``logistic_sgd.py``).

Each field is declared with :func:`descentlab.train.options.option`: its help text,
group, flag and constraints are metadata on the field, and :meth:`TrainConfig.validate`,
the ``descentlab train`` flags and ``docs/cli.md`` are all generated from them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from descentlab.errors import ConfigError, did_you_mean
from descentlab.fsio import atomic_write_text
from descentlab.optim import default_lr
from descentlab.optim.registry import default_lr_text
from descentlab.train.config_files import read_options_table
from descentlab.train.options import (
    CLOSED_UNIT,
    NON_NEGATIVE,
    POSITIVE,
    UNIT,
    DeclaredOption,
    Group,
    Interval,
    Items,
    OneOf,
    check_option,
    declared_options,
    is_list_option,
    option,
)
from descentlab.train.presets import PRESET_HELP, PRESETS, preset

EARLY_STOPPING_MODES = ("tutorial", "epochs", "none")
MONITORS = ("valid_error", "valid_nll", "valid_f1")
ON_NAN = ("stop", "skip-batch", "lr-backoff")
EVAL_STYLES = ("full", "tutorial")
LOG_STYLES = ("descentlab", "tutorial")
OPTIMIZER_DEFAULT = "the optimizer's own"

__all__ = [
    "EARLY_STOPPING_MODES",
    "EVAL_STYLES",
    "FIELD_NAMES",
    "LOG_STYLES",
    "MONITORS",
    "ON_NAN",
    "OPTIONS",
    "PRESETS",
    "PRESET_HELP",
    "TrainConfig",
    "check_key",
    "from_mapping",
    "optimizer_default_lr",
    "preset",
    "read_config_file",
    "register_preset",
    "resolve",
    "save_config",
]

D, M, C, O, S, R, OUT = (
    Group.DATA,
    Group.MODEL,
    Group.COST,
    Group.OPTIMIZER,
    Group.STOPPING,
    Group.RUN,
    Group.OUTPUT,
)


# The declaration table: one entry per option (a declarative table, long by nature).
@dataclass
class TrainConfig:
    """Every option of a training run (field names are the public option names).

    Defaults reproduce the tutorial's ``logistic_sgd.py``: softmax regression on
    MNIST, zero init, SGD lr 0.13 (an unset lr is the optimizer's own default, see
    :func:`optimizer_default_lr`), minibatches of 600 without shuffling,
    patience 5000 iterations, patience increase 2, improvement threshold 0.995.
    """

    # ------------------------------------------------------------ what to train on
    dataset: str = option(
        "mnist",
        group=D,
        help="mnist, fashion-mnist, digits, iris, wine, breast-cancer, "
        "or a .npz/.csv/mnist.pkl.gz path",
    )
    data_dir: str | None = option(
        None,
        group=D,
        help="folder holding mnist/, fashion-mnist/ ...",
        default_text="$DESCENTLAB_DATA, then the user cache, then /usr/share/datasets",
    )
    offline: bool = option(False, group=D, help="never download")
    standardize: bool | None = option(
        None,
        group=D,
        help="zero mean, unit variance per feature (train statistics)",
        default_text="the dataset's: on for tabular data, off for images",
    )
    subset: int | None = option(
        None,
        group=D,
        constraint=POSITIVE,
        help="keep the first N examples of each split",
        default_text="all",
    )
    label_column: str = option("label", group=D, help="label column of a CSV file")
    # 256 is the encoding of the tutorial's mnist.pkl.gz (see data/preprocess.scale_images)
    pixel_scale: float | None = option(
        None,
        group=D,
        constraint=POSITIVE,
        help="MNIST-family pixels k become k/SCALE: 255 gives [0, 1]; 256 the tutorial's "
        "mnist.pkl.gz (the dlt-* presets and plain `descentlab train`)",
        default_text="255",
    )
    # ------------------------------------------------------------------ the model
    model: str = option("logreg", group=M, help="logreg, mlp or lenet")
    hidden: tuple[int, ...] = option(
        (500,),
        group=M,
        constraint=Items(
            Interval(low=1),
            what="hidden sizes must be positive integers",
            hint="e.g. --hidden 500,300",
        ),
        help="hidden layer sizes, e.g. 500,300",
    )
    activation: str = option("tanh", group=M, help="tanh, relu or sigmoid")
    dropout: float = option(0.0, group=M, constraint=UNIT, help="dropout rate on hidden layers")
    batch_norm: bool = option(False, group=M, help="batch normalization")
    init: str | None = option(
        None,
        group=M,
        help="zeros, normal[:std=..], uniform, glorot, he, tutorial[:seed=N], default",
        default_text="the model's (zeros for logreg, as the tutorial)",
    )
    # ----------------------------------- the cost: loss + λ1·Σ|W| + λ2·ΣW² (weights only)
    loss: str = option("nll", group=C, help="nll (cross-entropy) or mse")
    l1: float = option(0.0, group=C, constraint=NON_NEGATIVE, help="λ1 of the L1 penalty λ1·Σ|W|")
    l2: float = option(
        0.0, group=C, constraint=NON_NEGATIVE, help="λ2 of the L2 penalty λ2·ΣW² (in the loss)"
    )
    # ----------------------------------- the optimizer (None = the optimizer's own default)
    optimizer: str = option(
        "sgd",
        group=O,
        help="sgd, momentum, nesterov, adagrad, rmsprop, rmsprop-nesterov, adam, adadelta, "
        "or torch.<Name>",
    )
    lr: float | None = option(
        None,
        group=O,
        constraint=POSITIVE,
        help="learning rate ε",
        default_text="the optimizer's: " + default_lr_text(),
    )
    momentum: float | None = option(
        None, group=O, constraint=UNIT, help="momentum α", default_text=OPTIMIZER_DEFAULT
    )
    rho: float | None = option(
        None,
        group=O,
        constraint=UNIT,
        help="decay rate ρ (RMSProp, AdaDelta)",
        default_text=OPTIMIZER_DEFAULT,
    )
    betas: tuple[float, float] | None = option(
        None,
        group=O,
        constraint=Items(
            UNIT,
            length=2,
            what="betas must be two numbers in [0, 1)",
            hint="e.g. --betas 0.9,0.999",
        ),
        help="Adam's ρ1,ρ2, e.g. 0.9,0.999",
        default_text=OPTIMIZER_DEFAULT,
    )
    eps: float | None = option(
        None,
        group=O,
        constraint=POSITIVE,
        help="δ, the small constant for stability",
        default_text=OPTIMIZER_DEFAULT,
    )
    weight_decay: float | None = option(
        None,
        group=O,
        constraint=NON_NEGATIVE,
        help="decoupled weight decay (NOT the L2 penalty: see --l2)",
        default_text=OPTIMIZER_DEFAULT,
    )
    nesterov: bool | None = option(
        None,
        group=O,
        help="Nesterov momentum for optimizers that take a nesterov switch (torch.SGD)",
        default_text=OPTIMIZER_DEFAULT,
    )
    schedule: str | None = option(
        None,
        group=O,
        help="constant, linear:tau=N,final_ratio=0.01, exp:gamma=G, step:step_size=N,"
        "gamma=G, inv:t0=N, plateau:factor=F,patience=N",
        default_text="constant",
    )
    clip_norm: float | None = option(
        None,
        group=O,
        constraint=POSITIVE,
        help="clip the gradient's global norm",
        default_text="no clipping",
    )
    clip_value: float | None = option(
        None,
        group=O,
        constraint=POSITIVE,
        help="clip each gradient component",
        default_text="no clipping",
    )
    polyak_start: int | None = option(
        None,
        group=O,
        constraint=NON_NEGATIVE,
        help="validate/test with the Polyak average of the iterates from this step",
        default_text="no averaging",
    )
    ema: float | None = option(
        None,
        group=O,
        constraint=Interval(low=0, high=1, low_open=True, high_open=True, hint="e.g. --ema 0.999"),
        help="validate/test with an exponential moving average of the weights",
        default_text="no averaging",
    )
    # ---------------------------------------------------------------- minibatches
    batch_size: int = option(600, group=S, constraint=POSITIVE, help="minibatch size B")
    shuffle: bool = option(
        False,
        group=S,
        help="reshuffle the training set every epoch",
        negation=("--no-shuffle", "visit examples in file order (the tutorial's way)"),
    )
    drop_last: bool = option(
        True,
        group=S,
        flag="--keep-last",
        help="keep the last partial minibatch (the tutorial drops it)",
    )
    # ------------------------------------------------------------------- stopping
    max_epochs: int = option(1000, group=S, constraint=POSITIVE, help="at most this many epochs")
    early_stopping: str = option(
        "tutorial",
        group=S,
        constraint=OneOf(EARLY_STOPPING_MODES),
        help="the early-stopping rule",
    )
    patience: int | None = option(
        None,
        group=S,
        constraint=POSITIVE,
        help="tutorial: minibatch iterations; epochs: epochs",
        default_text="5000 iterations (tutorial), 10 epochs (epochs)",
    )
    patience_increase: float = option(
        2.0, group=S, constraint=POSITIVE, help="tutorial: patience grows to iteration × this"
    )
    improvement_threshold: float = option(
        0.995,
        group=S,
        constraint=(POSITIVE, CLOSED_UNIT),
        help="tutorial: a new best error must be below best × this to extend patience",
    )
    validation_frequency: int | None = option(
        None,
        group=S,
        constraint=POSITIVE,
        help="validate every N minibatches",
        default_text="min(batches/epoch, patience//2)",
    )
    min_delta: float = option(
        0.0, group=S, constraint=NON_NEGATIVE, help="epochs mode: minimum improvement"
    )
    restore_best: bool = option(
        True,
        group=S,
        flag="--no-restore-best",
        help="keep the last weights instead of the best (by validation) at the end",
    )
    monitor: str = option(
        "valid_error",
        group=S,
        constraint=OneOf(MONITORS),
        help="the validation metric early stopping watches",
    )
    target_error: float | None = option(
        None,
        group=S,
        constraint=CLOSED_UNIT,
        help="record when the test error at the best validation point reaches this",
        default_text="no target",
    )
    stop_at_target: bool = option(False, group=S, help="stop once target_error is reached")
    # --------------------------------------------------------------------- faults
    on_nan: str = option(
        "stop", group=S, constraint=OneOf(ON_NAN), help="what a non-finite loss does"
    )
    # ------------------------------------------------------------ the tutorial's ways
    eval_style: str = option(
        "full",
        group=S,
        constraint=OneOf(EVAL_STYLES),
        help="how validation and test are scored (full: the error over the whole split; "
        "tutorial, as the dlt-* presets: the mean of per-minibatch errors over the whole "
        "minibatches of --batch-size)",
    )
    log_style: str = option(
        "descentlab",
        group=S,
        constraint=OneOf(LOG_STYLES),
        help="the console lines' format (tutorial: the tutorial scripts' own lines)",
    )
    # -------------------------------------------------------------- the run itself
    seed: int = option(
        1234,
        group=R,
        constraint=Interval(
            low=0, high=2**63, high_open=True, high_text="2**63", hint="e.g. --seed 1234"
        ),
        help="random seed",
    )
    device: str = option(
        "auto",
        group=R,
        constraint=OneOf(
            ("auto", "cpu", "cuda", "mps"), prefix="cuda:", hint="use auto, cpu, cuda or cuda:N"
        ),
        help="where to train",
    )
    threads: int | None = option(
        None,
        group=R,
        constraint=(POSITIVE, Interval(high=4096, hint="use about the number of CPU cores")),
        help="torch CPU threads (default: 1 for small matrix products, else the free cores)",
        default_text="chosen",
    )
    nproc: int = option(
        1,
        group=R,
        constraint=(POSITIVE, Interval(high=1024, hint="e.g. --nproc 2")),
        help="data-parallel processes launched on this machine (torch.distributed.run); "
        "under torchrun the launcher's WORLD_SIZE is used instead",
    )
    backend: str = option(
        "auto",
        group=R,
        constraint=OneOf(("auto", "gloo", "nccl"), hint="use auto, gloo or nccl"),
        help="torch.distributed backend when data-parallel (auto: nccl on CUDA, else gloo)",
    )
    dist_timeout: float = option(
        300.0,
        group=R,
        constraint=Interval(low=0, low_open=True, hint="e.g. --dist-timeout 300"),
        help="seconds a data-parallel rank waits for the others before the job fails",
    )
    fast_path: bool = option(
        True,
        group=R,
        flag="--no-fast-path",
        help="train dense models by autograd instead of the hand-written backward",
    )
    # Chunks of 1000: each layer's output stays in the CPU's cache (the 784-500 MLP scores
    # 10,000 examples in 0.10 s instead of 0.15 s with one chunk), bitwise the same logits.
    eval_batch_size: int = option(
        1000, group=R, constraint=POSITIVE, help="examples per chunk when evaluating"
    )
    checkpoint_every: int | None = option(
        None,
        group=R,
        constraint=POSITIVE,
        help="also checkpoint every N minibatches (always at each epoch's end)",
        default_text="only at each epoch's end",
    )
    log_grad_norm: bool = option(
        False, group=R, help="log the largest gradient norm between validations"
    )
    diagnostics: int | None = option(
        None,
        group=R,
        constraint=POSITIVE,
        help="every N validations record λmax, its lr bound, ‖g‖, the §8.2.1 ratio and "
        "the noise scale (4,096-example sample) in metrics.jsonl and diagnostics.png",
        default_text="off",
    )
    out: str | None = option(
        None,
        group=OUT,
        cli=False,
        cli_reason="one run's directory: only 'train' takes --out (compare and study "
        "write many runs), declared in cli/train.py",
        help="run directory",
        default_text="runs/<time>-<name>",
    )
    name: str | None = option(
        None,
        group=OUT,
        cli=False,
        cli_reason="names one run: only 'train' takes --name, declared in cli/train.py",
        help="run name used in the default run directory",
        default_text="from the model and dataset",
    )
    quiet: bool = option(False, group=R, help="no per-epoch lines or bars")
    tensorboard: bool = option(
        False, group=R, help="write TensorBoard event files (needs descentlab[tensorboard])"
    )
    # option() returns a dataclasses.field (default_factory=dict), not a shared dict
    extra: dict[str, Any] = option(  # noqa: RUF009
        group=OUT,
        default_factory=dict,
        cli=False,
        cli_reason="free-form data for Python callers and config files, not a flag",
        help="free-form values carried with the run",
        default_text="{}",
    )

    def __post_init__(self) -> None:
        self.validate()
        if self.stop_at_target and self.target_error is None:
            raise ConfigError(
                "stop_at_target needs a target_error to stop at",
                hint="fix: add --target-error RATE (e.g. 0.0165) or drop --stop-at-target",
            )
        if self.lr is None:
            self.lr = optimizer_default_lr(self.optimizer)

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Coerce every option to its declared type, then check its declared constraints.

        Raises ConfigError naming the first invalid option (in declaration order)
        and what is allowed.
        """
        for opt in OPTIONS:
            setattr(self, opt.name, check_option(opt, getattr(self, opt.name)))

    # -------------------------------------------------------------- conversion
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/TOML-able values (tuples as lists; None values kept)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def group(self, group: Group) -> dict[str, Any]:
        """The options of one group, e.g. ``cfg.group(Group.OPTIMIZER)``."""
        return {o.name: getattr(self, o.name) for o in OPTIONS if o.spec.group == group}

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


def optimizer_default_lr(name: str) -> float:
    """The learning rate a run of optimizer ``name`` uses when none is given.

    See :func:`descentlab.optim.default_lr` (the book's, torch's or the tutorial's
    value).  A name the registry does not know (an optimizer object given to
    ``fit``, recorded by its class name) gets the tutorial's 0.13, as before.
    """
    try:
        return default_lr(name)
    except ConfigError:
        return default_lr("sgd")


OPTIONS: tuple[DeclaredOption, ...] = tuple(declared_options(TrainConfig))
OPTIONS_BY_NAME: dict[str, DeclaredOption] = {o.name: o for o in OPTIONS}
FIELD_NAMES: tuple[str, ...] = tuple(o.name for o in OPTIONS)


# ---------------------------------------------------------------------- presets
def register_preset(name: str, options: dict[str, Any], help: str = "") -> None:
    """Add a named preset to :data:`descentlab.train.presets.PRESETS` (keys checked)."""
    PRESETS[name] = {check_key(key, f"preset {name!r}"): value for key, value in options.items()}
    PRESET_HELP[name] = help


# ------------------------------------------------------------------ construction
def _normalize_key(key: str) -> str:
    return key.replace("-", "_")


def check_key(key: str, where: str) -> str:
    """The option name of ``key`` ('-' or '_'); ConfigError with a suggestion if unknown."""
    norm = _normalize_key(key)
    if norm not in OPTIONS_BY_NAME:
        raise ConfigError(
            f"unknown option {key!r} in {where}", hint=did_you_mean(norm, list(FIELD_NAMES))
        )
    return norm


def from_mapping(values: dict[str, Any], *, where: str = "the options") -> TrainConfig:
    """Build a validated config from a flat mapping (keys with '-' or '_')."""
    clean: dict[str, Any] = {}
    for key, value in values.items():
        clean[check_key(key, where)] = value
    return TrainConfig(**clean)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML or JSON config file into a flat mapping of options.

    A TOML file may put the options at the top level or under ``[train]``;
    a ``preset = "..."`` key starts from that preset.
    """
    path = Path(path)
    data = read_options_table(path)
    out: dict[str, Any] = {}
    if "preset" in data:
        out.update(preset(str(data.pop("preset"))))
    for key, value in data.items():
        if isinstance(value, dict) and _normalize_key(key) != "extra":
            raise ConfigError(
                f"unexpected table [{key}] in {str(path)!r}",
                hint="put training options at the top level or under [train]",
            )
        name = check_key(key, str(path))
        declared = OPTIONS_BY_NAME.get(name)
        # A file has real lists; a string for a list is a mistake ("500" vs [500]).
        as_string = isinstance(value, str) and value != "default"
        if as_string and declared is not None and is_list_option(declared.type):
            raise ConfigError(
                f"option {name!r} in {str(path)!r} must be a list, got the string {value!r}",
                hint=f"write {name} = [{value}]",
            )
        out[name] = value
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
        values[check_key(key, "the options")] = value
    return from_mapping(values)


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    """Write the resolved config as TOML (None values are left out: they mean 'default')."""
    data: dict[str, Any] = {}
    for key, value in cfg.to_dict().items():
        if key == "extra":
            continue
        if value is not None:
            data[key] = value
        elif OPTIONS_BY_NAME[key].default is not None:
            # None here means "the optimizer's own default", unlike the field's default
            data[key] = "default"
    if cfg.extra:
        data["extra"] = cfg.extra
    atomic_write_text(path, tomli_w.dumps(data))
