"""``descentlab compare | report | study | landscape | explain``.

The experiments modules are imported inside the command functions, on purpose: they
pull in torch, matplotlib and jinja2, and ``descentlab --help`` (or any other
command) should not pay for them (the CLI starts in ~35 ms without them).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
from pathlib import Path
from typing import Any

from descentlab.cli.common import add_command, add_flags
from descentlab.cli.train import add_train_options
from descentlab.errors import ConfigError, did_you_mean
from descentlab.fsio import make_folder

S = argparse.SUPPRESS

# Options whose single values contain commas: their alternatives are separated by spaces.
_COMMA_VALUED = frozenset({"hidden", "betas", "schedule"})
# Train options that mean something else for a sweep.
_SWEEP_HANDLED = frozenset({"quiet", "seed"})


def _train_actions() -> list[tuple[str, list[argparse.Action]]]:
    """The train command's options, by group (taken from the train parser itself)."""
    probe = argparse.ArgumentParser(add_help=False)
    add_train_options(probe)
    out = []
    for group in probe._action_groups:
        actions = [a for a in group._group_actions if a.option_strings]
        if actions:
            out.append((group.title or "options", actions))
    return out


def add_grid_options(p: argparse.ArgumentParser) -> tuple[dict[str, argparse.Action], set[str]]:
    """Every train option, accepting several values (a grid axis) where it takes a value.

    ``--lr 0.01,0.1`` or ``--lr 0.01 0.1``; options whose value has commas in it
    (``--hidden 100,50``, ``--betas``, ``--schedule``) take alternatives separated by
    spaces: ``--hidden 100 200,100``.  Flags (``--shuffle``) are fixed for every run.
    """
    typed: dict[str, argparse.Action] = {}
    flags: set[str] = set()
    for title, actions in _train_actions():
        g = p.add_argument_group(f"{title} (a list of values makes a grid axis)")
        for action in actions:
            if action.nargs == 0:  # store_true / store_false: a fixed flag
                flags.add(action.dest)
                g.add_argument(
                    *action.option_strings,
                    dest=action.dest,
                    action="store_const",
                    const=action.const,
                    default=S,
                    help=action.help,
                )
                continue
            typed[action.dest] = action
            sep = "space-separated" if action.dest in _COMMA_VALUED else "comma-separated"
            g.add_argument(
                *action.option_strings,
                dest=action.dest,
                nargs="+",
                default=S,
                metavar="V",
                help=f"{action.help} ({sep} values: one run per value)",
            )
    return typed, flags


def _grid_values(args: argparse.Namespace, typed: dict[str, argparse.Action]) -> dict[str, list]:
    """Convert each given option's tokens with the train option's own type."""

    out: dict[str, list] = {}
    for dest, action in typed.items():
        if dest not in vars(args):
            continue
        tokens = getattr(args, dest)
        if dest not in _COMMA_VALUED:
            tokens = [t for tok in tokens for t in tok.split(",") if t.strip()]
        values = []
        for tok in tokens:
            try:
                convert: Any = action.type
                values.append(convert(tok) if callable(convert) else tok)
            except (argparse.ArgumentTypeError, ValueError) as exc:
                raise ConfigError(
                    f"bad value {tok!r} for {action.option_strings[0]}: {exc}",
                    hint=f"see 'descentlab compare --help' for {action.option_strings[0]}",
                ) from None
        out[dest] = [list(v) if isinstance(v, tuple) else v for v in values]
    return out


def _seeds(text: str) -> int | list[int]:
    try:
        parts = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number of seeds or a comma-separated list, got {text!r}"
        ) from None
    if len(parts) == 1 and "," not in text:
        return parts[0]
    return parts


# =========================================================================== compare
def build_compare_plan(
    args: argparse.Namespace, typed: dict[str, argparse.Action], flags: set[str]
) -> tuple[Any, dict[str, Any], bool]:
    """``(plan, settings, quiet)`` of a ``compare`` command line.

    The sweep file comes first, the command line overrides it: an option given one
    value is fixed for every run (and leaves the grid); one given several values
    becomes a grid axis (in every ``[[grid]]`` table).
    """
    from descentlab.experiments.plan import SweepPlan, read_plan_file
    from descentlab.train.config import preset

    fixed: dict[str, Any] = {}
    grid: list[dict[str, list]] = [{}]
    settings: dict[str, Any] = {}
    if args.preset:
        fixed.update(preset(args.preset))
    if args.config:
        file_fixed, grid, settings = read_plan_file(args.config)
        fixed.update(file_fixed)
    for key in flags:
        if key in vars(args):
            fixed[key] = getattr(args, key)
    quiet = bool(fixed.pop("quiet", False))
    for key, values in _grid_values(args, typed).items():
        if key in _SWEEP_HANDLED:
            if len(values) > 1:
                raise ConfigError(
                    "--seed takes one value (the first seed)",
                    hint="give the number of seeds with --seeds N or a list with --seeds 1,2,3",
                )
            fixed[key] = values[0]
            continue
        if len(values) == 1:
            fixed[key] = values[0]
            for table in grid:
                table.pop(key, None)
        else:
            fixed.pop(key, None)
            for table in grid:
                table[key] = values
    seeds = args.seeds if args.seeds is not None else settings.get("seeds", 1)
    tune = list(settings.get("tune") or [])
    if args.tune:
        tune = [t.strip() for t in args.tune.split(",") if t.strip()]
    if args.select_lr or settings.get("select_lr"):
        tune = ["lr", *[t for t in tune if t != "lr"]]
    if "lr" in tune and not any(len(t.get("lr", [])) > 1 for t in grid):
        raise ConfigError(
            "--select-lr needs several learning rates to choose from",
            hint="e.g. --lr 0.01,0.03,0.1",
        )
    plan = SweepPlan.build(
        grid, fixed, seeds=seeds, tune=tune, title=args.title or settings.get("title")
    )
    return plan, settings, quiet


