"""``descentlab train | evaluate | predict | datasets``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

S = argparse.SUPPRESS  # absent flags stay absent, so presets and config files are not overridden


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def add_train_options(p: argparse.ArgumentParser) -> None:
    """The options of a training run (shared by train, compare and study)."""
    g = p.add_argument_group("data")
    g.add_argument(
        "--dataset",
        default=S,
        help="mnist, fashion-mnist, digits, iris, wine, "
        "breast-cancer, or a .npz/.csv/mnist.pkl.gz path (default mnist)",
    )
    g.add_argument(
        "--data-dir",
        default=S,
        help="folder holding mnist/, fashion-mnist/ ... "
        "(default: $DESCENTLAB_DATA, then the user cache, then /usr/share/datasets)",
    )
    g.add_argument("--offline", action="store_true", default=S, help="never download")
    g.add_argument(
        "--standardize",
        action="store_true",
        default=S,
        help="zero mean, unit variance per feature (train statistics)",
    )
    g.add_argument("--subset", type=int, default=S, help="keep the first N examples of each split")
    g.add_argument("--label-column", default=S, help="label column of a CSV file (default label)")
    g.add_argument(
        "--pixel-scale",
        type=float,
        default=S,
        help="MNIST-family pixels k become k/SCALE: 255 ([0, 1], the default for runs "
        "without a tutorial preset) or 256 (the tutorial's mnist.pkl.gz; the dlt-* presets "
        "and plain `descentlab train`)",
    )
    g = p.add_argument_group("model")
    g.add_argument("--model", default=S, help="logreg, mlp or lenet (default logreg)")
    g.add_argument("--hidden", type=_ints, default=S, help="hidden layer sizes, e.g. 500,300")
    g.add_argument("--activation", default=S, help="tanh, relu or sigmoid")
    g.add_argument("--dropout", type=float, default=S, help="dropout rate on hidden layers")
    g.add_argument("--batch-norm", action="store_true", default=S, help="batch normalization")
    g.add_argument("--init", default=S, help="zeros, normal[:std=..], uniform, glorot, he, default")
    g = p.add_argument_group("cost")
    g.add_argument("--loss", default=S, help="nll (cross-entropy, default) or mse")
    g.add_argument("--l1", type=float, default=S, help="λ1 of the L1 penalty λ1·Σ|W|")
    g.add_argument("--l2", type=float, default=S, help="λ2 of the L2 penalty λ2·ΣW² (in the loss)")
    g = p.add_argument_group("optimizer")
    g.add_argument(
        "--optimizer",
        default=S,
        help="sgd, momentum, nesterov, adagrad, rmsprop, "
        "rmsprop-nesterov, adam, adadelta, or torch.<Name>",
    )
    g.add_argument("--lr", type=float, default=S, help="learning rate ε")
    g.add_argument("--momentum", type=float, default=S, help="momentum α")
    g.add_argument("--rho", type=float, default=S, help="decay rate ρ (RMSProp, AdaDelta)")
    g.add_argument("--betas", type=_floats, default=S, help="Adam's ρ1,ρ2, e.g. 0.9,0.999")
    g.add_argument("--eps", type=float, default=S, help="δ, the small constant for stability")
    g.add_argument(
        "--weight-decay",
        type=float,
        default=S,
        help="decoupled weight decay (NOT the L2 penalty: see --l2)",
    )
    g.add_argument(
        "--schedule",
        default=S,
        help="constant, linear:tau=N,final_ratio=0.01, exp:gamma=G, step:step_size=N,"
        "gamma=G, inv:t0=N, plateau:factor=F,patience=N",
    )
    g.add_argument("--clip-norm", type=float, default=S, help="clip the gradient's global norm")
    g.add_argument("--clip-value", type=float, default=S, help="clip each gradient component")
    g.add_argument(
        "--polyak-start",
        type=int,
        default=S,
        help="validate/test with the Polyak average of the iterates from this step",
    )
    g.add_argument(
        "--ema",
        type=float,
        default=S,
        help="validate/test with an exponential moving average of the weights",
    )
    g = p.add_argument_group("minibatches and stopping")
    g.add_argument("--batch-size", type=int, default=S, help="minibatch size B (default 600)")
    g.add_argument(
        "--shuffle",
        dest="shuffle",
        action="store_true",
        default=S,
        help="reshuffle the training set every epoch",
    )
    g.add_argument(
        "--no-shuffle",
        dest="shuffle",
        action="store_false",
        default=S,
        help="visit examples in file order (the tutorial's way; default)",
    )
    g.add_argument(
        "--keep-last",
        dest="drop_last",
        action="store_false",
        default=S,
        help="keep the last partial minibatch (the tutorial drops it)",
    )
    g.add_argument("--max-epochs", type=int, default=S, help="at most this many epochs")
    g.add_argument("--early-stopping", default=S, help="tutorial (default), epochs or none")
    g.add_argument(
        "--patience",
        type=int,
        default=S,
        help="tutorial: minibatch iterations (default 5000); epochs: epochs",
    )
    g.add_argument("--patience-increase", type=float, default=S, help="default 2")
    g.add_argument("--improvement-threshold", type=float, default=S, help="default 0.995")
    g.add_argument(
        "--validation-frequency",
        type=int,
        default=S,
        help="validate every N minibatches (default min(batches/epoch, patience//2))",
    )
    g.add_argument("--min-delta", type=float, default=S, help="epochs mode: minimum improvement")
    g.add_argument("--monitor", default=S, help="valid_error (default), valid_nll or valid_f1")
    g.add_argument(
        "--target-error",
        type=float,
        default=S,
        help="record when the test error at the best validation point reaches this",
    )
    g.add_argument("--on-nan", default=S, help="stop (default), skip-batch or lr-backoff")
    g.add_argument(
        "--eval-style",
        default=S,
        choices=("full", "tutorial"),
        help="full: error over the whole split (default without a tutorial preset); "
        "tutorial: mean of per-minibatch errors over whole minibatches of --batch-size",
    )
    g.add_argument(
        "--log-style",
        default=S,
        choices=("descentlab", "tutorial"),
        help="console lines: descentlab's (default) or the tutorial scripts' own format",
    )
    g = p.add_argument_group("run")
    g.add_argument("--seed", type=int, default=S, help="random seed (default 1234)")
    g.add_argument("--device", default=S, help="auto (default), cpu, cuda, cuda:N")
    g.add_argument("--threads", type=int, default=S, help="torch CPU threads")
    g.add_argument(
        "--no-fast-path",
        dest="fast_path",
        action="store_false",
        default=S,
        help="train dense models by autograd instead of the hand-written backward",
    )
    g.add_argument(
        "--checkpoint-every",
        type=int,
        default=S,
        help="also checkpoint every N minibatches (always at each epoch's end)",
    )
    g.add_argument(
        "--log-grad-norm",
        action="store_true",
        default=S,
        help="log the largest gradient norm between validations",
    )
    g.add_argument(
        "--tensorboard",
        action="store_true",
        default=S,
        help="write TensorBoard event files (needs descentlab[tensorboard])",
    )
    g.add_argument("--quiet", action="store_true", default=S, help="no per-epoch lines or bars")


CONFIG_SOURCE_KEYS = (
    "config",
    "preset",
    "resume",
    "resume_previous",
    "command",
    "func",
    "out",
    "name",
    "json",
)


def options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The training options given explicitly on the command line."""
    return {k: v for k, v in vars(args).items() if k not in CONFIG_SOURCE_KEYS}


