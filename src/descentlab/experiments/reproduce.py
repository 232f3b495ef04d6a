"""``descentlab reproduce dlt-logreg|dlt-mlp|dlt-lenet``: run a tutorial preset to the end
and compare it with the Deep Learning Tutorials' published figures.

The published figures (``PUBLISHED``) are the ones the tutorial's documentation prints
(doc/logreg.txt, doc/mlp.txt, doc/lenet.txt).  The comparison is written beside the run
as ``reproduction.md``: best validation error, test error at that point, the epoch
(and iteration) of the best model, epochs run and wall time, ours next to theirs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from descentlab.errors import ConfigError, did_you_mean
from descentlab.fsio import atomic_write_text
from descentlab.train import FitResult, RunSummary, fit, resolve
from descentlab.train.config import read_config_file

__all__ = ["PUBLISHED", "Published", "reproduction_markdown", "run_reproduction"]

REPORT_FILE = "reproduction.md"


@dataclass(frozen=True)
class Published:
    """What the tutorial's documentation reports for one script (percent; None: not given)."""

    script: str
    valid: float
    test: float
    best_iteration: int | None  # 1-based, as the scripts print it
    batches_per_epoch: int
    epochs_run: int | None
    seconds: float | None
    lines: tuple[str, ...]

    @property
    def best_epoch(self) -> int | None:
        if self.best_iteration is None:
            return None
        return -(-self.best_iteration // self.batches_per_epoch)


PUBLISHED: dict[str, Published] = {
    "dlt-logreg": Published(
        script="logistic_sgd.py",
        valid=7.5,
        test=7.489583,
        best_iteration=73 * 83,
        batches_per_epoch=83,
        epochs_run=74,
        seconds=74 / 1.936983,  # "The code run for 74 epochs, with 1.936983 epochs/sec"
        lines=(
            "epoch 72, minibatch 83/83, validation error 7.510417 %",
            "     epoch 72, minibatch 83/83, test error of best model 7.510417 %",
            "epoch 73, minibatch 83/83, validation error 7.500000 %",
            "     epoch 73, minibatch 83/83, test error of best model 7.489583 %",
            "Optimization complete with best validation score of 7.500000 %,"
            "with test performance 7.489583 %",
        ),
    ),
    "dlt-mlp": Published(
        script="mlp.py",
        valid=1.69,
        test=1.65,
        best_iteration=2_070_000,
        batches_per_epoch=2500,
        epochs_run=None,
        seconds=None,
        lines=(
            "Optimization complete. Best validation score of 1.690000 % obtained at "
            "iteration 2070000, with test performance 1.650000 %",
        ),
    ),
    "dlt-lenet": Published(
        script="convolutional_mlp.py",
        valid=0.91,
        test=0.92,
        best_iteration=17_800,
        batches_per_epoch=100,
        epochs_run=None,
        seconds=None,
        lines=(
            "Optimization complete.",
            "Best validation score of 0.910000 % obtained at iteration 17800,"
            "with test performance 0.920000 %",
        ),
    ),
}


def _check_preset(preset: str) -> Published:
    if preset not in PUBLISHED:
        raise ConfigError(
            f"no published figures for {preset!r}", hint=did_you_mean(preset, list(PUBLISHED))
        )
    return PUBLISHED[preset]


def run_reproduction(
    preset: str, out: str | Path, *, resume: bool = False, **options: Any
) -> tuple[FitResult, Path]:
    """Train ``preset`` to the end in ``out`` (or continue it), then write the comparison.

    ``options`` are training options over the preset's (``threads=2``, ``quiet=True``;
    None: not given); the console lines are always the tutorial's.
    """
    _check_preset(preset)
    out = Path(out)
    given = {"quiet": False, **{k: v for k, v in options.items() if v is not None}}
    given.update({"out": str(out), "log_style": "tutorial"})
    if resume:
        values = {**read_config_file(out / "config.toml"), **given}
        result = fit(config=resolve(overrides=values), resume=True)
    else:
        result = fit(config=resolve(preset_name=preset, overrides=given))
    path = out / REPORT_FILE
    atomic_write_text(path, reproduction_markdown(preset, result.summary))
    return result, path


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.6f} %"


def _diff(ours: float | None, theirs: float | None, unit: str = "") -> str:
    if ours is None or theirs is None:
        return "—"
    # published figures are printed to 6 decimals: compare what would be printed
    return f"{round(ours, 6) - theirs:+.6f}{unit}" if unit else f"{ours - theirs:+g}"


def reproduction_markdown(preset: str, summary: RunSummary | dict[str, Any]) -> str:
    """The comparison table (published vs ours) for a finished run's summary."""
    pub = _check_preset(preset)
    valid = 100.0 * summary["best_valid_error"]
    test = 100.0 * summary["test_error"]
    best_iter = int(summary["best_iteration"]) + 1
    seconds = float(summary["train_seconds"])
    epochs = int(summary["epochs_run"])
    rows = [
        ("best validation error", _pct(pub.valid), _pct(valid), _diff(valid, pub.valid, " pt")),
        ("test error at that point", _pct(pub.test), _pct(test), _diff(test, pub.test, " pt")),
        (
            "epoch (iteration) of the best model",
            f"{pub.best_epoch} ({pub.best_iteration})" if pub.best_iteration else "—",
            f"{summary['best_epoch']} ({best_iter})",
            _diff(summary["best_epoch"], pub.best_epoch),
        ),
        ("epochs run", str(pub.epochs_run or "not published"), str(epochs), "—"),
        (
            "wall time",
            f"{pub.seconds:.1f} s" if pub.seconds else "not published",
            f"{seconds:.1f} s ({seconds / max(epochs, 1):.3f} s/epoch)",
            "— (other hardware)",
        ),
    ]
    table = ["| | published | ours | ours − published |", "|---|---|---|---|"]
    table += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    big = abs(valid - pub.valid) > 0.1 or abs(test - pub.test) > 0.1
    verdict = (
        "Differs from the published figures by more than 0.1 point: see the notes below."
        if big
        else "Within 0.1 point of the published figures."
    )
    lines = [
        f"# Reproduction of the Deep Learning Tutorials' `{pub.script}` (`{preset}`)",
        "",
        *table,
        "",
        verdict,
        "",
        f"Stopped by {summary.get('stopped_because')}; {summary.get('iterations')} minibatch "
        f"iterations; device {summary.get('device')}; descentlab "
        f"{summary.get('descentlab_version')}, torch {summary.get('torch_version')}.",
        "",
        "The tutorial's own closing lines:",
        "",
        *[f"    {line}" for line in pub.lines],
        "",
        f"Reproduce: `descentlab reproduce {preset} --out RUN_DIR` "
        f"(continue an interrupted run with `--resume`).",
        "",
    ]
    return "\n".join(lines)
