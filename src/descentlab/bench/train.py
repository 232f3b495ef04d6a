"""Epoch time of descentlab's trainer next to the strongest loops people write by hand.

``run_train_bench`` trains each workload with every contender
(:mod:`descentlab.bench.contenders`) at every thread count *in one process*, one epoch
at a time and interleaved (round 1: A B C D, round 2: D C B A, ..., each contender at
each thread count being one entry of the round), after ``warmup`` untimed epochs each,
and reports per contender and thread count the median seconds per epoch, the range, the
speedup over the **best** baseline at that thread count (its median divided by the
contender's), the fraction of the compute floor reached (:mod:`descentlab.bench.floor`)
and the test error after all the epochs it ran, so no contender can win by doing less
work::

    rows = run_train_bench(workloads=["mlp-tanh"], threads=[1, 2], repeats=5)
    print(format_train_table(rows))

The baselines only train; ``descentlab`` also validates and writes its checkpoint, so
its speedup is end to end, and ``descentlab train-only`` over it is the epoch overhead.
:func:`~descentlab.bench.target.run_time_to_target` (re-exported here) is
``bench time-to-target``.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from descentlab.bench.contenders import (
    CONTENDERS,
    DEFAULT_CONTENDERS,
    OURS,
    WORKLOADS,
    Workload,
    build_contenders,
    check_names,
)
from descentlab.bench.floor import Floor, compute_floor
from descentlab.bench.target import format_time_to_target, run_time_to_target
from descentlab.bench.timing import interleaved, machine_info, summarize, thread_limit
from descentlab.data import Dataset, load_dataset
from descentlab.errors import ConfigError

__all__ = [
    "CONTENDERS",
    "DEFAULT_CONTENDERS",
    "WORKLOADS",
    "Workload",
    "format_time_to_target",
    "format_train_table",
    "run_time_to_target",
    "run_train_bench",
]


def _thread_counts(threads: int | Sequence[int] | None) -> list[int]:
    """The thread counts to run (None: torch's current one), each a positive integer."""
    counts = [torch.get_num_threads()] if threads is None else threads
    if isinstance(counts, int):
        counts = [counts]
    out = list(dict.fromkeys(counts))
    for n in out:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"threads must be positive integers, got {threads!r}")
    if not out:
        raise ConfigError("no thread count chosen", hint="e.g. threads=[1, 2]")
    return out


@contextlib.contextmanager
def _private_compile_cache(folder: Path) -> Iterator[None]:
    """torch.compile's cache in ``folder`` unless the user chose one (TORCHINDUCTOR_CACHE_DIR).

    Processes of one user share ``/tmp/torchinductor_$USER``; a benchmark compiling while
    another process writes the same entry read a half-written library ("file too short")
    and had to skip its compiled loop.  A private cache also makes the compile time a
    cold one.
    """
    key = "TORCHINDUCTOR_CACHE_DIR"
    chosen = key in os.environ
    if not chosen:
        os.environ[key] = str(folder)
    try:
        yield
    finally:
        if not chosen:
            os.environ.pop(key, None)


def _on_threads(n: int, fn: Callable[[], None]) -> Callable[[], None]:
    def call() -> None:
        torch.set_num_threads(n)
        fn()

    return call


@dataclass
class _Measured:
    """One workload's contenders (keyed by (name, threads)), their epoch times and floors."""

    work: Workload
    entries: dict[tuple[str, int], Any]
    times: dict[tuple[str, int], list[float]]
    cpu: dict[tuple[str, int], list[float]]
    floors: dict[int, Floor]
    notes: list[str]
    load: list[Any]


def _measure(
    work: Workload,
    who: Sequence[str],
    data: Dataset,
    counts: Sequence[int],
    *,
    repeats: int,
    warmup: int,
    seed: int,
    scratch: Path,
) -> _Measured:
    """Build every contender at every thread count, take the floors, time the epochs."""
    notes: list[str] = []
    entries: dict[tuple[str, int], Any] = {}
    floors: dict[int, Floor] = {}
    n_train = int(data.train.y.shape[0])
    for n in counts:
        torch.set_num_threads(n)
        built = build_contenders(
            who, data, work, seed=seed, threads=n, scratch=scratch, notes=notes
        )
        entries.update({(name, n): c for name, c in built.items()})
        floors[n] = compute_floor(
            data.train.x[0].numel(), work.layers, data.n_classes, work.batch_size,
            n_train // work.batch_size,
        )  # fmt: skip
    fns = {f"{k[0]}@{k[1]}": _on_threads(k[1], c.train_epoch) for k, c in entries.items()}
    before = machine_info()
    cpu: dict[str, list[float]] = {}
    times = interleaved(fns, repeats=repeats, warmup=warmup, device=data.train.x.device, cpu=cpu)
    after = machine_info()
    keyed = {f"{k[0]}@{k[1]}": k for k in entries}
    return _Measured(
        work,
        entries,
        {keyed[label]: t for label, t in times.items()},
        {keyed[label]: t for label, t in cpu.items()},
        floors,
        list(dict.fromkeys(notes)),  # the same skip at each thread count, told once
        [before["load_average"], after["load_average"]],
    )


