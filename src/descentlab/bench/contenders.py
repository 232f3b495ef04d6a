"""What ``descentlab bench train`` times: the workloads and the contenders that train them.

A :class:`Workload` is a model + optimizer + minibatch size, given identically to every
contender.  A contender is anything with ``train_epoch()`` (one epoch, timed), a
``test_error(data)`` (after all its epochs, so no contender can win by doing less work),
a ``detail`` (how it trains, in words), ``fast_path`` and ``compile_s``:

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

(:mod:`descentlab.bench.baselines` holds the baselines' code.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
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
from descentlab.data import Dataset
from descentlab.errors import ConfigError, did_you_mean
from descentlab.train import NeverValidate, TrainConfig, Trainer, default_callbacks, evaluate
from descentlab.train.run_dir import prepare_run_dir

__all__ = [
    "CONTENDERS",
    "DEFAULT_CONTENDERS",
    "OURS",
    "WORKLOADS",
    "Workload",
    "build_contenders",
    "check_names",
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

    @property
    def layers(self) -> tuple[int, ...]:
        """The hidden widths (none for softmax regression)."""
        return self.hidden if self.model == "mlp" else ()

    def baseline_spec(self) -> BaselineSpec:
        """The same numbers as the plain loops take them (the fields in BaselineSpec's order)."""
        return BaselineSpec(
            self.layers, self.activation, self.optimizer, self.lr, self.batch_size, self.l2
        )


WORKLOADS: dict[str, Workload] = {
    "logreg": Workload(
        "softmax regression, SGD lr 0.13, batch 600", "logreg", (), "tanh", "sgd", 0.13, 600,
        sklearn="sgd",
    ),
    "mlp-tanh": Workload(
        "MLP 500 tanh, SGD lr 0.01, batch 20, L2 1e-4", "mlp", (500,), "tanh", "sgd", 0.01, 20,
        l2=1e-4, sklearn="mlp",
    ),
    "mlp-adam": Workload(
        "MLP 500 relu, Adam lr 1e-3, batch 128", "mlp", (500,), "relu", "adam", 1e-3, 128
    ),
}  # fmt: skip

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
#: Ours; every other contender is a baseline.
OURS = ("descentlab", "descentlab train-only", "descentlab plain")


class DescentlabContender:
    """The trainer; with a ``run_dir``: as ``descentlab train`` runs it, files and all."""

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


class TorchContender:
    """One of the plain PyTorch loops of :mod:`descentlab.bench.baselines`."""

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


class SklearnContender:
    """scikit-learn's nearest estimator, one ``partial_fit`` pass per epoch."""

    def __init__(self, data: Dataset, work: Workload) -> None:
        x = data.train.x.flatten(1).cpu().numpy()
        y = data.train.y.cpu().numpy()
        spec = work.baseline_spec()
        # SGDClassifier computes in float64: hand it float64, not a per-epoch conversion.
        self.dtype = np.float64 if work.sklearn == "sgd" else np.float32
        cls = SklearnSGD if work.sklearn == "sgd" else SklearnMLP
        self.model: SklearnSGD = cls(x.astype(self.dtype), y, data.n_classes, spec)
        self.detail = self.model.label
        self.fast_path = None
        self.compile_s = None

    def train_epoch(self) -> None:
        # scikit-learn's BLAS pool follows torch's thread count of the moment (the
        # benchmark switches it per epoch); threadpoolctl comes with scikit-learn.
        from threadpoolctl import threadpool_limits

        n = torch.get_num_threads()
        with threadpool_limits(limits=n):
            torch.set_num_threads(n)  # threadpoolctl also limits torch's OpenMP pool
            self.model.train_epoch()

    def test_error(self, data: Dataset) -> float:
        x = data.test.x.flatten(1).cpu().numpy().astype(self.dtype)
        return float(np.mean(self.model.predict(x) != data.test.y.cpu().numpy()))


def check_names(names: Iterable[str], known: Sequence[str], what: str) -> list[str]:
    """``names`` as a list, or :class:`ConfigError` naming an unknown one (or none)."""
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


def build_contenders(
    names: Sequence[str],
    data: Dataset,
    work: Workload,
    *,
    seed: int,
    threads: int,
    scratch: Path,
    notes: list[str],
) -> dict[str, Any]:
    """The contenders that apply to ``work`` (scikit-learn only on the CPU, if it has one).

    A baseline that cannot be built (``torch.compile`` without a C++ compiler) is left
    out with a one-line reason appended to ``notes``.
    """
    entries: dict[str, Any] = {}
    for name in names:
        if name == "descentlab":
            run_dir = scratch / f"run-{len(list(scratch.iterdir()))}"
            entries[name] = DescentlabContender(
                data, work, fast=True, seed=seed, threads=threads, run_dir=run_dir
            )
        elif name in ("descentlab train-only", "descentlab plain"):
            fast = name == "descentlab train-only"
            entries[name] = DescentlabContender(data, work, fast=fast, seed=seed, threads=threads)
        elif name in _LOOPS:
            try:
                entries[name] = TorchContender(_LOOPS[name], data, work, seed)
            except Exception as exc:  # torch.compile needs a C++ compiler; report, go on
                first = (str(exc).strip().splitlines() or [""])[0]
                notes.append(f"{name} skipped: {type(exc).__name__}: {first[:160]}")
        elif work.sklearn is not None and data.train.x.device.type == "cpu":
            entries[name] = SklearnContender(data, work)
    return entries