DEFAULT_PRESET = "dlt-logreg"


def cmd_train(args: argparse.Namespace) -> int:
    from descentlab.train import fit, resolve
    from descentlab.train.config import from_mapping, read_config_file

    overrides = options_from_args(args)
    resume_dir = getattr(args, "resume", None) or getattr(args, "resume_previous", None)
    if resume_dir:
        _check_resume_args(args, overrides)
        run = Path(resume_dir)
        if not (run / "config.toml").is_file():
            from descentlab.errors import CheckpointError

            raise CheckpointError(
                f"{run} is not a descentlab run directory (no config.toml)",
                hint="pass the run directory printed when training started",
            )
        values = read_config_file(run / "config.toml")
        values.update({k: v for k, v in overrides.items() if k in RESUME_OPTIONS})
        values["out"] = str(run)
        cfg = from_mapping(values)
        if cfg.extra.get("in_memory_dataset"):
            from descentlab.errors import CheckpointError

            raise CheckpointError(
                f"{run} was trained on an in-memory dataset that the command line cannot rebuild",
                hint="resume it from Python: descentlab.fit(data=<the same Dataset>, "
                "config=..., resume=True)",
            )
        return _report(fit(config=cfg, resume=True, resume_previous=bool(args.resume_previous)))
    if getattr(args, "out", None):
        overrides["out"] = args.out
    if getattr(args, "name", None):
        overrides["name"] = args.name
    preset_name = getattr(args, "preset", None)
    config_file = getattr(args, "config", None)
    if preset_name is None and config_file is None and overrides.get("dataset", "mnist") == "mnist":
        # Plain `descentlab train` is the tutorial's logreg, exactly (pixels k/256, the
        # tutorial's scoring); on other data it is `fit(**options)` with fit's defaults.
        preset_name = DEFAULT_PRESET
    cfg = resolve(
        preset_name=preset_name,
        config_file=config_file,
        overrides=overrides,
    )
    if cfg.out is None:
        from descentlab.train.run_dir import default_run_dir

        cfg = cfg.replace(out=str(default_run_dir(cfg)))
    if not cfg.quiet:
        print(
            f"descentlab: training {cfg.model} on {cfg.dataset} with {cfg.optimizer} "
            f"(lr {cfg.lr}, batch {cfg.batch_size}); run directory {cfg.out}",
            flush=True,
        )
    return _report(fit(config=cfg))