def cmd_compare(args: argparse.Namespace) -> int:
    """Train every combination of the given option values (x seeds) in parallel worker
    processes, each into its own run directory under the sweep directory, then write
    results.csv and report.html/.md. Re-running the same command skips finished runs
    and resumes interrupted ones. Example: descentlab compare --dataset digits --model
    mlp --optimizer sgd,adam --lr 0.01,0.1 --batch-size 20,128 --seeds 3 --select-lr"""
    from descentlab.experiments.workflow import run_sweep

    plan, settings, quiet = build_compare_plan(args, args._typed, args._flags)
    jobs = args.jobs or settings.get("jobs")
    out = args.out
    if out is None:
        dataset = str(plan.fixed.get("dataset", "mnist")).rsplit("/", 1)[-1]
        model = plan.fixed.get("model", "logreg")
        out = Path("sweeps") / f"{dataset}-{model}-{plan.digest()}"
    result = run_sweep(
        plan,
        out,
        jobs=jobs,
        progress=not quiet,
        report=not args.no_report,
        command=["descentlab", *sys.argv[1:]],
        scheduler=args.scheduler,
    )
    return 0 if not result.failed else 1


# ============================================================================ report
def cmd_report(args: argparse.Namespace) -> int:
    """Rebuild results.csv, report.html and report.md of a sweep directory from its run
    directories (also works on a partly finished sweep)."""
    from descentlab.experiments.store import collect_results, write_results
    from descentlab.experiments.workflow import build_report

    _, rows, _ = collect_results(args.sweep_dir)
    write_results(args.sweep_dir, rows)
    html, md = build_report(args.sweep_dir, title=args.title)
    print(f"report: {html}\nmarkdown: {md}")
    return 0


# ============================================================================= study
def cmd_study(args: argparse.Namespace) -> int:
    """Run a preset sweep with a tailored report. --fast finishes in minutes on two
    cores; without it the full setting takes hours. Use --list to see the studies."""
    from descentlab.experiments.studies import STUDIES
    from descentlab.experiments.workflow import run_study

    if args.list or not args.name:
        for name, study in STUDIES.items():
            print(f"{name:15s} {study.summary}")
        return 0 if args.list else 2
    datasets = [d.strip() for d in args.datasets.split(",")] if args.datasets else None
    given = {k: getattr(args, k) for k in ("fast", "out", "jobs", "seeds", "data_dir", "scheduler")}
    result = run_study(args.name, datasets=datasets, report=not args.no_report, **given)
    return 0 if not result.failed else 1


# ========================================================================= landscape
def cmd_landscape(args: argparse.Namespace) -> int:
    """Run optimizers on a 2-D function (Rosenbrock, ...) and plot their paths."""
    try:
        landscape = importlib.import_module("descentlab.experiments.landscape")
    except ModuleNotFoundError as exc:
        if exc.name != "descentlab.experiments.landscape":
            raise
        raise ConfigError(
            "the landscape lab (descentlab.experiments.landscape) is not in this build",
            hint="update descentlab to a version that has it",
        ) from None
    if args.function not in landscape.LANDSCAPES:
        raise ConfigError(
            f"unknown function {args.function!r}",
            hint=did_you_mean(args.function, list(landscape.LANDSCAPES)),
        )
    optimizers = [o.strip() for o in args.optimizers.split(",") if o.strip()]
    wanted = {
        "function": args.function,
        "optimizers": optimizers,
        "steps": args.steps,
        "clip_norm": args.clip_norm,
        "noise": args.noise,
        "lr": args.lr,
        "seed": args.seed,
    }
    accepted = inspect.signature(landscape.run_landscape).parameters
    kwargs = {k: v for k, v in wanted.items() if v is not None and k in accepted}
    ignored = [k for k, v in wanted.items() if v is not None and k not in accepted]
    if any(k in ignored for k in ("clip_norm", "noise", "lr")):
        flags = ", ".join("--" + k.replace("_", "-") for k in ignored)
        raise ConfigError(f"this landscape lab does not support {flags}")
    result = landscape.run_landscape(**kwargs)
    out = make_folder(args.out)
    plot_params = inspect.signature(landscape.plot_landscape).parameters
    plot_kwargs: dict[str, Any] = {}
    if "gif" in plot_params:
        plot_kwargs["gif"] = args.gif
    elif args.gif:
        raise ConfigError("this landscape lab cannot write GIFs")
    paths = landscape.plot_landscape(result, out, **plot_kwargs)
    _print_landscape(result)
    for path in paths if isinstance(paths, list | tuple) else [paths]:
        print(f"wrote {path}")
    return 0


