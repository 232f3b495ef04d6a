"""The console on a terminal: epoch lines and the progress bar do not leave stale lines."""

from __future__ import annotations

import io
import re
import sys

import descentlab
from descentlab.train import ConsoleLogger, ProgressBar


class FakeTerminal(io.StringIO):
    """stdout and stderr of a terminal: one stream, and it says it is a TTY."""

    def isatty(self) -> bool:
        return True


def screen(raw: str) -> list[str]:
    """What a terminal shows after ``raw``: ``\\r`` returns to the line start, ``ESC[A``
    moves up a line, other escape sequences are dropped, later text overwrites."""
    lines, row, col = [""], 0, 0
    for token in re.split(r"(\x1b\[[0-9;]*[A-Za-z]|\r|\n)", raw):
        if token == "\n":
            row, col = row + 1, 0
            if row == len(lines):
                lines.append("")
        elif token == "\r":
            col = 0
        elif token == "\x1b[A":
            row = max(0, row - 1)
        elif token.startswith("\x1b["):
            continue
        elif token:
            line = lines[row].ljust(col)
            lines[row] = line[:col] + token + line[col + len(token) :]
            col += len(token)
    return [line.rstrip() for line in lines if line.strip()]


def test_no_stale_progress_bar_above_the_epoch_lines(monkeypatch):
    term = FakeTerminal()
    monkeypatch.setattr(sys, "stdout", term)
    monkeypatch.setattr(sys, "stderr", term)
    descentlab.fit(
        "logreg",
        "digits",
        lr=0.1,
        batch_size=5,
        max_epochs=2,
        early_stopping="none",
        quiet=True,  # no default console: the two callbacks under test, a bar from 1 batch
        callbacks=[ConsoleLogger(), ProgressBar(min_batches=1)],
    )
    raw = term.getvalue()
    assert "epoch 1:" in raw and "batch" in raw  # a bar was drawn
    header, *shown = screen(raw)  # the ConsoleLogger's first line names the run
    assert header.startswith("descentlab: training logreg on digits"), header
    assert len(shown) == 2, shown  # the two epoch lines, nothing left of the bars
    # Before: "epoch 1:  80%|#######9  | 171/215 [...]epoch    1 | iter 215 | ..."
    assert all(re.match(r"epoch +\d+ \| iter +\d+ \| train nll", line) for line in shown), shown
    assert not any("batch/s" in line for line in shown), shown
