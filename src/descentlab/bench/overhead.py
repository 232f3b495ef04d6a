"""``descentlab bench overhead``: what an epoch of ``descentlab train`` spends besides training.

Two trainers of the same preset run side by side in one process: one as ``descentlab
train`` runs it (a validation at each epoch's end, the test set at a new best, the
checkpoint, the run files), one that only trains.  Interleaved, after ``warmup`` rounds,
each round times

    end to end       an epoch of the first trainer, everything included
    training only    an epoch of the second
    validation       scoring the validation set as a validation does
    test set         scoring the test set the same way (done at each new best)
    checkpoint       writing the first trainer's checkpoint

and reports the medians, each as a share of the training-only epoch.  "end to end"
minus "training only" is the epoch's overhead; early in a run, when every epoch is a new
best, it is about validation + test set + checkpoint + the files.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

from descentlab.bench.timing import interleaved, machine_info, thread_limit
from descentlab.train import NeverValidate, Trainer, default_callbacks, resolve
from descentlab.train.loop import score_split
from descentlab.train.run_dir import prepare_run_dir

__all__ = ["format_overhead", "run_overhead_bench"]

PARTS = ("end to end", "training only", "validation", "test set", "checkpoint")


def run_overhead_bench(
    preset: str = "dlt-mlp",
    *,
    repeats: int = 3,
    warmup: int = 1,
    threads: int | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Median wall and CPU seconds of each part of an epoch (see the module docstring).

    Returns ``preset``, ``threads``, ``parts`` (name → ``{"median_s", "cpu_median_s",
    "share", "cpu_share"}``, shares of the training-only epoch), ``overhead`` and
    ``cpu_overhead`` (end to end / training only − 1), ``repeats`` and ``load_average``.
    """
    with thread_limit(threads) as n, tempfile.TemporaryDirectory() as tmp:
        options = {"quiet": True, "threads": n, "early_stopping": "none", **overrides}
        run_dir = Path(tmp) / "run"
        cfg = resolve(preset_name=preset, overrides={**options, "out": str(run_dir)})
        full = Trainer(cfg, callbacks=default_callbacks(cfg, run_dir), run_dir=run_dir)
        prepare_run_dir(run_dir)
        full.emit("on_train_start")
        bare_cfg = resolve(preset_name=preset, overrides={**options, "out": None})
        bare = Trainer(bare_cfg, stopper=NeverValidate())
        fns = {
            "end to end": full.run_epoch,
            "training only": bare.run_epoch,
            "validation": lambda: score_split(full, full.data.valid),
            "test set": lambda: score_split(full, full.data.test),
            "checkpoint": full.save_checkpoint,
        }
        before = machine_info()["load_average"]
        cpu: dict[str, list[float]] = {}
        wall = interleaved(fns, repeats=repeats, warmup=warmup, cpu=cpu)
        after = machine_info()["load_average"]
    medians = {k: statistics.median(v) for k, v in wall.items()}
    cpu_medians = {k: statistics.median(v) for k, v in cpu.items()}
    train, cpu_train = medians["training only"], cpu_medians["training only"]
    parts = {
        k: {
            "median_s": medians[k],
            "cpu_median_s": cpu_medians[k],
            "share": medians[k] / train,
            "cpu_share": cpu_medians[k] / cpu_train,
        }
        for k in PARTS
    }
    return {
        "preset": preset,
        "threads": n,
        "parts": parts,
        "overhead": medians["end to end"] / train - 1,
        "cpu_overhead": cpu_medians["end to end"] / cpu_train - 1,
        "repeats": repeats,
        "warmup": warmup,
        "n_train": int(full.data.train.y.shape[0]),
        "eval_batch_size": cfg.eval_batch_size,
        "load_average": [before, after],
    }


def format_overhead(result: dict[str, Any]) -> str:
    """A table of :func:`run_overhead_bench`'s parts and the overhead."""
    lines = [
        f"{result['preset']} ({result['n_train']} training examples, {result['threads']} "
        f"thread{'s' if result['threads'] != 1 else ''}, evaluation in chunks of "
        f"{result['eval_batch_size']})",
        f"{'part':<14}  {'s':>7}  {'share':>6}  {'cpu s':>7}  {'share':>6}",
    ]
    for name, p in result["parts"].items():
        lines.append(
            f"{name:<14}  {p['median_s']:7.3f}  {100 * p['share']:5.1f}%  "
            f"{p['cpu_median_s']:7.3f}  {100 * p['cpu_share']:5.1f}%"
        )
    loads = result["load_average"]
    lines.append(
        f"overhead (end to end / training only - 1): {100 * result['overhead']:.1f}% wall, "
        f"{100 * result['cpu_overhead']:.1f}% CPU (medians of {result['repeats']} interleaved "
        f"rounds after {result['warmup']} warm-up; shares of the training-only epoch; load "
        f"average {loads[0]} -> {loads[1]})"
    )
    return "\n".join(lines)
