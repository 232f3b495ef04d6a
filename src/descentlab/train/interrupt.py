"""SIGINT/SIGTERM and checkpoint requests: work the loop does at the end of a step.

The signal handler only records the signal; the loop looks at
:attr:`Interrupts.pending` once per step, where the state is consistent, and then
writes a checkpoint and stops with :class:`TrainingInterrupted` (exit 130 / 143).  A
callback's checkpoint request (``Trainer.request_checkpoint``) rides on the same
once-per-step check.  A second signal while the first is pending (a stuck write, an
impatient user) stops at once with KeyboardInterrupt: every checkpoint write is atomic,
so the previous checkpoint is still intact.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from descentlab.errors import DescentlabError

__all__ = ["Interrupts", "TrainingInterrupted"]


class TrainingInterrupted(DescentlabError):
    """SIGINT/SIGTERM arrived; a checkpoint was written (exit 130 / 143)."""

    def __init__(self, signum: int, run_dir: Path | None) -> None:
        self.exit_code = 130 if signum == signal.SIGINT else 143
        name = signal.Signals(signum).name
        if run_dir is not None:
            super().__init__(
                f"interrupted by {name}; checkpoint written to {run_dir}",
                hint=f"continue with: descentlab train --resume {run_dir}",
            )
        else:
            super().__init__(
                f"interrupted by {name}; no run directory, nothing saved",
                hint="pass out=... to keep checkpoints",
            )


class Interrupts:
    """What is pending at the end of the current step: a signal and/or a checkpoint."""

    def __init__(self) -> None:
        self.pending: int | None = None  # not None: look at the rest at the end of the step
        self.signal: int | None = None  # SIGINT/SIGTERM received
        self.checkpoint_due = False  # a callback asked for a checkpoint

    def request_checkpoint(self) -> None:
        self.checkpoint_due = True
        if self.pending is None:
            self.pending = 0  # not a signal number: "work to do at the end of this step"

    def take(self) -> tuple[int | None, bool]:
        """``(signal, checkpoint due)``, clearing ``pending`` first.

        A signal arriving after this read sets ``pending`` again and is handled at the
        end of the next step.
        """
        self.pending = None
        return self.signal, self.checkpoint_due

    @contextlib.contextmanager
    def caught(self) -> Iterator[None]:
        """Record SIGINT/SIGTERM instead of raising (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        self.signal = None

        def handler(signum: int, frame: Any) -> None:
            if self.signal is not None:
                raise KeyboardInterrupt
            self.signal = signum
            self.pending = signum

        old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)
