"""Signal handling in-process (the real-process exit codes are in test_kill_resume.py)."""

from __future__ import annotations

import json
import os
import signal
import threading

import pytest
from relhelpers import QUICK, quick_fit

from descentlab.train import Callback, fit
from descentlab.train.trainer import TrainingInterrupted

pytestmark = pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(),
    reason="signal handlers can only be installed in the main thread",
)


class Send(Callback):
    """Send the given signals to this process right after iteration ``at``."""

    def __init__(self, at: int, *signals: int) -> None:
        self.at, self.signals = at, signals

    def on_step(self, trainer, iteration, loss) -> None:
        if iteration == self.at:
            for signum in self.signals:
                os.kill(os.getpid(), signum)


def test_sigterm_checkpoints_and_exits_143(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingInterrupted) as info:
        quick_fit(tmp_path / "run", extra=(Send(9, signal.SIGTERM),))
    assert info.value.exit_code == 143
    assert "SIGTERM" in str(info.value)
    meta = json.loads((tmp_path / "run" / "checkpoint" / "manifest.json").read_text())["meta"]
    assert meta["iteration"] == 10
    assert signal.getsignal(signal.SIGTERM) is before  # handlers are put back


def test_a_second_signal_stops_at_once_and_the_checkpoint_stays_intact(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        quick_fit(out, checkpoint_every=5, extra=(Send(12, signal.SIGINT, signal.SIGINT),))
    manifest = json.loads((out / "checkpoint" / "manifest.json").read_text())
    assert manifest["meta"]["iteration"] == 10  # the last regular checkpoint, not a new one
    assert not [p for p in (out / "checkpoint").iterdir() if ".tmp-" in p.name]
    quick_fit(out, checkpoint_every=5, resume=True)  # and it resumes


def test_without_a_run_directory_nothing_is_saved_and_it_says_so():
    with pytest.raises(TrainingInterrupted, match="no run directory, nothing saved"):
        fit(default_callbacks_=False, callbacks=[Send(3, signal.SIGINT)], **QUICK)
