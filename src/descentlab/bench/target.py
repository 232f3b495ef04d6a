"""``descentlab bench time-to-target``: how long a preset takes to reach a test error.

:func:`run_time_to_target` trains a preset (``fast-mnist``) in a child process and
reports the seconds of training until the test error at the best validation point
reached the target, the wall seconds from the moment the child was started to its
summary (process start, imports, data loading, training, evaluation), and the child's
peak resident memory.
"""

from __future__ import annotations

import multiprocessing
import resource
import sys
import time
from typing import Any

import torch

from descentlab.bench.timing import machine_info
from descentlab.errors import ConfigError, DescentlabError
from descentlab.train import Trainer, resolve

__all__ = ["format_time_to_target", "run_time_to_target"]


def _time_to_target_child(options: dict[str, Any], queue: Any) -> None:
    """Runs in a fresh process: train, then report the summary and this process's peak RSS."""
    start = time.perf_counter()
    try:
        preset = options.pop("preset")
        cfg = resolve(preset_name=preset, overrides=options)
        trainer = Trainer(cfg)  # what fit() does without a run directory or console output
        fit_start = time.perf_counter() - start
        result = trainer.fit()
        summary = dict(result.summary)
        summary["history"] = [
            {k: row[k] for k in ("epoch", "valid_error", "test_error", "seconds")}
            for row in result.history
        ]
        summary["fast_path"] = trainer.fast_path is not None
        summary["threads"] = torch.get_num_threads()
        summary["child_seconds"] = time.perf_counter() - start
        summary["fit_start_seconds"] = fit_start
        # ru_maxrss is in KiB on Linux, bytes on macOS.
        scale = 1 if sys.platform == "darwin" else 1024
        summary["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20
        queue.put(("ok", summary))
    except BaseException as exc:  # reported by the parent as one line
        queue.put(("error", f"{type(exc).__name__}: {exc}"))


def run_time_to_target(
    target: float = 0.0165,
    *,
    preset: str = "fast-mnist",
    threads: int | None = None,
    data_dir: str | None = None,
    subprocess: bool = True,
    **overrides: Any,
) -> dict[str, Any]:
    """Train ``preset`` with ``target_error=target`` and report how long the target took.

    Training stops at the validation that reaches the target (``stop_at_target``; pass
    ``stop_at_target=False`` to train on to the preset's end).  The run happens in a child
    process (``subprocess=False``: in this one) so that its peak resident memory can be
    measured alone (``resource.getrusage``).  Returns the
    trainer's summary plus ``reached`` (bool), ``seconds_to_target`` (from the start of
    training to the validation at which the test error at the best validation point first
    was ``<= target``; None if never), ``epoch_at_target``, ``wall_seconds`` (everything:
    starting the process, importing torch, loading the data, training, evaluating, to the
    summary), ``startup_seconds`` (process start to the first step: spawning, imports,
    data loading, building), ``wall_to_target_seconds`` (``startup_seconds +
    seconds_to_target``: process start to the validation that reached the target),
    ``peak_rss_mb`` (of the process that trained) and a short ``history``.
    """
    if not (isinstance(target, int | float) and 0 < target < 1):
        raise ConfigError(f"target must be an error rate in (0, 1), got {target!r}")
    options: dict[str, Any] = {
        "preset": preset,
        "target_error": float(target),
        "stop_at_target": True,  # as time-to-target benchmarks do; overridable
        "quiet": True,
        "out": None,
        **overrides,
    }
    if threads is not None:
        options["threads"] = threads
    if data_dir is not None:
        options["data_dir"] = data_dir
    start = time.perf_counter()
    if subprocess:
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        proc = ctx.Process(target=_time_to_target_child, args=(options, queue))
        proc.start()
        status, payload = queue.get()
        proc.join()
    else:
        queue_list: list[Any] = []

        class _Q:
            def put(self, item: Any) -> None:
                queue_list.append(item)

        _time_to_target_child(dict(options), _Q())
        status, payload = queue_list[0]
    if status != "ok":
        raise DescentlabError(f"time-to-target run failed: {payload}")
    summary: dict[str, Any] = payload
    summary["wall_seconds"] = time.perf_counter() - start
    iteration = summary.get("iterations_to_target")
    epoch = None
    if iteration is not None:
        for row in summary["history"]:
            if row["test_error"] is not None and row["test_error"] <= target:
                epoch = row["epoch"]
                break
    summary["reached"] = summary.get("seconds_to_target") is not None
    # Process start to the validation that reached the target: the time before the child's
    # function ran (spawning, importing torch) plus the child's own time until then.
    outside = summary["wall_seconds"] - summary.pop("child_seconds")
    summary["startup_seconds"] = outside + summary["fit_start_seconds"]
    summary["wall_to_target_seconds"] = (
        summary["startup_seconds"] + summary["seconds_to_target"] if summary["reached"] else None
    )
    summary["epoch_at_target"] = epoch
    summary["preset"] = preset
    summary["machine"] = machine_info()
    return summary


def format_time_to_target(result: dict[str, Any]) -> str:
    """A few lines summarizing :func:`run_time_to_target`."""
    target = result["target_error"]
    lines = []
    if result["reached"]:
        lines.append(
            f"reached test error <= {100 * target:.2f}% after {result['seconds_to_target']:.1f} s "
            f"of training (epoch {result['epoch_at_target']}, "
            f"iteration {result['iterations_to_target'] + 1}); "
            f"{result['wall_to_target_seconds']:.1f} s wall from process start"
        )
    else:
        lines.append(f"did NOT reach test error <= {100 * target:.2f}%")
    lines.append(
        f"final: best validation error {100 * result['best_valid_error']:.2f}% at epoch "
        f"{result['best_epoch']}, test error there {100 * result['test_error']:.2f}%; "
        f"{result['epochs_run']} epochs in {result['train_seconds']:.1f} s "
        f"({result['seconds_per_epoch']:.2f} s/epoch); {result['wall_seconds']:.1f} s wall from "
        f"process start to summary ({result['startup_seconds']:.1f} s of it starting: process, "
        f"imports, data loading); peak RSS {result['peak_rss_mb']:.0f} MB"
    )
    load, n = result["machine"]["load_average"], result["threads"]
    lines.append(
        f"(preset {result['preset']}, {n} thread{'s' if n != 1 else ''}, "
        f"fast path {'on' if result['fast_path'] else 'off'}, load average {load})"
    )
    return "\n".join(lines)
