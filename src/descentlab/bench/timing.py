"""Timing helpers shared by the benchmarks: interleaved repetitions, threads, machine facts.

On a shared machine the speed of the CPU drifts (other jobs, clocks, caches), so the
contenders of a benchmark are timed *interleaved* in one process — A B C, C B A, A B C,
... — and compared by their medians: a slow spell hits every contender alike, and the
ratio of the medians stays meaningful when the absolute numbers do not.
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch

from descentlab.errors import ConfigError

__all__ = [
    "check_counts",
    "interleaved",
    "machine_info",
    "summarize",
    "thread_limit",
    "timed",
    "timed_wall_cpu",
]


def check_counts(*counts: tuple[str, Any, int]) -> None:
    """Each ``(label, value, least)``: a whole number of at least ``least``, or ConfigError."""
    for label, value, low in counts:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"benchmark {label} must be an integer >= {low}, got {value!r}")


def _sync(device: torch.device | str | None) -> None:
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], *, device: torch.device | str | None = None) -> float:
    """Seconds ``fn()`` takes, with the device's queue drained before and after."""
    return timed_wall_cpu(fn, device=device)[0]


def timed_wall_cpu(
    fn: Callable[[], Any], *, device: torch.device | str | None = None
) -> tuple[float, float]:
    """Wall-clock and CPU seconds of ``fn()`` (CPU: this process, all its threads).

    On a machine shared with other jobs the CPU time is the steadier number: time the
    process spends waiting for a core does not count.  With several threads it includes
    the time OpenMP threads spin while waiting for each other.
    """
    _sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    _sync(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def interleaved(
    fns: Mapping[str, Callable[[], Any]],
    *,
    repeats: int,
    warmup: int = 1,
    device: torch.device | str | None = None,
    cpu: dict[str, list[float]] | None = None,
) -> dict[str, list[float]]:
    """Time every function ``repeats`` times, alternating between them.

    Each round calls every function once; odd rounds run in reverse order so that no
    contender always follows the same neighbour.  ``warmup`` rounds run first, untimed
    (allocator pools, caches, lazy initialization).  Returns the wall-clock seconds of
    each call; pass a dict as ``cpu`` to also get their CPU seconds.
    """
    check_counts(("repeats", repeats, 1), ("warmup", warmup, 0))
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    cpu_times = cpu if cpu is not None else {}
    cpu_times.update({name: [] for name in names})
    for rnd in range(repeats):
        order = names if rnd % 2 == 0 else names[::-1]
        for name in order:
            wall, used = timed_wall_cpu(fns[name], device=device)
            times[name].append(wall)
            cpu_times[name].append(used)
    return times


def summarize(seconds: list[float]) -> dict[str, float]:
    """Median, min and max of a list of timings."""
    return {
        "median_s": statistics.median(seconds),
        "min_s": min(seconds),
        "max_s": max(seconds),
    }


@contextlib.contextmanager
def thread_limit(threads: int | None) -> Iterator[int]:
    """Run torch — and the BLAS/OpenMP pools numpy and scikit-learn use — on ``threads``.

    ``None`` keeps torch's current setting and applies it to the other pools, so every
    contender computes with the same number of threads.  Yields the thread count.
    """
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
    ):
        raise ConfigError(f"threads must be a positive integer, got {threads!r}")
    before = torch.get_num_threads()
    n = before if threads is None else threads
    torch.set_num_threads(n)
    try:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # scikit-learn brings threadpoolctl; without it torch is all we set
            yield n
        else:
            with threadpool_limits(limits=n):
                # threadpoolctl also limits torch's own OpenMP pool; set it back explicitly.
                torch.set_num_threads(n)
                yield n
    finally:
        torch.set_num_threads(before)


def machine_info() -> dict[str, Any]:
    """What a reader needs to judge a timing: CPU count, load, versions, threads."""
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:  # not available on this platform
        load = None
    return {
        "cpus": os.cpu_count(),
        "load_average": load,
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
    }