def _print_landscape(result: Any) -> None:
    """One line per optimizer with where it ended, if the result says."""
    rows = getattr(result, "summary", None)
    if callable(rows):
        rows = rows()
    if isinstance(rows, list):
        for row in rows:
            print(
                "  ".join(
                    f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
                )
            )


# =========================================================================== explain
def cmd_explain(args: argparse.Namespace) -> int:
    from descentlab.experiments.explain import explain

    print(explain(args.topic))
    return 0


# ========================================================================== register
def _register_compare(sub: Any) -> None:
    p = add_command(
        sub, "compare", cmd_compare, "run a grid of training runs in parallel and compare them"
    )
    p.add_argument(
        "--config", default=None, metavar="FILE", help="sweep TOML file ([grid] + options)"
    )
    p.add_argument("--preset", default=None, help="start the fixed options from a preset")
    p.add_argument(
        "--seeds",
        type=_seeds,
        default=None,
        metavar="N|LIST",
        help="number of seeds (from --seed, default 0) or a list, e.g. 3 or 1,2,3",
    )
    p.add_argument(
        "--select-lr",
        action="store_true",
        help="choose the lr per configuration on the VALIDATION error with one seed, then run "
        "the chosen lr with every seed",
    )
    p.add_argument(
        "--tune",
        default=None,
        metavar="OPTIONS",
        help="like --select-lr for other options, e.g. --tune l2,dropout",
    )
    add_flags(p, "--jobs")
    p.add_argument(
        "--out",
        default=None,
        help="sweep directory (default sweeps/<dataset>-<model>-<hash of the grid>)",
    )
    p.add_argument("--title", default=None, help="report title")
    add_flags(p, "--no-report", "--scheduler")
    typed, flags = add_grid_options(p)
    p.set_defaults(_typed=typed, _flags=flags)


def _register_report(sub: Any) -> None:
    p = add_command(sub, "report", cmd_report, "(re)write the report of a sweep directory")
    p.add_argument("sweep_dir", metavar="SWEEP_DIR")
    p.add_argument("--title", default=None)


def _register_study(sub: Any) -> None:
    p = add_command(
        sub, "study", cmd_study, "run a built-in study (optimizers, batch-size, losses, ...)"
    )
    p.add_argument("name", nargs="?", metavar="NAME")
    p.add_argument("--list", action="store_true", help="list the studies")
    p.add_argument("--fast", action="store_true", help="the fast setting (minutes)")
    add_flags(p, "--jobs")
    p.add_argument("--seeds", type=int, default=None, help="override the number of seeds")
    p.add_argument("--out", default=None, help="sweep directory (default studies/NAME[-fast])")
    add_flags(p, "--data-dir", data_dir="folder holding mnist/ and fashion-mnist/")
    p.add_argument(
        "--datasets", default=None, help="batch-size study: only these datasets (comma-separated)"
    )
    add_flags(p, "--no-report", "--scheduler")


class _LandscapeHelp(argparse.HelpFormatter):
    """Lists the landscape functions in ``--function``'s help, looked up only when help is
    shown (the landscape module is heavy, see the module docstring)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help
        if "--function" in action.option_strings and text:
            names = importlib.import_module("descentlab.experiments.landscape").LANDSCAPES
            text = f"{text}: one of {', '.join(names)}"
        return text


def _register_landscape(sub: Any) -> None:
    p = add_command(
        sub,
        "landscape",
        cmd_landscape,
        "watch optimizers on 2-D test functions",
        formatter_class=_LandscapeHelp,
    )
    p.add_argument("--function", default="rosenbrock", help="the 2-D function (default rosenbrock)")
    p.add_argument(
        "--optimizers",
        default="sgd,momentum,nesterov,adam",
        help="comma-separated optimizer names; NAME+clip clips that path (default %(default)s)",
    )
    p.add_argument("--steps", type=int, default=None, help="optimizer steps")
    p.add_argument("--lr", type=float, default=None, help="learning rate for every optimizer")
    p.add_argument("--clip-norm", type=float, default=None, help="clip each gradient's norm")
    p.add_argument("--noise", type=float, default=None, help="std of gradient noise (SGD-like)")
    p.add_argument("--seed", type=int, default=None, help="random seed for the noise")
    p.add_argument("--gif", action="store_true", help="also write an animated GIF")
    p.add_argument("--out", default="landscape", help="output folder (default ./landscape)")


def _register_explain(sub: Any) -> None:
    what = "worked examples computed by the library (losses, significance)"
    p = add_command(sub, "explain", cmd_explain, what)
    p.add_argument("topic", metavar="TOPIC", help="losses or significance")


def register(sub: Any) -> None:
    """Add the experiments commands to the CLI's subparsers."""
    for add in (
        _register_compare,
        _register_report,
        _register_study,
        _register_landscape,
        _register_explain,
    ):
        add(sub)
