"""descentlab: train classifiers with minibatch SGD and the optimizers of Deep Learning ch. 8.

The public API, importable from the top level::

    import descentlab as dl
    result = dl.fit("mlp", "mnist", optimizer="adam", lr=1e-3, batch_size=128, max_epochs=20)
    run = dl.load_run("runs/...")

Submodules by concept: ``data``, ``models``, ``losses``, ``metrics``, ``optim``,
``train``, ``experiments``, ``bench``, ``sklearn``; each imports only from the layers
below it (docs/architecture.md).  Names are loaded lazily so ``import descentlab``
stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from descentlab._version import __version__
from descentlab.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    DescentlabError,
    DivergenceError,
)

_LAZY = {
    # training
    "fit": "descentlab.train",
    "Trainer": "descentlab.train",
    "TrainConfig": "descentlab.train",
    "FitResult": "descentlab.train",
    "Callback": "descentlab.train",
    "load_run": "descentlab.train",
    "Run": "descentlab.train",
    "evaluate": "descentlab.train",
    # data
    "load_dataset": "descentlab.data",
    "Dataset": "descentlab.data",
    "Split": "descentlab.data",
    "Batches": "descentlab.data",
    # models, optimizers, schedules, metrics
    "build_model": "descentlab.models",
    "build_optimizer": "descentlab.optim",
    "build_schedule": "descentlab.optim",
    "classification_report": "descentlab.metrics",
    "confusion_matrix": "descentlab.metrics",
    # scikit-learn
    "DescentClassifier": "descentlab.sklearn",
}

# Submodules, reachable as attributes after a bare ``import descentlab``.
_SUBMODULES = (
    "bench",
    "data",
    "experiments",
    "losses",
    "metrics",
    "models",
    "optim",
    "sklearn",
    "train",
)

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DescentlabError",
    "DivergenceError",
    "__version__",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"descentlab.{name}")
    raise AttributeError(f"module 'descentlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, *_SUBMODULES})
