"""Epoch time of descentlab's trainer next to the strongest loops people write by hand.

``run_train_bench`` trains each workload with every contender *in one process*, one epoch
at a time and interleaved (round 1: A B C D, round 2: D C B A, ...), after ``warmup``
untimed epochs each, and reports per contender the median seconds per epoch, the range,
the speedup over the **best** baseline (its median divided by the contender's), the
fraction of the compute floor reached (:mod:`descentlab.bench.floor`) and the test error
after all the epochs it ran, so no contender can win by doing less work::

    rows = run_train_bench(workloads=["mlp-tanh"], repeats=5)
    print(format_train_table(rows))

Contenders (see :mod:`descentlab.bench.baselines` for the baselines' code):

``descentlab``             the trainer end to end, as ``descentlab train`` runs it: fast
                           path, a validation (and test at a new best) at each epoch's
                           end, the checkpoint and the run files
``descentlab train-only``  the trainer's epoch without validation or files
``descentlab plain``       the epoch by autograd (``fast_path=False``)
``torch loop``             the strongest plain loop: fused ``torch.optim``, L2 as
                           ``weight_decay`` on the weights, pre-sliced minibatches
``torch.compile loop``     the same with ``torch.compile(model)`` (compile time apart)
``naive loop``             L2 added to the loss, optimizer defaults (the tutorials' port)
``DataLoader loop``        the naive loop over ``DataLoader(TensorDataset(x, y))``
``scikit-learn``           ``SGDClassifier`` / ``MLPClassifier``, one ``partial_fit``

The baselines only train; ``descentlab`` also validates and writes its checkpoint, so
its speedup is end to end, and ``descentlab train-only`` over it is the epoch overhead.

``run_time_to_target`` trains a preset (``fast-mnist``) in a child process and reports the
seconds until the test error at the best validation point reached the target, with the
child's peak memory.
"""

from __future__ import annotations

import multiprocessing
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from descentlab.bench.baselines import (
    BaselineSpec,
    CompiledLoop,
    DataLoaderLoop,
    NaiveLoop,
    SklearnMLP,
    SklearnSGD,
    TorchLoop,
)
from descentlab.bench.floor import compute_floor
from descentlab.bench.timing import interleaved, machine_info, summarize, thread_limit
from descentlab.data import Dataset, load_dataset
from descentlab.errors import ConfigError, DescentlabError, did_you_mean
from descentlab.train import (
    NeverValidate,
    TrainConfig,
    Trainer,
    default_callbacks,
    evaluate,
    resolve,
)
from descentlab.train.run_dir import prepare_run_dir

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


@dataclass(frozen=True)
class Workload:
    """A model + optimizer + minibatch size, given identically to every contender."""

    title: str
    model: str  # "logreg" or "mlp"
    hidden: tuple[int, ...]
    activation: str
    optimizer: str  # "sgd" or "adam"
    lr: float
    batch_size: int
    l2: float = 0.0
    sklearn: str | None = None  # "sgd" (SGDClassifier), "mlp" (MLPClassifier) or None

    def baseline_spec(self) -> BaselineSpec:
        return BaselineSpec(
            hidden=self.hidden if self.model == "mlp" else (),
            activation=self.activation,
            optimizer=self.optimizer,
            lr=self.lr,
            batch_size=self.batch_size,
            l2=self.l2,
        )


WORKLOADS: dict[str, Workload] = {
    "logreg": Workload(
        "softmax regression, SGD lr 0.13, batch 600",
        "logreg",
        (),
        "tanh",
        "sgd",
        0.13,
        600,
        sklearn="sgd",
    ),
    "mlp-tanh": Workload(
        "MLP 500 tanh, SGD lr 0.01, batch 20, L2 1e-4",
        "mlp",
        (500,),
        "tanh",
        "sgd",
        0.01,
        20,
        l2=1e-4,
        sklearn="mlp",
    ),
    "mlp-adam": Workload(
        "MLP 500 relu, Adam lr 1e-3, batch 128",
        "mlp",
        (500,),
        "relu",
        "adam",
        1e-3,
        128,
    ),
}

