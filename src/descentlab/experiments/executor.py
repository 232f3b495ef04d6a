"""Where a sweep's runs execute: the :class:`Executor` seam, and the local process pool.

A sweep hands an executor a list of :class:`~descentlab.experiments.runs.RunTask`
and a callback; the executor runs each task with a *runner* (by default
:func:`~descentlab.experiments.runs.execute_run`) and reports every outcome as it
arrives.  :class:`LocalExecutor` is today's only implementation; a cluster executor
(e.g. Dask) implements the same two methods.

:class:`LocalExecutor` runs tasks in worker processes
(``concurrent.futures.ProcessPoolExecutor`` over the ``forkserver`` context where the
platform has it, else ``spawn``: never ``fork``, which copies a parent's torch thread
pools into the children).  Each worker runs with ``threads = max(1, cores // jobs)``
torch threads so ``jobs`` workers do not oversubscribe the CPU.  With ``jobs == 1``
the tasks run in this process.

Ctrl-C: workers ignore SIGINT between runs; during a run the trainer checkpoints and
stops; the parent then stops starting runs (queued tasks return ``cancelled``).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from types import TracebackType
from typing import Any

import torch

from descentlab.experiments.runs import RunTask, execute_run, failure
from descentlab.experiments.store import read_status
from descentlab.fsio import die_with_parent

__all__ = [
    "Executor",
    "LocalExecutor",
    "OnDone",
    "Runner",
    "available_cores",
    "default_jobs",
    "threads_per_job",
]

#: Runs one task and returns its outcome ``{"name", "status", "error", "wall_seconds"}``.
Runner = Callable[[RunTask], dict[str, Any]]
#: Called in the sweep's process with each task and its outcome, as outcomes arrive.
OnDone = Callable[[RunTask, dict[str, Any]], None]


def available_cores() -> int:
    """CPU cores this process may use (the affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def default_jobs() -> int:
    return available_cores()


def threads_per_job(jobs: int) -> int:
    """Torch threads per worker so that ``jobs`` workers share the cores without oversubscribing."""
    return max(1, available_cores() // max(1, jobs))


class Executor(ABC):
    """Where runs execute.  ``jobs`` runs at a time, ``threads`` torch threads each."""

    jobs: int
    threads: int

    @abstractmethod
    def map(self, tasks: Sequence[RunTask], on_done: OnDone) -> None:
        """Run every task; call ``on_done(task, outcome)`` in this process as each ends.

        Returns when every task has an outcome.  A KeyboardInterrupt stops the
        running tasks (they checkpoint), starts no more, and propagates.
        """

    @abstractmethod
    def close(self) -> None:
        """Release the workers (idempotent)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


#: Set in each worker by :func:`_worker_init`: the parent's "stop starting runs" flag.
_STOP: Any = None


def _worker_init(threads: int, stop: Any, parent: int | None = None) -> None:
    """Each worker: a fixed number of torch threads; Ctrl-C is left to the trainer.

    Between runs SIGINT is ignored (the parent decides what to do); during a run the
    trainer installs its own handler, which checkpoints and stops the run cleanly.
    """
    global _STOP
    _STOP = stop
    # A worker outlives nothing: when the sweep's process dies (even by kill -9) it
    # exits too, instead of finishing (and starting) runs nobody will collect.
    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)
    # Fails if already set or if parallel work already ran; either way it is harmless.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)


def _guarded(runner: Callable[[RunTask], dict[str, Any]], task: RunTask) -> dict[str, Any]:
    """Run ``task`` in a worker unless the sweep was interrupted in the meantime.

    The pool hands a task to a worker before the previous one ends, so cancelling the
    futures is not enough to stop a sweep: a task already queued checks the flag.
    """
    if _STOP is not None and _STOP.is_set():
        return {
            "name": task.name,
            "status": "cancelled",
            "error": "the sweep was interrupted before this run started",
            "wall_seconds": 0.0,
        }
    return runner(task)


def _mp_context() -> multiprocessing.context.BaseContext:
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        # Workers fork from a server that has torch and the trainer imported already,
        # so each starts in milliseconds rather than re-importing torch.  (Not
        # torch._dynamo: descentlab's optimizers never import it, see optim/_base.py.
        # A module that fails to import is skipped by the forkserver.)
        ctx.set_forkserver_preload(
            [
                "descentlab.experiments.executor",
                "descentlab.experiments.runs",
                "descentlab.train",
                # Registers the callback of the `diagnostics` option (by name: the
                # executor does not depend on the diagnostics, the workers just have it).
                "descentlab.diagnostics",
                "sklearn.datasets",
            ]
        )
        return ctx
    return multiprocessing.get_context("spawn")


class LocalExecutor(Executor):
    """Worker processes on this machine, kept across the stages of a sweep (started once)."""

    def __init__(self, jobs: int, threads: int, runner: Runner = execute_run) -> None:
        self.jobs = jobs
        self.threads = threads
        self.runner = runner
        self._pool: ProcessPoolExecutor | None = None
        self._stop: Any = None

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            ctx = _mp_context()
            self._stop = ctx.Event()
            self._pool = ProcessPoolExecutor(
                max_workers=self.jobs,
                mp_context=ctx,
                initializer=_worker_init,
                initargs=(self.threads, self._stop, os.getpid()),
            )
        return self._pool

    def interrupt(self, running: Iterable[Future[Any]] = (), grace: float = 3.0) -> None:
        """Stop everything: no new runs start, and the running ones checkpoint and stop.

        Ctrl-C on a terminal reaches the workers too, and their trainers checkpoint and
        stop within a step.  A SIGINT sent to this process alone does not: runs still
        going after ``grace`` seconds get one from here.  (Not at once: a trainer takes
        a *second* signal as "stop now, skip the checkpoint".)
        """
        if self._pool is None:
            return
        self._stop.set()
        _, still = wait(list(running), timeout=grace)
        if still:
            for proc in list(getattr(self._pool, "_processes", {}).values()):
                with contextlib.suppress(OSError):
                    os.kill(proc.pid, signal.SIGINT)
        self.discard()

    def discard(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def close(self) -> None:
        self.discard()

    def map(self, tasks: Sequence[RunTask], on_done: OnDone) -> None:
        """Run ``tasks`` on the workers (in this process when ``jobs == 1``).

        A worker that dies (killed, out of memory) breaks the whole pool: the runs that
        were in progress are recorded as failed (a re-run of the sweep retries them) and
        the runs not yet started go to a fresh pool.
        """
        if self.jobs <= 1:
            self._map_here(tasks, on_done)
            return
        pending = list(tasks)
        while pending:
            pending = self._map_pool(pending, on_done)

    def _map_here(self, tasks: Sequence[RunTask], on_done: OnDone) -> None:
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            for task in tasks:
                outcome = self.runner(task)
                on_done(task, outcome)
                if outcome["status"] == "interrupted":
                    # Ctrl-C reached the trainer (it checkpointed): stop the sweep too.
                    raise KeyboardInterrupt
        finally:
            torch.set_num_threads(previous)

    def _map_pool(self, tasks: Sequence[RunTask], on_done: OnDone) -> list[RunTask]:
        """One pool's worth of ``tasks``; returns those to retry on a fresh pool."""
        pool = self._get_pool()
        futures: dict[Future[dict[str, Any]], RunTask] = {
            pool.submit(_guarded, self.runner, t): t for t in tasks
        }
        finished_names: set[str] = set()

        def done(task: RunTask, outcome: dict[str, Any]) -> None:
            finished_names.add(task.name)
            on_done(task, outcome)

        broken = False
        try:
            remaining = set(futures)
            while remaining and not broken:
                finished, remaining = wait(remaining, return_when=FIRST_COMPLETED)
                for fut in finished:
                    task = futures[fut]
                    try:
                        done(task, fut.result())
                    except BrokenProcessPool:
                        broken = True
                    except Exception as exc:  # e.g. the task could not be sent to the worker
                        done(task, failure(task, f"{type(exc).__name__}: {exc}"))
        except KeyboardInterrupt:
            self.interrupt(running=[f for f in futures if not f.done()])
            raise
        if not broken:
            return []
        self.discard()
        retry = []
        for fut, task in futures.items():
            if task.name in finished_names:
                continue
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                done(task, fut.result())
            elif (read_status(Path(task.run_dir)) or {}).get("status") == "running":
                done(task, failure(task, _DIED))
            else:
                retry.append(task)
        return retry


_DIED = (
    "the worker process died while this run was in progress (this run or one running "
    "beside it was killed, e.g. out of memory); re-run the sweep to retry it"
)
