"""The run directory: everything a finished (or interrupted) run leaves behind.

RUN_DIR/
  config.toml          the resolved options (re-run with --config RUN_DIR/config.toml)
  metrics.jsonl/.csv   one row per validation
  summary.json         the numbers of the run (errors are fractions in [0, 1])
  model.safetensors    the best parameters + what is needed to rebuild the model
  test_predictions.npy predictions on the test set at the best validation point
  learning_curve.png   train NLL, valid and test error against epochs
  diagnostics.png      λmax vs its bound, ‖g‖ and error (with --diagnostics N)
  checkpoint/          the latest resumable state (see checkpoint.py)

Every file is written atomically (temporary file, fsync, rename), so a crash
leaves each one either as it was or complete.  ``summary.json`` is written last:
its presence means the run finished.  A new run refuses a folder that already
holds any of these files, so it never overwrites someone's work.
"""

from __future__ import annotations

import contextlib
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from torch import nn

from descentlab.data import Dataset
from descentlab.errors import CheckpointError, DataError, DescentlabError
from descentlab.fsio import LOCK_FILE, check_folder, check_name, probe_writable
from descentlab.limits import check_bytes
from descentlab.models import build_model
from descentlab.train.callbacks import RunDirectory
from descentlab.train.config import TrainConfig, from_mapping, read_config_file
from descentlab.train.run_files import MODEL_FILE, tensors_digest

__all__ = [
    "MODEL_FILE",
    "RUN_FILES",
    "Run",
    "RunDirectory",
    "check_run_dir",
    "default_run_dir",
    "has_checkpoint",
    "load_run",
    "prepare_run_dir",
    "unfinished_without_checkpoint",
]

# Everything a run writes into its folder (a new run refuses to overwrite any of it).
RUN_FILES = (
    "config.toml",
    "metrics.jsonl",
    "metrics.csv",
    "summary.json",
    MODEL_FILE,
    "test_predictions.npy",
    "learning_curve.png",
    "learning_curve.svg",
    "diagnostics.png",
    "checkpoint",
    "tensorboard",
)


def default_run_dir(cfg: TrainConfig, root: str | Path = "runs") -> Path:
    """``runs/<timestamp>-<name>``; the name defaults to dataset-model-optimizer."""
    if cfg.name is not None:
        check_name(cfg.name, "--name")
        name = cfg.name
    else:
        default = f"{Path(cfg.dataset).name}-{cfg.model}-{cfg.optimizer}"
        # A derived name is made safe rather than refused (the dataset may be any path).
        name = "".join(c if c.isalnum() or c in "-_." else "_" for c in default)[:120]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(root) / f"{stamp}-{name}"
    n = 1
    while path.exists():
        n += 1
        path = Path(root) / f"{stamp}-{name}-{n}"
    return path


def check_run_dir(path: str | Path, *, resume: bool = False) -> Path:
    """Refuse to mix a new run into an old one (checked before any work starts)."""
    path = check_folder(path)
    if resume or not path.is_dir():
        return path
    if unfinished_without_checkpoint(path):
        return path  # its own partial files are rewritten: a run restarts in place
    if (path / "summary.json").exists() or (path / "checkpoint").exists():
        raise CheckpointError(
            f"{path} already holds a run", hint="choose another --out, or continue it with --resume"
        )
    clashing = [name for name in RUN_FILES if (path / name).exists()]
    if clashing:
        raise CheckpointError(
            f"{path} already holds {', '.join(clashing)}, which a new run would overwrite",
            hint="choose another --out (a new or empty folder)",
        )
    return path


def has_checkpoint(path: Path) -> bool:
    """Whether ``path/checkpoint`` holds a checkpoint (a manifest or a state record)."""
    folder = path / "checkpoint"
    return (folder / "manifest.json").is_file() or any(folder.glob("state-*.json"))


def unfinished_without_checkpoint(path: Path) -> bool:
    """A run that was stopped (killed, disk full) before its first checkpoint.

    It left its lock file or its ``config.toml`` (proof that descentlab made the
    folder), maybe metrics files, but no checkpoint and no summary: nothing in it can
    be resumed or lost, so running again in the same folder starts it over instead of
    refusing.  A folder holding anything else is never taken over.
    """
    if not path.is_dir() or (path / "summary.json").exists() or has_checkpoint(path):
        return False
    ours = set(RUN_FILES) | {LOCK_FILE}
    if not all(p.name in ours or p.name.startswith(".") for p in path.iterdir()):
        return False
    config = path / "config.toml"
    if not config.is_file():
        return (path / LOCK_FILE).is_file()
    try:
        from_mapping(read_config_file(config), where=str(config))
    except DescentlabError:
        return False
    return True


