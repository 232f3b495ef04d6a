"""The callbacks a run gets unless told otherwise (``fit``, ``descentlab train``)."""

from __future__ import annotations

from pathlib import Path

from descentlab.train.callbacks.base import Callback
from descentlab.train.callbacks.checkpointer import Checkpointer
from descentlab.train.callbacks.console import ConsoleLogger, ProgressBar
from descentlab.train.callbacks.files import MetricsFiles, TensorBoardLogger
from descentlab.train.callbacks.run_directory import RunDirectory
from descentlab.train.callbacks.tutorial_log import TutorialLogger
from descentlab.train.config import TrainConfig
from descentlab.train.distributed import env_is_main


def default_callbacks(cfg: TrainConfig, run_dir: Path | None) -> list[Callback]:
    """Console lines and progress bar (unless quiet), run files and checkpoints (with a run dir).

    In a data-parallel job only rank 0 prints and writes files; the other ranks keep the
    checkpointer, whose saves they skip, so that every rank reaches the same points.
    """
    if not env_is_main():
        return [Checkpointer(every_iterations=cfg.checkpoint_every)] if run_dir else []
    callbacks: list[Callback] = []
    if not cfg.quiet:
        if cfg.log_style == "tutorial":
            callbacks.append(TutorialLogger.for_model(cfg.model))
        else:
            callbacks += [ConsoleLogger(), ProgressBar()]
    if run_dir is not None:
        callbacks += [
            MetricsFiles(run_dir),
            RunDirectory(run_dir),
            Checkpointer(every_iterations=cfg.checkpoint_every),
        ]
        if cfg.tensorboard:
            callbacks.append(TensorBoardLogger(run_dir / "tensorboard"))
    return callbacks
