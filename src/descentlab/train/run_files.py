"""Writing a run's files: the config, the best model, the predictions, the summary, the curve.

Each file is written atomically (temporary file, fsync, rename); the layout of the
folder and reading it back are :mod:`descentlab.train.run_dir`, and the callback that
calls these at the right events is :class:`~descentlab.train.callbacks.RunDirectory`.
"""

from __future__ import annotations

import copy
import errno
import hashlib
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors.torch import save
from torch import nn

from descentlab.data import Dataset
from descentlab.errors import CheckpointError
from descentlab.train.checkpoint import atomic_write_bytes
from descentlab.train.config import TrainConfig, save_config
from descentlab.train.records import RunSummary, ValidationRecord

if TYPE_CHECKING:
    from descentlab.train.records import FitResult

__all__ = [
    "MODEL_FILE",
    "model_metadata",
    "plot_history",
    "save_model",
    "tensors_digest",
    "write_config",
    "write_error",
    "write_results",
    "write_summary",
]

MODEL_FILE = "model.safetensors"


def model_metadata(model: nn.Module, data: Dataset, cfg: TrainConfig) -> dict[str, Any]:
    """What ``model.safetensors`` records next to the parameters (see :func:`load_run`)."""
    return {
        "model_spec": getattr(model, "descentlab_spec", None),
        "model": cfg.model,
        "input_shape": list(data.input_shape),
        "n_classes": data.n_classes,
        "class_names": data.class_names,
        "dataset": data.name,
        "input_scale": data.scale,
    }


def save_model(
    path: Path,
    model: nn.Module,
    meta: dict[str, Any],
    preprocessing: dict[str, torch.Tensor] | None = None,
) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    for k, v in (preprocessing or {}).items():
        tensors[f"__preprocessing__.{k}"] = v.detach().cpu().contiguous().float()
    meta_json = json.dumps(meta)
    metadata = {"descentlab": meta_json, "descentlab_sha256": tensors_digest(tensors, meta_json)}
    atomic_write_bytes(path, save(tensors, metadata=metadata))


def tensors_digest(tensors: dict[str, torch.Tensor], meta_json: str) -> str:
    """SHA-256 over the metadata and every tensor's name, dtype, shape and bytes.

    Recorded in ``model.safetensors`` when it is written and checked by ``load_run``
    before use, so a flipped byte anywhere in the parameters is refused, not used.
    """
    h = hashlib.sha256(meta_json.encode("utf-8"))
    for key in sorted(tensors):
        t = tensors[key].detach().cpu().contiguous()
        h.update(f"\0{key}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def write_config(path: Path, cfg: TrainConfig) -> None:
    """``config.toml``, atomically: a resume rewrites it, and a kill then must not leave half."""
    save_config(cfg, path / "config.toml")


def write_results(path: Path, result: FitResult, metadata: dict[str, Any]) -> None:
    """The best model, the test predictions and, last, ``summary.json``."""
    model = result.model
    if result.best_state is not None:
        model = _with_state(model, result.best_state)
    data = result.data
    stats = None
    if data is not None and data.mean is not None and data.std is not None:
        stats = {"mean": data.mean, "std": data.std}
    save_model(path / MODEL_FILE, model, metadata, stats)
    if result.test_predictions is not None:
        buffer = io.BytesIO()
        np.save(buffer, result.test_predictions.numpy(), allow_pickle=False)
        atomic_write_bytes(path / "test_predictions.npy", buffer.getvalue())


def write_summary(path: Path, summary: RunSummary) -> None:
    """``summary.json``: written last, its presence means the run finished."""
    atomic_write_bytes(
        path / "summary.json", json.dumps(summary.to_row(), indent=2).encode("utf-8")
    )


def plot_history(path: Path, history: Sequence[ValidationRecord | dict[str, Any]]) -> None:
    """``learning_curve.png`` from the validation rows, titled with the run's folder name."""
    # matplotlib is heavy: imported only when a curve is drawn.
    from descentlab.plots import plot_learning_curve

    rows = [row.to_row() if isinstance(row, ValidationRecord) else row for row in history]
    try:
        plot_learning_curve(rows, path / "learning_curve.png", title=f"run {path.name}")
    except OSError as exc:
        raise write_error(path / "learning_curve.png", exc) from None


def write_error(path: Path, exc: OSError) -> CheckpointError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return CheckpointError(f"disk full while writing {path}", hint="free some space")
    return CheckpointError(
        f"cannot write {path}: {exc.strerror or exc}", hint="choose a writable --out directory"
    )


def _with_state(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    clone = copy.deepcopy(model)
    clone.load_state_dict(state)
    return clone


# ------------------------------------------------------------------ reading
