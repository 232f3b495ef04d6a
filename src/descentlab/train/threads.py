"""How many CPU threads a training run uses when ``--threads`` is not given.

More threads only help when there is enough work per parallel region and a free core to
run each thread.  On a 2-core machine the tutorial MLP's products at minibatch 20
(≈ 48 MFLOP a step) ran *no faster* with a second thread, and when another process held
one of the cores, every OpenMP region waited for a descheduled thread: an epoch of
``--preset dlt-mlp`` took 46.7 s instead of 2.3–3.9 s with one thread.  So the default is

    threads = 1                                      if the work per step is small
            = clamp(allowed − busy, 1, allowed)      otherwise

where ``allowed`` is the number of CPUs this process may run on
(``os.sched_getaffinity``) and ``busy`` the cores other processes keep busy
(:func:`busy_elsewhere`, rounded, capped at ``allowed``): the larger of the 1-minute load
average and the number of tasks running right now besides this process (Linux's
``/proc/loadavg``, the median of a few samples).  The average alone lags: a process
started 30 s ago adds only 0.4 to it, and rounds away.  The work per step is estimated as
``6 · (number of parameters) · (minibatch size)`` FLOPs — exact for the matrix products of
a dense network (forward, and the two products of the backward pass), a lower bound for a
convolutional one, whose weights are reused at every position.

:func:`choose_threads` is the rule, a pure function of those numbers; :func:`auto_threads`
gathers them for a model and minibatch size.

Evaluation is different work: one forward pass over thousands of examples per chunk, whose
products do gain from a second thread (the tutorial MLP scores 10,000 examples in 0.10 s on
one thread, 0.05 s on two, with bitwise the same logits), so a run whose thread count was
chosen (not given with ``--threads``) scores its validation and test sets on the cores
that are free at that moment (:func:`evaluation_threads`):

    eval threads = clamp(allowed − round(busy), training threads, allowed)

where ``busy`` is :func:`busy_elsewhere` with this process's own training threads taken
out of the load average (one sample of the running tasks: it is read at every validation).

The command line also sets OpenMP to wait passively (``OMP_WAIT_POLICY=PASSIVE``, read
once when torch loads its OpenMP runtime, so it is set before torch is imported; a value
the user set is kept): idle threads then sleep instead of spinning on a core another
process needs.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import dataclass

__all__ = [
    "SMALL_STEP_FLOPS",
    "ThreadChoice",
    "allowed_cpus",
    "auto_threads",
    "busy_elsewhere",
    "choose_threads",
    "evaluation_threads",
    "load_average",
    "step_flops",
]

#: Below this many FLOPs per training step, a second thread gains little (see the module
#: doc): the batch-20 tutorial MLP does 48 MFLOP a step, softmax regression at batch 600
#: 28 MFLOP; the batch-128 MLP (300 MFLOP, 1.3× faster with 2 threads) and LeNet do more.
SMALL_STEP_FLOPS = 1e8


@dataclass(frozen=True)
class ThreadChoice:
    """A thread count and the reason for it, in words for the console."""

    count: int
    reason: str

    def describe(self) -> str:
        return f"{self.count} thread{'s' if self.count != 1 else ''} ({self.reason})"


def choose_threads(
    *,
    allowed: int,
    load: float | None,
    flops_per_step: float | None,
    requested: int | None = None,
) -> ThreadChoice:
    """The thread count for a run (see the module docstring); a pure function.

    ``allowed``: CPUs this process may use; ``load``: the cores other processes keep busy,
    :func:`busy_elsewhere` (None when unknown: every allowed CPU counts as free);
    ``flops_per_step``: the estimated work of one training step (None when unknown:
    treated as large); ``requested``: ``--threads``.
    """
    if requested is not None:
        return ThreadChoice(requested, "--threads")
    allowed = max(1, allowed)
    if allowed == 1:
        return ThreadChoice(1, "one CPU available")
    if flops_per_step is not None and flops_per_step < SMALL_STEP_FLOPS:
        return ThreadChoice(
            1,
            f"{flops_per_step / 1e6:.0f} MFLOP per step gains little from a second thread",
        )
    if load is None or not math.isfinite(load):
        return ThreadChoice(allowed, f"{allowed} CPUs, load unknown")
    busy = min(allowed, max(0, round(load)))
    free = max(1, allowed - busy)
    return ThreadChoice(
        free, f"{load:.1f} cores busy elsewhere of {allowed}: {allowed - busy} free"
    )


def allowed_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        return os.cpu_count() or 1


def load_average() -> float | None:
    """The 1-minute load average, or None where the platform has none."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def step_flops(n_parameters: int, batch_size: int) -> float:
    """Estimated FLOPs of one training step: ``6 · parameters · minibatch``."""
    return 6.0 * n_parameters * batch_size


def _running_now() -> int | None:
    """Tasks running or runnable right now, this one included (Linux), else None."""
    try:
        with open("/proc/loadavg", encoding="ascii") as f:
            return int(f.read().split()[3].split("/")[0])
    except (OSError, IndexError, ValueError):
        return None


def busy_elsewhere(own: float = 0.0, *, samples: int = 1, interval: float = 0.0) -> float | None:
    """Cores other processes keep busy: max(1-minute load − ``own``, running now − 1).

    ``own``: this process's threads that the load average counts (0 at start-up, the
    training threads during training); "running now" is the median of ``samples``
    readings ``interval`` seconds apart, less the one thread reading it.  None where the
    platform reports neither.
    """
    average = load_average()
    counts = []
    for i in range(samples):
        if i:
            time.sleep(interval)
        count = _running_now()
        if count is not None:
            counts.append(count - 1)
    parts = [average - own] if average is not None else []
    parts += [float(statistics.median(counts))] if counts else []
    return max(parts) if parts else None


def auto_threads(
    n_parameters: int | None, batch_size: int, requested: int | None = None
) -> ThreadChoice:
    """:func:`choose_threads` for this machine, now, and a model of ``n_parameters``."""
    flops = step_flops(n_parameters, batch_size) if n_parameters is not None else None
    if requested is not None or (flops is not None and flops < SMALL_STEP_FLOPS):
        busy = None  # the load does not matter: no need to sample it
    else:
        busy = busy_elsewhere(samples=5, interval=0.01)
    return choose_threads(
        allowed=allowed_cpus(), load=busy, flops_per_step=flops, requested=requested
    )


def evaluation_threads(
    training: int, *, allowed: int | None = None, busy: float | None = None
) -> int:
    """Threads for scoring a split while ``training`` threads train (see the module doc).

    ``allowed`` and ``busy`` (cores other processes keep busy) default to this machine's,
    now; when nothing is known about the other processes the training count is kept.
    """
    allowed = allowed_cpus() if allowed is None else max(1, allowed)
    busy = busy_elsewhere(own=training) if busy is None else busy
    if busy is None or not math.isfinite(busy):
        return training
    others = min(allowed, max(0, round(busy)))
    return max(training, min(allowed, allowed - others))