CONTENDERS: tuple[str, ...] = (
    "descentlab",
    "descentlab train-only",
    "descentlab plain",
    "torch loop",
    "torch.compile loop",
    "naive loop",
    "DataLoader loop",
    "scikit-learn",
)
#: What ``bench train`` runs without ``--contenders``.
DEFAULT_CONTENDERS: tuple[str, ...] = (
    "descentlab",
    "descentlab train-only",
    "torch loop",
    "torch.compile loop",
    "naive loop",
)
_OURS = ("descentlab", "descentlab train-only", "descentlab plain")


class _DescentlabContender:
    """The trainer; ``end_to_end``: as ``descentlab train`` runs it, files and all."""

    def __init__(
        self,
        data: Dataset,
        work: Workload,
        *,
        fast: bool,
        seed: int,
        threads: int,
        run_dir: Path | None = None,
    ) -> None:
        cfg = TrainConfig(
            dataset=data.name,
            model=work.model,
            hidden=work.hidden if work.model == "mlp" else (500,),
            activation=work.activation,
            optimizer=work.optimizer,
            lr=work.lr,
            batch_size=work.batch_size,
            l2=work.l2,
            seed=seed,
            device=str(data.train.x.device),
            fast_path=fast,
            threads=threads,
            quiet=True,
            early_stopping="none",  # validates at every epoch's end, never stops
            out=str(run_dir) if run_dir is not None else None,
        )
        if run_dir is None:
            # Training alone: the rule that never validates, no files.
            self.trainer = Trainer(cfg, data=data, stopper=NeverValidate())
        else:
            self.trainer = Trainer(
                cfg, data=data, callbacks=default_callbacks(cfg, run_dir), run_dir=run_dir
            )
            prepare_run_dir(run_dir)
            self.trainer.emit("on_train_start")
        self.fast_path = self.trainer.fast_path is not None
        self.detail = "Trainer, fast path" if self.fast_path else "Trainer, autograd"
        if fast and not self.fast_path:
            self.detail += f" ({self.trainer.fast_path_reason})"
        if run_dir is not None:
            self.detail += " + validation, checkpoint, files"
        self.compile_s: float | None = None

    def train_epoch(self) -> None:
        self.trainer.run_epoch()

    def test_error(self, data: Dataset) -> float:
        return evaluate(self.trainer.model, data.test, n_classes=data.n_classes).error


class _TorchContender:
    def __init__(self, cls: type[TorchLoop], data: Dataset, work: Workload, seed: int) -> None:
        torch.manual_seed(seed)
        self.loop = cls(data.train.x, data.train.y, data.n_classes, work.baseline_spec())
        optim = "Adam" if work.optimizer == "adam" else "SGD"
        self.detail = f"{cls.detail}, torch.optim.{optim}"
        self.fast_path = None
        self.compile_s = getattr(self.loop, "compile_s", None)

    def train_epoch(self) -> None:
        self.loop.train_epoch()

    def test_error(self, data: Dataset) -> float:
        pred = self.loop.predict(data.test.x)
        return float((pred != data.test.y).double().mean())


class _SklearnContender:
    def __init__(self, data: Dataset, work: Workload) -> None:
        x = data.train.x.flatten(1).cpu().numpy()
        y = data.train.y.cpu().numpy()
        spec = work.baseline_spec()
        if work.sklearn == "sgd":
            # SGDClassifier computes in float64: hand it float64, not a per-epoch conversion.
            self.model: SklearnSGD = SklearnSGD(x.astype(np.float64), y, data.n_classes, spec)
        else:
            self.model = SklearnMLP(x, y, data.n_classes, spec)
        self.detail = self.model.label
        self.fast_path = None
        self.compile_s = None

    def train_epoch(self) -> None:
        self.model.train_epoch()

    def test_error(self, data: Dataset) -> float:
        x = data.test.x.flatten(1).cpu().numpy()
        if isinstance(self.model, SklearnMLP):
            pred = self.model.predict(x)
        else:
            pred = self.model.predict(x.astype(np.float64))
        return float(np.mean(pred != data.test.y.cpu().numpy()))