RESUME_OPTIONS = ("quiet", "device", "threads", "log_style")  # may differ on resume


def _check_resume_args(args: argparse.Namespace, overrides: dict[str, Any]) -> None:
    """A resumed run continues with its own config.toml: refuse options it would ignore."""
    from descentlab.errors import ConfigError

    if getattr(args, "resume", None) and getattr(args, "resume_previous", None):
        raise ConfigError(
            "--resume and --resume-previous cannot be combined",
            hint="pass only --resume-previous RUN_DIR to continue from the older checkpoint",
        )
    flags = {"drop_last": "--keep-last", "shuffle": "--shuffle/--no-shuffle"}
    given = [flags.get(k, "--" + k.replace("_", "-")) for k in overrides if k not in RESUME_OPTIONS]
    given += [f"--{k}" for k in ("config", "preset", "out", "name") if getattr(args, k, None)]
    if given:
        raise ConfigError(
            f"{', '.join(sorted(given))} cannot be given with --resume: the run continues "
            "with the options in its config.toml",
            hint="drop them; only --quiet, --device, --threads and --log-style may change "
            "on resume",
        )


def _report(result: Any) -> int:
    s = result.summary
    test = s.get("test_error")
    valid = s.get("best_valid_error")
    print(
        f"best validation error {100 * valid:.3f}% at epoch {s['best_epoch']} "
        f"(iteration {s['best_iteration'] + 1}); test error at that point {100 * test:.3f}%; "
        f"{s['epochs_run']} epochs in {s['train_seconds']:.1f}s "
        f"({s['seconds_per_epoch']:.3f}s/epoch); stopped by {s['stopped_because']}"
    )
    if result.run_dir is not None:
        print(f"run directory: {result.run_dir}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from descentlab.train import evaluate, load_run
    from descentlab.train.trainer import load_data

    run = load_run(args.run_dir)
    cfg = run.config
    data = load_data(
        cfg, dataset=args.dataset or cfg.dataset, data_dir=args.data_dir or cfg.data_dir
    )
    split = getattr(data, args.split)
    result = evaluate(run.model, split, n_classes=data.n_classes)
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
    import numpy as np
    import torch

    from descentlab.data.features import read_features
    from descentlab.train import load_run

    run = load_run(args.run_dir)
    x = read_features(args.file, label_column=run.config.label_column)
    proba = run.predict_proba(torch.from_numpy(x))
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
    from descentlab.data import describe_datasets

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


def register(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="train a classifier (default: the tutorial's MNIST logreg)",
        description="Train a classifier with minibatch SGD and early stopping. "
        "On MNIST with neither --preset nor --config: the preset dlt-logreg, the Deep Learning "
        "Tutorials' logistic regression on MNIST (lr 0.13, batch 600, patience 5000, "
        "pixels k/256, tutorial scoring); it ends at 7.500000% validation, 7.489583% "
        "test error after 74 epochs, as the tutorial does.",
    )
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
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="score a finished run on a split")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--split", default="test", choices=("train", "valid", "test"))
    p.add_argument("--dataset", default=None, help="evaluate on another dataset of the same shape")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="predict classes for the examples in a file")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("file", metavar="FILE", help=".npy, .npz (array x) or .csv of features")
    p.add_argument("--output", default=None, help="write one predicted class per line here")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("datasets", help="which datasets are available where (checksums verified)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_datasets)


def _preset_names() -> str:
    from descentlab.train.config import PRESETS

    return ", ".join(PRESETS)
