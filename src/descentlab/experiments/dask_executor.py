"""Running a sweep's runs on a Dask cluster: :class:`DaskExecutor`.

``descentlab compare|study ... --scheduler tcp://HOST:8786`` hands each run of the sweep
to an existing ``dask.distributed`` cluster (``dask scheduler`` + ``dask worker``, or
dask-jobqueue on SLURM/PBS) instead of the local process pool.  The plan, the store and
the reports do not change: only where :func:`~descentlab.experiments.runs.execute_run`
is called.  Dask is optional (``pip install descentlab[dask]``) and imported only here,
only when a scheduler is given.

* Shared storage.  Workers write the run directories straight into the sweep folder,
  so it must be the same folder for every worker and for this process.  Before any run
  each worker writes a probe file there and this process reads it back; if one is
  missing the sweep stops with one line naming the fix.
* A worker that dies.  The scheduler gives its run to another worker (up to
  ``distributed.scheduler.allowed-failures`` times); the run continues from its last
  checkpoint, because the function that runs on the worker decides fresh/resume from
  the run directory itself (:func:`run_on_worker`), not from what was known at submit.
* Nothing twice.  Each run's task key is derived from its run directory, so a rerun of
  the command (or a second client) attaches to a run still in the cluster instead of
  starting it again; runs already finished are skipped by the store's status as with
  the local pool.
* A client that dies.  Its futures are released when the scheduler notices the lost
  connection, so runs not yet started are forgotten (a run already executing finishes
  and is kept: the next invocation finds it done).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import uuid
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from descentlab.errors import ConfigError, DescentlabError
from descentlab.experiments.executor import Executor, OnDone, Runner
from descentlab.experiments.runs import RunTask, execute_run, failure
from descentlab.experiments.store import RUN_STATUS, read_status, run_state

__all__ = ["DaskExecutor", "run_on_worker", "task_key", "write_probe"]

PROBE_PREFIX = ".descentlab-probe-"


def task_key(task: RunTask) -> str:
    """The run's task key on the cluster: the same for the same run directory."""
    digest = hashlib.sha1(str(Path(task.run_dir).resolve()).encode()).hexdigest()[:16]
    return f"descentlab-run-{task.name}-{digest}"


def run_on_worker(runner: Runner, task: RunTask) -> dict[str, Any]:
    """What a worker executes: decide fresh/resume/done from the run directory, then run.

    Deciding here (not when the task was submitted) is what lets a run retried after its
    worker died continue from the checkpoint that worker left behind.
    """
    run_dir = Path(task.run_dir)
    state = run_state(run_dir, task.options)
    if state == "done":
        status = read_status(run_dir) or {}
        return {"name": task.name, "status": "ok", "error": None,
                "wall_seconds": float(status.get("wall_seconds", 0.0))}  # fmt: skip
    if state == "fresh" and run_dir.exists():
        shutil.rmtree(run_dir)
    if state == "resume":
        (run_dir / RUN_STATUS).unlink(missing_ok=True)
    return runner(replace(task, resume=state == "resume"))


def write_probe(folder: str, token: str) -> str:
    """On a worker: write ``folder/.descentlab-probe-TOKEN-HOST-PID``; return its path."""
    path = Path(folder) / f"{PROBE_PREFIX}{token}-{socket.gethostname()}-{os.getpid()}"
    try:
        path.write_text(token, encoding="utf-8")
    except OSError as exc:
        return f"!{path}: {exc.strerror}"
    return str(path)


class DaskExecutor(Executor):
    """The runs of a sweep as tasks on a ``dask.distributed`` cluster at ``address``."""

    def __init__(
        self,
        address: str,
        *,
        threads: int = 1,
        runner: Runner = execute_run,
        connect_timeout: float = 30.0,
    ) -> None:
        try:
            # optional heavy dependency (descentlab[dask]): imported only for --scheduler
            from dask.distributed import Client
        except ImportError as exc:
            raise ConfigError(
                f"--scheduler needs dask.distributed, which cannot be imported ({exc})",
                hint="pip install 'descentlab[dask]'",
            ) from None
        try:
            self.client = Client(address, timeout=f"{connect_timeout}s", set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise ConfigError(
                f"cannot reach the Dask scheduler at {address} ({type(exc).__name__})",
                hint="start one with `dask scheduler` and pass its address, e.g. "
                "--scheduler tcp://HOST:8786",
            ) from None
        self.address = address
        self.threads = threads
        self.runner = runner
        workers = self.client.scheduler_info().get("workers", {})
        self.jobs = max(1, sum(int(w.get("nthreads", 1)) for w in workers.values()))

    def check_shared(self, folder: Path) -> None:
        """Refuse a sweep folder that the workers do not share with this process."""
        folder.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex[:12]
        try:
            self.client.wait_for_workers(1, timeout=60)
            written = self.client.run(write_probe, str(folder), token)
        except ModuleNotFoundError as exc:
            raise ConfigError(
                f"the Dask workers cannot import {exc.name}",
                hint="install descentlab (with the [dask] extra) in the workers' environment",
            ) from None
        except (OSError, TimeoutError) as exc:
            raise ConfigError(
                f"the Dask cluster at {self.address} has no worker ({type(exc).__name__})",
                hint="start workers with `dask worker " + self.address + "`",
            ) from None
        try:
            for worker, path in written.items():
                if path.startswith("!") or not Path(path).is_file():
                    raise ConfigError(
                        f"the sweep folder {folder} is not shared with Dask worker {worker} "
                        f"(its probe file {path.lstrip('!')} is not visible here)",
                        hint="put --out on storage every worker mounts at the same path "
                        "(NFS, a shared home), e.g. --out /shared/sweeps/NAME",
                    )
        finally:
            for stale in folder.glob(f"{PROBE_PREFIX}{token}-*"):
                stale.unlink(missing_ok=True)

    def map(self, tasks: Sequence[RunTask], on_done: OnDone) -> None:
        """Submit every task, report outcomes as they arrive; Ctrl-C cancels the rest."""
        from dask.distributed import as_completed  # optional dependency, see __init__

        futures = {
            self.client.submit(run_on_worker, self.runner, t, key=task_key(t), pure=False): t
            for t in tasks
        }
        try:
            for future in as_completed(list(futures), loop=self.client.loop):
                task = futures[future]
                try:
                    outcome = future.result()
                except DescentlabError as exc:
                    outcome = failure(task, str(exc))
                except Exception as exc:  # e.g. KilledWorker: it died on too many workers
                    outcome = failure(task, f"{type(exc).__name__}: {exc}")
                on_done(task, outcome)
        except KeyboardInterrupt:
            self.client.cancel(list(futures))
            raise
        finally:
            self.client.cancel([f for f in futures if not f.done()])

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None and client.status not in ("closed", "closing"):
            client.close()
