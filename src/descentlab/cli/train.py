"""``descentlab train | evaluate | predict | datasets``.

The training flags are generated from the option declaration in
:mod:`descentlab.train.config` (``TrainConfig``'s field metadata): names, help,
defaults, groups and value types come from there, never from this file.
"""

from __future__ import annotations

import argparse
import json
import sys
import typing
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from descentlab.cli.common import add_command, add_flags
from descentlab.data import describe_datasets
from descentlab.data.features import read_features
from descentlab.errors import CheckpointError, ConfigError
from descentlab.train import evaluate, fit, load_run
from descentlab.train.config import OPTIONS, TrainConfig, from_mapping, read_config_file, resolve
from descentlab.train.distributed import env_is_main, env_world_size, launch_local
from descentlab.train.options import DeclaredOption, Group, parse_list, value_type
from descentlab.train.presets import preset_names
from descentlab.train.run_dir import default_run_dir
from descentlab.train.trainer import load_data

S = argparse.SUPPRESS  # absent flags stay absent, so presets and config files are not overridden


def flag_type(opt: DeclaredOption) -> Any:
    """The text -> value function of an option's flag, from its declared type."""
    if opt.spec.parse is not None:
        return opt.spec.parse
    hint = value_type(opt.type)
    if typing.get_origin(hint) is tuple:
        # The option declaration's own strict parser (no empty items, typed values).
        item = typing.get_args(hint)[0]

        def parse(text: str) -> tuple[Any, ...]:
            try:
                return parse_list(opt.name, text, item)
            except ConfigError as exc:
                raise argparse.ArgumentTypeError(str(exc)) from None

        return parse
    return {int: int, float: float}.get(hint)  # str: no conversion


def cli_options() -> list[DeclaredOption]:
    """The declared options that get a generated flag."""
    return [o for o in OPTIONS if o.spec.cli]


def add_train_options(p: argparse.ArgumentParser) -> None:
    """The options of a training run (shared by train, compare and study).

    Generated from the declaration: one argument group per option group, one flag
    per option (two for a switch with a negation), help ending in the declared
    default.  Values are not checked here: the config's validation does that, so a
    bad value reads the same from the command line, a config file or Python.
    """
    groups: dict[Group, Any] = {}
    for opt in cli_options():
        group = groups.get(opt.spec.group)
        if group is None:
            group = groups[opt.spec.group] = p.add_argument_group(opt.spec.group.value)
        if opt.is_switch:
            group.add_argument(
                opt.flag,
                dest=opt.name,
                action="store_true" if opt.switch_value else "store_false",
                default=S,
                help=opt.help_text(),
            )
            if opt.spec.negation:
                group.add_argument(
                    opt.spec.negation[0],
                    dest=opt.name,
                    action="store_false" if opt.switch_value else "store_true",
                    default=S,
                    help=opt.help_text(negated=True),
                )
            continue
        group.add_argument(
            opt.flag,
            dest=opt.name,
            type=flag_type(opt),
            metavar=opt.spec.metavar,
            default=S,
            help=opt.help_text(),
        )


TRAIN_OPTION_NAMES = frozenset(o.name for o in cli_options())
FLAG_OF = {o.name: "/".join(o.flags()) for o in cli_options()}


