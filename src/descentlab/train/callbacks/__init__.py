"""The callbacks descentlab ships: console, progress bar, metric files, TensorBoard,
checkpoints and the run directory (see :mod:`descentlab.train.callbacks.base` for events)."""

from descentlab.train.callbacks.base import Callback, overrides
from descentlab.train.callbacks.checkpointer import Checkpointer
from descentlab.train.callbacks.console import ConsoleLogger, ProgressBar, RunHeader
from descentlab.train.callbacks.files import MetricsFiles, TensorBoardLogger
from descentlab.train.callbacks.run_directory import RunDirectory

__all__ = [
    "Callback",
    "Checkpointer",
    "ConsoleLogger",
    "MetricsFiles",
    "ProgressBar",
    "RunDirectory",
    "RunHeader",
    "TensorBoardLogger",
    "overrides",
]
