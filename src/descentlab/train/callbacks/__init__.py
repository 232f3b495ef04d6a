"""The callbacks descentlab ships: console, progress bar, metric files, TensorBoard,
checkpoints, the run directory and the tutorial scripts' console lines (see
:mod:`descentlab.train.callbacks.base` for events)."""

from descentlab.train.callbacks.base import Callback, overrides
from descentlab.train.callbacks.checkpointer import Checkpointer
from descentlab.train.callbacks.console import ConsoleLogger, ProgressBar, RunHeader
from descentlab.train.callbacks.defaults import default_callbacks
from descentlab.train.callbacks.files import MetricsFiles, TensorBoardLogger
from descentlab.train.callbacks.run_directory import RunDirectory
from descentlab.train.callbacks.tutorial_log import LeNetTutorialLogger, TutorialLogger

__all__ = [
    "Callback",
    "Checkpointer",
    "ConsoleLogger",
    "LeNetTutorialLogger",
    "MetricsFiles",
    "ProgressBar",
    "RunDirectory",
    "RunHeader",
    "TensorBoardLogger",
    "TutorialLogger",
    "default_callbacks",
    "overrides",
]
