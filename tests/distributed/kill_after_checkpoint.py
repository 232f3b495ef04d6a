"""Run under torchrun by the tests: train, and SIGKILL the whole job right after the
checkpoint at a given iteration (as a crashed machine would), from rank 0."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from descentlab import fit
from descentlab.train.callbacks import Callback


class KillAt(Callback):
    reads_gradients = False

    def __init__(self, iteration: int) -> None:
        self.iteration = iteration

    def on_checkpoint(self, trainer: Any, path: Path) -> None:
        if trainer.iteration + 1 >= self.iteration:
            os.killpg(os.getpgid(0), signal.SIGKILL)  # the launcher and every rank


if __name__ == "__main__":
    options = json.loads(sys.argv[1])
    fit(callbacks=[KillAt(int(sys.argv[2]))], **options)
