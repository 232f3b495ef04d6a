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

from descentlab.errors import CheckpointError, DataError
from descentlab.models import build_model
from descentlab.train.callbacks import RunDirectory
from descentlab.train.config import TrainConfig, from_mapping, read_config_file
from descentlab.train.run_files import MODEL_FILE

__all__ = [
    "MODEL_FILE",
    "RUN_FILES",
    "Run",
    "RunDirectory",
    "check_run_dir",
    "default_run_dir",
    "load_run",
    "prepare_run_dir",
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
    name = cfg.name or f"{cfg.dataset.rsplit('/', 1)[-1]}-{cfg.model}-{cfg.optimizer}"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(root) / f"{stamp}-{name}"
    n = 1
    while path.exists():
        n += 1
        path = Path(root) / f"{stamp}-{name}-{n}"
    return path


def check_run_dir(path: str | Path, *, resume: bool = False) -> Path:
    """Refuse to mix a new run into an old one (checked before any work starts)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CheckpointError(f"{path} exists and is not a directory", hint="choose another --out")
    if resume or not path.is_dir():
        return path
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


def prepare_run_dir(path: str | Path, *, resume: bool = False) -> Path:
    """Create the run directory (after setup succeeded, so a bad option leaves nothing behind)."""
    path = check_run_dir(path, resume=resume)
    created = not path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
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
        x = torch.as_tensor(x, dtype=torch.float32)
        n_in = int(np.prod(shape))
        if x.ndim < 1 or x[0].numel() != n_in:
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
        return torch.softmax(self.model(x), dim=1)


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
    try:
        with safe_open(str(path / MODEL_FILE), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("descentlab", "{}"))
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    except Exception as exc:  # safetensors has its own error types
        raise CheckpointError(f"cannot read {path / MODEL_FILE}: {exc}") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path / MODEL_FILE} has damaged metadata")
    pre = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith("__preprocessing__.")}
    state = {k: v for k, v in tensors.items() if not k.startswith("__preprocessing__.")}
    if model is None:
        spec = meta.get("model_spec")
        if not spec:
            raise CheckpointError(
                f"{path} holds a custom model with no saved spec",
                hint="pass model=<an instance of the same module> to load_run",
            )
        try:
            model = build_model(**spec)
        except (TypeError, ValueError) as exc:
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