def _best(medians: dict[str, float]) -> str | None:
    """The fastest baseline (a contender that is not ours), or None without one."""
    baselines = {name: m for name, m in medians.items() if name not in OURS}
    return min(baselines, key=baselines.__getitem__) if baselines else None


def _rows(wname: str, m: _Measured, data: Dataset, common: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (contender, thread count) of a measured workload, thread count first."""
    rows: list[dict[str, Any]] = []
    for n, floor in m.floors.items():
        names = [name for name, k in m.entries if k == n]
        medians = {name: statistics.median(m.times[name, n]) for name in names}
        # The same from CPU seconds: on a loaded machine the wall clock also counts the
        # time the process waited for a core; with one thread CPU time does not.
        cpu_medians = {name: statistics.median(m.cpu[name, n]) for name in names}
        best, cpu_best = _best(medians), _best(cpu_medians)
        for name in names:
            stats, cpu_s = summarize(m.times[name, n]), cpu_medians[name]
            c = m.entries[name, n]
            rows.append({
                "workload": wname, "title": m.work.title, "contender": name,
                "detail": c.detail, **stats,
                "speedup": medians[best] / stats["median_s"] if best else None,
                "best_baseline": best,
                "cpu_median_s": cpu_s,
                "cpu_speedup": cpu_medians[cpu_best] / cpu_s if cpu_best else None,
                "cpu_floor_fraction": floor.seconds_per_epoch / cpu_s,
                "test_error": c.test_error(data),
                "compile_s": c.compile_s,
                "floor_s": floor.seconds_per_epoch,
                "floor_fraction": floor.seconds_per_epoch / stats["median_s"],
                "gemm_gflops": floor.gflops,
                "epoch_gflop": floor.gflop_per_epoch,
                "notes": m.notes, "fast_path": c.fast_path,
                "batch_size": m.work.batch_size, "threads": n, "load_average": m.load,
                **common,
            })  # fmt: skip
    return rows


def run_train_bench(
    workloads: Iterable[str] | None = None,
    contenders: Iterable[str] | None = None,
    *,
    repeats: int = 5,
    warmup: int = 1,
    threads: int | Sequence[int] | None = None,
    dataset: str | Dataset = "mnist",
    data_dir: str | None = None,
    subset: int | None = None,
    device: str = "cpu",
    seed: int = 1234,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Seconds per training epoch of each contender on each workload (see the module doc).

    ``threads``: one count or several (``[1, 2]``: every contender at each, interleaved
    in the same rounds); None: torch's current count.  Returns one row per (workload,
    thread count, contender) with ``workload``, ``title``, ``contender``, ``detail``,
    ``median_s``, ``min_s``, ``max_s``, ``speedup`` (the best baseline's median at the
    same thread count / this median; > 1 is faster than every plain loop; None without a
    baseline), ``best_baseline``, ``cpu_median_s``, ``cpu_speedup``, ``test_error`` (after
    all ``warmup + repeats`` epochs), ``epochs``, ``fast_path``, ``compile_s``
    (torch.compile's first step), ``floor_s`` and ``floor_fraction`` (the compute floor
    of the training products at that thread count and floor / median, see
    :func:`~descentlab.bench.floor.compute_floor`), ``cpu_floor_fraction``,
    ``gemm_gflops``, ``epoch_gflop``, ``notes``, ``n_train``, ``threads``, ``device`` and
    ``load_average`` (before, after).
    """
    work_names = check_names(workloads or list(WORKLOADS), list(WORKLOADS), "workload")
    who = check_names(contenders or list(DEFAULT_CONTENDERS), list(CONTENDERS), "contender")
    counts = _thread_counts(threads)
    if not isinstance(dataset, Dataset):
        dataset = load_dataset(dataset, data_dir=data_dir, subset=subset)
    data = dataset.to(device)
    n_train = int(data.train.y.shape[0])
    common: dict[str, Any] = {"epochs": warmup + repeats, "repeats": repeats, "warmup": warmup}
    common |= {"n_train": n_train, "device": device}
    rows: list[dict[str, Any]] = []
    with (
        thread_limit(max(counts)),
        tempfile.TemporaryDirectory() as tmp,
        _private_compile_cache(Path(tmp) / "inductor"),
    ):
        scratch = Path(tmp) / "runs"  # the run directories of the end-to-end contenders
        scratch.mkdir()
        for wname in work_names:
            work = WORKLOADS[wname]
            if work.batch_size > n_train:  # tiny datasets in tests: one minibatch per epoch
                work = replace(work, batch_size=n_train)
            if progress is not None:
                who_text = ", ".join(who)
                progress(f"{wname}: {who_text} at {counts} threads x {warmup}+{repeats} epochs")
            measured = _measure(
                work, who, data, counts, repeats=repeats, warmup=warmup, seed=seed,
                scratch=scratch,
            )  # fmt: skip
            rows += _rows(wname, measured, data, common)
    return rows


# ------------------------------------------------------------------------ the table
_PER_COUNT = ("s/epoch", "speedup", "of floor", "cpu speedup")


def _cells(r: dict[str, Any] | None) -> list[str]:
    if r is None:
        return ["-"] * len(_PER_COUNT)
    return [
        f"{r['median_s']:.3f}",
        f"{r['speedup']:.2f}×" if r["speedup"] is not None else "-",
        f"{100 * r['floor_fraction']:.0f}%",
        f"{r['cpu_speedup']:.2f}×" if r["cpu_speedup"] is not None else "-",
    ]


def _table_line(cells: Sequence[str], widths: list[int]) -> str:
    # Numbers right-aligned; the contender (first) and how (last) left-aligned.
    last = len(cells) - 1
    return "  ".join(
        c.ljust(w) if i in (0, last) else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
    ).rstrip()


def _workload_table(group: Sequence[dict[str, Any]]) -> list[str]:
    counts = list(dict.fromkeys(r["threads"] for r in group))
    by = {(r["contender"], r["threads"]): r for r in group}
    header = ["contender"]
    for n in counts:
        header += [f"{h} {n}t" if h == "s/epoch" else h for h in _PER_COUNT]
    header += ["test error", "how"]
    body = []
    for name in dict.fromkeys(r["contender"] for r in group):
        first = next(r for r in group if r["contender"] == name)
        cells = [name]
        for n in counts:
            cells += _cells(by.get((name, n)))
        body.append([*cells, f"{100 * first['test_error']:.2f}%", first["detail"]])
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    return [
        _table_line(header, widths),
        _table_line(["-" * w for w in widths], widths),
        *(_table_line(b, widths) for b in body),
    ]


def _workload_notes(group: Sequence[dict[str, Any]]) -> list[str]:
    first = group[0]
    loads = first["load_average"]
    floors = {r["threads"]: r for r in group}
    best = ", ".join(f"{r['best_baseline']} at {n}t" for n, r in floors.items())
    out = [
        f"(median of {first['repeats']} interleaved epochs after {first['warmup']} warm-up; "
        f"speedup = median of the best baseline at the same thread count "
        f"({best}) / median; of floor = compute floor / median; cpu "
        f"speedup the same from the process's CPU seconds; test error after "
        f"{first['epochs']} epochs; load average {loads[0]} -> {loads[1]})"
    ]
    out.append(
        f"(compute floor: {first['epoch_gflop']:.1f} GFLOP of matrix products per epoch; "
        + "; ".join(
            f"{n} thread{'s' if n != 1 else ''}: measured {r['gemm_gflops']:.0f} GFLOP/s "
            f"(torch.mm, these shapes) = {r['floor_s']:.3f} s/epoch"
            for n, r in floors.items()
        )
        + ")"
    )
    for r in group:
        if r["compile_s"] is not None:
            out.append(
                f"({r['contender']} at {r['threads']}t: compiling took "
                f"{r['compile_s']:.1f} s, not counted)"
            )
    return out + [f"({note})" for note in first["notes"]]


def format_train_table(rows: Sequence[dict[str, Any]]) -> str:
    """Plain-text tables of :func:`run_train_bench` rows, one per workload."""
    out: list[str] = []
    for wname in dict.fromkeys(r["workload"] for r in rows):
        group = [r for r in rows if r["workload"] == wname]
        first = group[0]
        counts = ",".join(str(n) for n in dict.fromkeys(r["threads"] for r in group))
        out.append(
            f"{wname}: {first['title']} ({first['n_train']} examples, batch "
            f"{first['batch_size']}, {counts} threads, {first['device']})"
        )
        out += [*_workload_table(group), *_workload_notes(group), ""]
    return "\n".join(out).rstrip()


#: Name used in docs/architecture.md.
bench_train = run_train_bench