def _check_names(names: Iterable[str], known: Sequence[str], what: str) -> list[str]:
    out = list(names)
    for name in out:
        if name not in known:
            raise ConfigError(f"unknown benchmark {what} {name!r}", hint=did_you_mean(name, known))
    if not out:
        raise ConfigError(f"no benchmark {what} chosen", hint="valid: " + ", ".join(known))
    return out


_LOOPS: dict[str, type[TorchLoop]] = {
    "torch loop": TorchLoop,
    "torch.compile loop": CompiledLoop,
    "naive loop": NaiveLoop,
    "DataLoader loop": DataLoaderLoop,
}


def _contenders(
    names: Sequence[str],
    data: Dataset,
    work: Workload,
    *,
    device: str,
    seed: int,
    threads: int,
    scratch: Path,
    notes: list[str],
) -> dict[str, Any]:
    """The contenders that apply to ``work`` (scikit-learn only on the CPU, if it has one)."""
    entries: dict[str, Any] = {}
    for name in names:
        if name == "descentlab":
            run_dir = scratch / f"run-{len(list(scratch.iterdir()))}"
            entries[name] = _DescentlabContender(
                data, work, fast=True, seed=seed, threads=threads, run_dir=run_dir
            )
        elif name in ("descentlab train-only", "descentlab plain"):
            fast = name == "descentlab train-only"
            entries[name] = _DescentlabContender(data, work, fast=fast, seed=seed, threads=threads)
        elif name in _LOOPS:
            try:
                entries[name] = _TorchContender(_LOOPS[name], data, work, seed)
            except Exception as exc:  # torch.compile needs a C++ compiler; report, go on
                notes.append(f"{name} skipped: {type(exc).__name__}: {str(exc)[:160]}")
        elif work.sklearn is not None and torch.device(device).type == "cpu":
            entries[name] = _SklearnContender(data, work)
    return entries


