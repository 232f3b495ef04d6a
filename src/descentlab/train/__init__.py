"""Training: options, early stopping, the loop, events, run directories, checkpoints."""

from descentlab.train.api import default_callbacks, fit, register_option_callback
from descentlab.train.callbacks import (
    Callback,
    Checkpointer,
    ConsoleLogger,
    MetricsFiles,
    ProgressBar,
    RunDirectory,
    TensorBoardLogger,
)
from descentlab.train.config import PRESETS, TrainConfig, register_preset, resolve
from descentlab.train.early_stopping import (
    EpochPatience,
    NeverValidate,
    NoEarlyStopping,
    TutorialEarlyStopping,
)
from descentlab.train.evaluate import Evaluation, evaluate
from descentlab.train.interrupt import TrainingInterrupted
from descentlab.train.records import FitResult, RunSummary, ValidationRecord
from descentlab.train.run_dir import Run, load_run
from descentlab.train.trainer import Trainer

__all__ = [
    "PRESETS",
    "Callback",
    "Checkpointer",
    "ConsoleLogger",
    "EpochPatience",
    "Evaluation",
    "FitResult",
    "MetricsFiles",
    "NeverValidate",
    "NoEarlyStopping",
    "ProgressBar",
    "Run",
    "RunDirectory",
    "RunSummary",
    "TensorBoardLogger",
    "TrainConfig",
    "Trainer",
    "TrainingInterrupted",
    "TutorialEarlyStopping",
    "ValidationRecord",
    "default_callbacks",
    "evaluate",
    "fit",
    "load_run",
    "register_option_callback",
    "register_preset",
    "resolve",
]
