"""Training: options, early stopping, the loop, events, run directories, checkpoints."""

from descentlab.train.api import default_callbacks, fit
from descentlab.train.callbacks import (
    Callback,
    Checkpointer,
    ConsoleLogger,
    MetricsFiles,
    ProgressBar,
    TensorBoardLogger,
)
from descentlab.train.config import PRESETS, TrainConfig, register_preset, resolve
from descentlab.train.early_stopping import EpochPatience, NoEarlyStopping, TutorialEarlyStopping
from descentlab.train.evaluate import Evaluation, evaluate
from descentlab.train.run_dir import Run, RunDirectory, load_run
from descentlab.train.trainer import FitResult, Trainer, TrainingInterrupted

__all__ = [
    "PRESETS",
    "Callback",
    "Checkpointer",
    "ConsoleLogger",
    "EpochPatience",
    "Evaluation",
    "FitResult",
    "MetricsFiles",
    "NoEarlyStopping",
    "ProgressBar",
    "Run",
    "RunDirectory",
    "TensorBoardLogger",
    "TrainConfig",
    "Trainer",
    "TrainingInterrupted",
    "TutorialEarlyStopping",
    "default_callbacks",
    "evaluate",
    "fit",
    "load_run",
    "register_preset",
    "resolve",
]