def run_train_bench(
    workloads: Iterable[str] | None = None,
    contenders: Iterable[str] | None = None,
    *,
    repeats: int = 5,
    warmup: int = 1,
    threads: int | None = None,
    dataset: str | Dataset = "mnist",
    data_dir: str | None = None,
    subset: int | None = None,
    device: str = "cpu",
    seed: int = 1234,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Seconds per training epoch of each contender on each workload (see the module doc).

    Returns one row per (workload, contender) with ``workload``, ``title``, ``contender``,
    ``detail``, ``median_s``, ``min_s``, ``max_s``, ``speedup`` (the best baseline's
    median / this median; > 1 is faster than every plain loop; None without a baseline),
    ``best_baseline``, ``cpu_median_s``, ``test_error`` (after all ``warmup + repeats``
    epochs), ``epochs``, ``fast_path``, ``compile_s`` (torch.compile's first step),
    ``floor_s`` and ``floor_fraction`` (the compute floor of the training products and
    floor / median, see :func:`~descentlab.bench.floor.compute_floor`), ``gemm_gflops``,
    ``notes``, ``n_train``, ``threads``, ``device`` and ``load_average`` (before, after).
    """
    work_names = _check_names(workloads or list(WORKLOADS), list(WORKLOADS), "workload")
    who = _check_names(contenders or list(DEFAULT_CONTENDERS), list(CONTENDERS), "contender")
    if isinstance(dataset, Dataset):
        data = dataset
    else:
        data = load_dataset(dataset, data_dir=data_dir, subset=subset)
    data = data.to(device)
    rows: list[dict[str, Any]] = []
    with thread_limit(threads) as n_threads, tempfile.TemporaryDirectory() as tmp:
        for wname in work_names:
            work = WORKLOADS[wname]
            n_train = int(data.train.y.shape[0])
            if work.batch_size > n_train:  # tiny datasets in tests: one minibatch per epoch
                work = replace(work, batch_size=n_train)
            notes: list[str] = []
            entries = _contenders(
                who,
                data,
                work,
                device=device,
                seed=seed,
                threads=n_threads,
                scratch=Path(tmp),
                notes=notes,
            )
            if progress is not None:
                progress(f"{wname}: {', '.join(entries)} x {warmup}+{repeats} epochs")
            floor = compute_floor(
                data.train.x[0].numel(), work.hidden if work.model == "mlp" else (),
                data.n_classes, work.batch_size, n_train // work.batch_size,
            )  # fmt: skip
            before = machine_info()
            cpu: dict[str, list[float]] = {}
            times = interleaved(
                {name: c.train_epoch for name, c in entries.items()},
                repeats=repeats,
                warmup=warmup,
                device=device,
                cpu=cpu,
            )
            after = machine_info()
            medians = {name: statistics.median(t) for name, t in times.items()}
            baselines = {n: m for n, m in medians.items() if n not in _OURS}
            best = min(baselines, key=baselines.__getitem__) if baselines else None
            # The same from CPU seconds: on a loaded machine the wall clock also counts the
            # time the process waited for a core; with one thread CPU time does not.
            cpu_medians = {name: statistics.median(t) for name, t in cpu.items()}
            cpu_base = {n: m for n, m in cpu_medians.items() if n not in _OURS}
            cpu_best = min(cpu_base.values()) if cpu_base else None
            for name, c in entries.items():
                stats = summarize(times[name])
                rows.append(
                    {
                        "workload": wname,
                        "title": work.title,
                        "contender": name,
                        "detail": c.detail,
                        **stats,
                        "speedup": baselines[best] / stats["median_s"] if best else None,
                        "best_baseline": best,
                        "cpu_median_s": cpu_medians[name],
                        "cpu_speedup": cpu_best / cpu_medians[name] if cpu_best else None,
                        "cpu_floor_fraction": floor.seconds_per_epoch / cpu_medians[name],
                        "test_error": c.test_error(data),
                        "compile_s": c.compile_s,
                        "floor_s": floor.seconds_per_epoch,
                        "floor_fraction": floor.seconds_per_epoch / stats["median_s"],
                        "gemm_gflops": floor.gflops,
                        "epoch_gflop": floor.gflop_per_epoch,
                        "notes": notes,
                        "epochs": warmup + repeats,
                        "repeats": repeats,
                        "warmup": warmup,
                        "fast_path": c.fast_path,
                        "n_train": n_train,
                        "batch_size": work.batch_size,
                        "threads": n_threads,
                        "device": device,
                        "load_average": [before["load_average"], after["load_average"]],
                    }
                )
    return rows


def format_train_table(rows: Sequence[dict[str, Any]]) -> str:
    """Plain-text tables of :func:`run_train_bench` rows, one per workload."""
    out: list[str] = []
    header = (
        "contender",
        "s/epoch",
        "min–max",
        "speedup",
        "of floor",
        "cpu s",
        "cpu speedup",
        "cpu of floor",
        "test error",
        "how",
    )
    for wname in dict.fromkeys(r["workload"] for r in rows):
        group = [r for r in rows if r["workload"] == wname]
        first = group[0]
        out.append(
            f"{wname}: {first['title']} ({first['n_train']} examples, batch "
            f"{first['batch_size']}, {first['threads']} threads, {first['device']})"
        )
        body = [
            (
                r["contender"],
                f"{r['median_s']:.3f}",
                f"{r['min_s']:.3f}–{r['max_s']:.3f}",
                f"{r['speedup']:.2f}×" if r["speedup"] is not None else "-",
                f"{100 * r['floor_fraction']:.0f}%",
                f"{r['cpu_median_s']:.3f}",
                f"{r['cpu_speedup']:.2f}×" if r["cpu_speedup"] is not None else "-",
                f"{100 * r['cpu_floor_fraction']:.0f}%",
                f"{100 * r['test_error']:.2f}%",
                r["detail"],
            )
            for r in group
        ]
        widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
        out += [
            _table_line(header, widths),
            _table_line(["-" * w for w in widths], widths),
            *(_table_line(b, widths) for b in body),
        ]
        loads = first["load_average"]
        out.append(
            f"(median of {first['repeats']} interleaved epochs after {first['warmup']} "
            f"warm-up; speedup = median of the best baseline ({first['best_baseline']}) / "
            f"median; of floor = compute floor / median; cpu s = CPU seconds of the process "
            f"per epoch, cpu speedup and cpu of floor the same from it; test error after "
            f"{first['epochs']} epochs; load average "
            f"{loads[0]} -> {loads[1]})"
        )
        out.append(
            f"(compute floor: {first['epoch_gflop']:.1f} GFLOP of matrix products per epoch "
            f"at the measured {first['gemm_gflops']:.0f} GFLOP/s (torch.mm, these shapes) = "
            f"{first['floor_s']:.3f} s/epoch)"
        )
        for r in group:
            if r["compile_s"] is not None:
                out.append(
                    f"({r['contender']}: compiling took {r['compile_s']:.1f} s, not counted)"
                )
        out += [f"({note})" for note in first["notes"]]
        out.append("")
    return "\n".join(out).rstrip()


def _table_line(cells: Sequence[str], widths: list[int]) -> str:
    # Numbers (columns 1-8) right-aligned, names and notes left-aligned.
    return "  ".join(
        c.rjust(w) if 1 <= i <= 8 else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
    ).rstrip()


# ------------------------------------------------------------------- time to target
def _time_to_target_child(options: dict[str, Any], queue: Any) -> None:
    """Runs in a fresh process: train, then report the summary and this process's peak RSS."""
    start = time.perf_counter()
    try:
        preset = options.pop("preset")
        cfg = resolve(preset_name=preset, overrides=options)
        trainer = Trainer(cfg)  # what fit() does without a run directory or console output
        result = trainer.fit()
        summary = dict(result.summary)
        summary["history"] = [
            {k: row[k] for k in ("epoch", "valid_error", "test_error", "seconds")}
            for row in result.history
        ]
        summary["fast_path"] = trainer.fast_path is not None
        summary["threads"] = torch.get_num_threads()
        summary["child_seconds"] = time.perf_counter() - start
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

    The run happens in a child process (``subprocess=False``: in this one) so that its
    peak resident memory can be measured alone (``resource.getrusage``).  Returns the
    trainer's summary plus ``reached`` (bool), ``seconds_to_target`` (from the start of
    training to the validation at which the test error at the best validation point first
    was ``<= target``; None if never), ``epoch_at_target``, ``wall_seconds`` (everything:
    starting the process, importing torch, loading the data, training, evaluating),
    ``peak_rss_mb`` (of the process that trained) and a short ``history``.
    """
    if not (isinstance(target, int | float) and 0 < target < 1):
        raise ConfigError(f"target must be an error rate in (0, 1), got {target!r}")
    options: dict[str, Any] = {
        "preset": preset,
        "target_error": float(target),
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
            f"iteration {result['iterations_to_target'] + 1})"
        )
    else:
        lines.append(f"did NOT reach test error <= {100 * target:.2f}%")
    lines.append(
        f"final: best validation error {100 * result['best_valid_error']:.2f}% at epoch "
        f"{result['best_epoch']}, test error there {100 * result['test_error']:.2f}%; "
        f"{result['epochs_run']} epochs in {result['train_seconds']:.1f} s "
        f"({result['seconds_per_epoch']:.2f} s/epoch); {result['wall_seconds']:.1f} s wall in "
        f"all (process start, imports, data loading); peak RSS {result['peak_rss_mb']:.0f} MB"
    )
    load = result["machine"]["load_average"]
    lines.append(
        f"(preset {result['preset']}, {result['threads']} threads, "
        f"fast path {'on' if result['fast_path'] else 'off'}, load average {load})"
    )
    return "\n".join(lines)


#: Name used in docs/architecture.md.
bench_train = run_train_bench