def options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The training options given explicitly on the command line."""
    return {k: v for k, v in vars(args).items() if k in TRAIN_OPTION_NAMES}


DEFAULT_PRESET = "dlt-logreg"


def cmd_train(args: argparse.Namespace) -> int:
    """Train a classifier with minibatch SGD and early stopping. On MNIST with neither
    --preset nor --config: the preset dlt-logreg, the Deep Learning Tutorials' logistic
    regression on MNIST (lr 0.13, batch 600, patience 5000, pixels k/256, tutorial
    scoring); it ends at 7.500000% validation, 7.489583% test error after 74 epochs, as
    the tutorial does."""
    overrides = options_from_args(args)
    resume_dir = getattr(args, "resume", None) or getattr(args, "resume_previous", None)
    if resume_dir:
        _check_resume_args(args, overrides)
        run = Path(resume_dir)
        if not (run / "config.toml").is_file():
            raise CheckpointError(
                f"{run} is not a descentlab run directory (no config.toml)",
                hint="pass the run directory printed when training started",
            )
        values = read_config_file(run / "config.toml")
        values.update({k: v for k, v in overrides.items() if k in RESUME_OPTIONS})
        values["out"] = str(run)
        cfg = from_mapping(values)
        if cfg.extra.get("in_memory_dataset"):
            raise CheckpointError(
                f"{run} was trained on an in-memory dataset that the command line cannot rebuild",
                hint="resume it from Python: descentlab.fit(data=<the same Dataset>, "
                "config=..., resume=True)",
            )
        if cfg.nproc > 1 and env_world_size() <= 1:
            return _launch(args.argv, cfg.nproc, cfg.out)
        return _report(fit(config=cfg, resume=True, resume_previous=bool(args.resume_previous)))
    if getattr(args, "out", None) is not None:
        overrides["out"] = args.out
    if getattr(args, "name", None) is not None:
        overrides["name"] = args.name
    preset_name = getattr(args, "preset", None)
    config_file = getattr(args, "config", None)
    if config_file and "out" not in overrides:
        # a run's own config.toml names its directory: re-running it makes a new one
        overrides["out"] = None
    if preset_name is None and config_file is None and overrides.get("dataset", "mnist") == "mnist":
        # Plain `descentlab train` is the tutorial's logreg, exactly (pixels k/256, the
        # tutorial's scoring); on other data it is `fit(**options)` with fit's defaults.
        preset_name = DEFAULT_PRESET
    cfg = resolve(preset_name=preset_name, config_file=config_file, overrides=overrides)
    if cfg.out is None:
        if env_world_size() > 1:
            raise ConfigError(
                "under torchrun every rank must name the same run directory",
                hint="pass --out RUN_DIR (descentlab train --nproc N chooses one for you)",
            )
        cfg = cfg.replace(out=str(default_run_dir(cfg)))
    if cfg.nproc > 1 and env_world_size() <= 1:
        _announce(cfg, f" on {cfg.nproc} data-parallel processes")
        return _launch(args.argv, cfg.nproc, cfg.out)
    # The first console line (what, on how many threads and why, where) is the
    # ConsoleLogger's: the thread count is chosen once the model is built.
    return _report(fit(config=cfg))


def _announce(cfg: TrainConfig, how: str = "") -> None:
    if not cfg.quiet:
        print(
            f"descentlab: training {cfg.model} on {cfg.dataset} with {cfg.optimizer} "
            f"(lr {cfg.lr}, batch {cfg.batch_size}){how}; run directory {cfg.out}",
            flush=True,
        )


def _launch(argv: list[str], nproc: int, out: str | None) -> int:
    """``descentlab train --nproc N``: the same command as N ranks under torch's launcher.

    The ranks get this command line (they see WORLD_SIZE and do not launch again) plus
    the run directory chosen here, so that all of them use the same one.
    """
    argv = list(argv)
    named = any(a in ("--out", "--resume", "--resume-previous") or a.startswith("--out=")
                for a in argv)  # fmt: skip
    if not named and out:
        argv += ["--out", out]
    return launch_local(nproc, argv)


# may differ from the interrupted run
RESUME_OPTIONS = ("quiet", "device", "threads", "log_style", "nproc", "backend", "dist_timeout")


def _check_resume_args(args: argparse.Namespace, overrides: dict[str, Any]) -> None:
    """A resumed run continues with its own config.toml: refuse options it would ignore."""

    if getattr(args, "resume", None) and getattr(args, "resume_previous", None):
        raise ConfigError(
            "--resume and --resume-previous cannot be combined",
            hint="pass only --resume-previous RUN_DIR to continue from the older checkpoint",
        )
    given = [FLAG_OF[k] for k in overrides if k not in RESUME_OPTIONS]
    given += [f"--{k}" for k in ("config", "preset", "out", "name") if getattr(args, k, None)]
    if given:
        raise ConfigError(
            f"{', '.join(sorted(given))} cannot be given with --resume: the run continues "
            "with the options in its config.toml",
            hint="drop them; only --quiet, --device, --threads, --log-style, --nproc, --backend "
            "and --dist-timeout may change on resume",
        )


def _report(result: Any) -> int:
    if not env_is_main():
        return 0
    s = result.summary
    test = s.get("test_error")
    valid = s.get("best_valid_error")
    print(
        f"best validation error {100 * valid:.3f}% at epoch {s['best_epoch']} "
        f"(iteration {s['best_iteration'] + 1}); test error at that point {100 * test:.3f}%; "
        f"{epochs_phrase(s)} in {s['train_seconds']:.1f}s "
        f"({s['seconds_per_epoch']:.3f}s/epoch); stopped by {s['stopped_because']}"
    )
    if result.run_dir is not None:
        print(f"run directory: {result.run_dir}")
    return 0


def epochs_phrase(summary: Any) -> str:
    """ "1 epoch", "171 epochs", or "171 epochs and 63 minibatches of epoch 172".

    A run stopped inside an epoch counts it in ``epochs_run``, but that epoch never
    printed its line; the phrase says so rather than promise a line that is not there.
    """
    epochs, iterations = int(summary["epochs_run"]), int(summary.get("iterations") or 0)
    per_epoch = int(summary.get("n_train") or 0) // max(int(summary.get("batch_size") or 1), 1)
    full = epochs
    extra = 0
    if per_epoch and iterations < epochs * per_epoch and epochs > 0:
        full = iterations // per_epoch
        extra = iterations - full * per_epoch
    text = f"{full} epoch{'' if full == 1 else 's'}"
    if extra:
        text += f" and {extra} minibatch{'' if extra == 1 else 'es'} of epoch {full + 1}"
    return text


def cmd_evaluate(args: argparse.Namespace) -> int:
    run = load_run(args.run_dir)
    cfg = run.config
    data = load_data(
        cfg, dataset=args.dataset or cfg.dataset, data_dir=args.data_dir or cfg.data_dir
    )
    run.check_data(data)
    split = getattr(data, args.split)
    result = evaluate(run.model, split, n_classes=data.n_classes)

    # experiments.stats pulls in scipy.stats (seconds to import): every `train` rank
    # would pay for it, so only `evaluate` imports it.
    from descentlab.experiments.stats import wilson_interval

    low, high = wilson_interval(result.n_errors, result.n)
    row = {
        "run": str(run.path),
        "split": args.split,
        "n": result.n,
        "error": result.error,
        "errors": result.n_errors,
        "error_95ci": [low, high],
        "nll": result.nll,
        "macro_f1": result.f1,
    }
    if args.json:
        print(json.dumps(row))
    else:
        print(
            f"{args.split}: error {100 * result.error:.3f}% ({result.n_errors}/{result.n}, "
            f"95% CI {100 * low:.2f}–{100 * high:.2f}%), NLL {result.nll:.4f}, "
            f"macro-F1 {result.f1:.4f}"
        )
    return 0


def cmd_predict(args: argparse.Namespace) -> int:

    run = load_run(args.run_dir)
    x = read_features(args.file, label_column=run.config.label_column)
    scaled = {"auto": None, "raw": False, "scaled": True}[args.inputs]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        proba = run.predict_proba(torch.from_numpy(x), scaled=scaled)
    for w in caught:
        print(f"descentlab: note: {w.message}", file=sys.stderr)
    pred = proba.argmax(dim=1).numpy()
    names = run.metadata.get("class_names")
    if args.output:
        np.savetxt(args.output, pred, fmt="%d")
        print(f"wrote {len(pred)} predictions to {args.output}")
    else:
        for i, k in enumerate(pred):
            label = names[k] if names else str(k)
            print(f"{i}\t{label}\t{float(proba[i, k]):.4f}")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    rows = describe_datasets(args.data_dir)
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    for row in rows:
        print(_dataset_line(row))
    return 0


def _dataset_line(row: dict[str, Any]) -> str:
    where = row.get("where") or "not found"
    via = f" (via {row['found_via']})" if row.get("found_via") else ""
    sizes = row.get("sizes") or {}
    split = "/".join(str(sizes[k]) for k in ("train", "valid", "test") if k in sizes)
    status = row.get("status") or ""
    return (
        f"{row.get('name', '?'):14s} {status:10s} {row.get('n_classes', '?'):>3} classes  "
        f"{split:17s} {where}{via}"
    )


RUN_DIR_HELP = "a run directory written by 'descentlab train' (it holds config.toml)"


def register(sub: Any) -> None:
    """Add ``train``, ``evaluate``, ``predict`` and ``datasets`` to the CLI's subparsers."""
    p = add_command(
        sub, "train", cmd_train, "train a classifier (default: the tutorial's MNIST logreg)"
    )
    # Where the options come from and where one run goes: not options of the run itself
    # (--out/--name are TrainConfig fields declared cli=False, as compare/study write many
    # runs), so they are declared here, for `train` only.
    p.add_argument(
        "--preset",
        default=None,
        help="start from a preset (default dlt-logreg unless --config): " + _preset_names(),
    )
    p.add_argument("--config", default=None, help="TOML or JSON file of options")
    p.add_argument("--out", default=None, help="run directory (default runs/<time>-<name>)")
    p.add_argument("--name", default=None, help="run name used in the default run directory")
    p.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue an interrupted run")
    p.add_argument(
        "--resume-previous",
        default=None,
        metavar="RUN_DIR",
        help="continue from the checkpoint before the newest (if that one is damaged)",
    )
    add_train_options(p)

    p = add_command(sub, "evaluate", cmd_evaluate, "score a finished run on a split")
    p.add_argument("run_dir", metavar="RUN_DIR", help=RUN_DIR_HELP)
    p.add_argument(
        "--split",
        default="test",
        choices=("train", "valid", "test"),
        help="which split to score: train, valid or test (default: test)",
    )
    p.add_argument("--dataset", default=None, help="evaluate on another dataset of the same shape")
    add_flags(p, "--data-dir", "--json", data_dir={"help": None})

    p = add_command(sub, "predict", cmd_predict, "predict classes for the examples in a file")
    p.add_argument("run_dir", metavar="RUN_DIR", help=RUN_DIR_HELP)
    p.add_argument("file", metavar="FILE", help=".npy, .npz (array x) or .csv of features")
    p.add_argument("--output", default=None, help="write one predicted class per line here")
    p.add_argument(
        "--inputs",
        default="auto",
        choices=("auto", "raw", "scaled"),
        help="raw values (pixels 0..255) or already scaled to [0, 1] as load_dataset returns; "
        "auto: fractions in [0, 1] are taken as scaled, with a note (default: auto)",
    )

    p = add_command(
        sub, "datasets", cmd_datasets, "which datasets are available where (checksums verified)"
    )
    add_flags(p, "--data-dir", "--json", data_dir={"help": None})


def _preset_names() -> str:
    return ", ".join(preset_names())