def prepare_run_dir(path: str | Path, *, resume: bool = False) -> Path:
    """Create the run directory (after setup succeeded, so a bad option leaves nothing behind)."""
    path = check_run_dir(path, resume=resume)
    created = not path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe_writable(path)
    except OSError as exc:
        if created:
            with contextlib.suppress(OSError):
                path.rmdir()  # leave nothing behind
        raise CheckpointError(
            f"run directory {path} is not writable ({exc.strerror})",
            hint="choose a writable --out directory",
        ) from None
    return path


def _read_json_file(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path} is damaged ({exc})", hint="restore it or delete it"
        ) from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{path} is damaged (not a JSON object)")
    return value


def read_model_file(file: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The metadata and tensors of ``model.safetensors``, checked against its checksum.

    Sizes are checked first (the file's own size against the byte limit), and the
    SHA-256 recorded when the file was written (``descentlab_sha256``) must match the
    tensors read back; files from before checksums were recorded are read unchecked.
    """
    try:
        check_bytes(file.stat().st_size, str(file), error=CheckpointError)
        with safe_open(str(file), framework="pt") as f:
            raw_meta = f.metadata() or {}
            meta_json = raw_meta.get("descentlab", "{}")
            meta = json.loads(meta_json)
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    except DescentlabError:
        raise
    except Exception as exc:  # safetensors has its own error types
        raise CheckpointError(f"cannot read {file}: {exc}") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{file} has damaged metadata")
    recorded = raw_meta.get("descentlab_sha256")
    if recorded is not None and tensors_digest(tensors, meta_json) != recorded:
        raise CheckpointError(
            f"{file} is damaged (checksum mismatch)",
            hint="restore it from a backup or train the run again",
        )
    shape = meta.get("input_shape")
    if not (
        isinstance(shape, list)
        and shape
        and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)
    ):
        raise CheckpointError(f"{file} has damaged metadata (input_shape {shape!r})")
    scale = meta.get("input_scale")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, int | float)):
        raise CheckpointError(f"{file} has damaged metadata (input_scale {scale!r})")
    return meta, tensors


@dataclass
class Run:
    """A finished run read back from its directory."""

    path: Path
    config: TrainConfig
    summary: dict[str, Any]
    history: list[dict[str, Any]]
    model: nn.Module
    metadata: dict[str, Any]
    preprocessing: dict[str, torch.Tensor]

    def check_data(self, data: Dataset) -> None:
        """Refuse a dataset whose examples or classes do not fit this run's model."""
        shape = tuple(self.metadata["input_shape"])
        n_classes = self.metadata.get("n_classes")
        if tuple(data.input_shape) != shape:
            raise DataError(
                f"{data.name} has examples of shape {tuple(data.input_shape)} but the run's "
                f"model takes {shape}",
                hint="evaluate on a dataset of the same shape as the training data",
            )
        if isinstance(n_classes, int) and data.n_classes > n_classes:
            raise DataError(
                f"{data.name} has {data.n_classes} classes but the run's model predicts "
                f"{n_classes}",
                hint="evaluate on a dataset with the training data's classes",
            )

    def predict(self, x: torch.Tensor, *, scaled: bool | None = None) -> torch.Tensor:
        """Class predictions for raw inputs (the run's scaling and standardization applied).

        ``scaled``: see :meth:`predict_proba`.
        """
        return self.predict_proba(x, scaled=scaled).argmax(dim=1)

    @torch.inference_mode()
    def predict_proba(self, x: torch.Tensor, *, scaled: bool | None = None) -> torch.Tensor:
        """Class probabilities for ``x``.

        The model was trained on inputs divided by the dataset's scale (255 for
        pixels).  ``scaled=False`` says ``x`` holds raw values (pixels 0..255),
        ``scaled=True`` that it is already divided (what ``load_dataset`` returns);
        ``None`` decides from the values: fractions in [0, 1] cannot be raw pixels,
        so they are taken as scaled, with a warning saying so.
        """
        shape = tuple(self.metadata["input_shape"])
        x = torch.as_tensor(np.asarray(x, dtype=np.float64) if not torch.is_tensor(x) else x)
        n_in = int(np.prod(shape))
        if x.ndim < 1 or len(x) == 0:
            raise DataError(
                f"no inputs to predict (shape {tuple(x.shape)})",
                hint="pass at least one example",
            )
        if not bool(torch.isfinite(x).all()):
            raise DataError(
                "inputs hold NaN or infinite values", hint="impute or drop those examples"
            )
        x = x.to(torch.float32)
        if not bool(torch.isfinite(x).all()):
            raise DataError(
                "inputs hold values too large for float32 (beyond ~3.4e38)",
                hint="rescale the inputs to the training data's range",
            )
        if x[0].numel() != n_in:
            got = x[0].numel() if x.ndim >= 1 and len(x) else 0
            raise DataError(
                f"inputs have {got} features per example but the model expects {n_in} "
                f"(shape {shape})",
                hint="pass data with the training data's shape",
            )
        x = x.reshape(len(x), *shape)
        scale = float(self.metadata.get("input_scale") or 1.0)
        if scaled is None:
            scaled = scale > 1 and looks_scaled(x)
            if scaled:
                warnings.warn(
                    f"inputs lie in [0, 1] with fractional values, but this model takes raw "
                    f"values up to {scale:g}: treating them as already scaled "
                    "(pass scaled=True or scaled=False to say which)",
                    UserWarning,
                    stacklevel=3,
                )
        if scale != 1.0 and not scaled:
            x = x / scale
        if "mean" in self.preprocessing:
            x = (x - self.preprocessing["mean"]) / self.preprocessing["std"]
        self.model.eval()
        proba = torch.softmax(self.model(x), dim=1)
        if not bool(torch.isfinite(proba).all()):
            raise DataError(
                "the model's outputs are not finite for these inputs (values far outside "
                "the training data's range overflow)",
                hint="rescale the inputs to the training data's range",
            )
        return proba


def looks_scaled(x: torch.Tensor) -> bool:
    """Inputs already divided by their scale: all in [0, 1], some not whole numbers."""
    if not x.numel():
        return False
    return bool(x.min() >= 0 and x.max() <= 1 and (x != x.round()).any())


def load_run(path: str | Path, *, model: nn.Module | None = None) -> Run:
    """Read a run directory: config, summary, history and the best model.

    ``model`` is needed only for runs of custom modules (no saved spec).
    """
    path = Path(path)
    if not (path / MODEL_FILE).is_file() or not (path / "config.toml").is_file():
        raise CheckpointError(
            f"{path} is not a finished descentlab run (no {MODEL_FILE})",
            hint="pass a directory written by 'descentlab train'",
        )
    config = from_mapping(read_config_file(path / "config.toml"), where=str(path / "config.toml"))
    summary = _read_json_file(path / "summary.json") if (path / "summary.json").exists() else {}
    history = []
    if (path / "metrics.jsonl").exists():
        try:
            lines = (path / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
            history = [json.loads(line) for line in lines if line.strip()]
        except (OSError, ValueError) as exc:
            raise CheckpointError(
                f"{path / 'metrics.jsonl'} is damaged ({exc})", hint="restore it or delete it"
            ) from None
    meta, tensors = read_model_file(path / MODEL_FILE)
    pre = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith("__preprocessing__.")}
    state = {k: v for k, v in tensors.items() if not k.startswith("__preprocessing__.")}
    if model is None:
        spec = meta.get("model_spec")
        if not spec:
            raise CheckpointError(
                f"{path} holds a custom model with no saved spec",
                hint="pass model=<an instance of the same module> to load_run",
            )
        if not isinstance(spec, dict) or not all(isinstance(k, str) for k in spec):
            raise CheckpointError(f"{path / MODEL_FILE} has a damaged model spec")
        try:
            model = build_model(**spec)
        except DescentlabError as exc:
            raise CheckpointError(f"{path / MODEL_FILE}: {exc}") from None
        except (TypeError, ValueError, AttributeError, KeyError, RuntimeError) as exc:
            raise CheckpointError(
                f"{path / MODEL_FILE} has a model spec this descentlab cannot build ({exc})"
            ) from None
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:200]
        raise CheckpointError(
            f"the parameters in {path / MODEL_FILE} do not fit the model ({detail})",
            hint="pass the model the run was trained with",
        ) from None
    model.eval()
    return Run(
        path=path,
        config=config,
        summary=summary,
        history=history,
        model=model,
        metadata=meta,
        preprocessing=pre,
    )
