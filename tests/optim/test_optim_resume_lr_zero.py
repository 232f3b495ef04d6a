"""A run whose schedule reached lr 0 resumes exactly (issue 12), through fit and the CLI.

Before the fix, ``load_state_dict`` re-validated the saved learning rate 0 as "must be
> 0", so ``descentlab train --resume`` of such a run failed with exit 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from descentlab.cli.main import main
from descentlab.train import Callback, fit
from descentlab.train.callbacks import Checkpointer, MetricsFiles, RunDirectory
from descentlab.train.checkpoint import load_checkpoint

# digits: 21 minibatches of 50 per epoch, 63 steps; the schedule reaches lr 0 at step 30.
RUN = dict(
    dataset="digits",
    model="mlp",
    hidden=(16,),
    batch_size=50,
    max_epochs=3,
    seed=3,
    threads=1,
    quiet=True,
)
EVERY = 8  # checkpoint every 8 steps: the 5th checkpoint (step 40) is past lr = 0


class _Crash(Exception):
    """Stands for kill -9: the run directory holds whatever was written last."""


class _CrashAfterCheckpoint(Callback):
    def __init__(self, n: int) -> None:
        self.n, self.seen = n, 0

    def on_checkpoint(self, trainer: Any, path: Path) -> None:
        self.seen += 1
        if self.seen == self.n:
            raise _Crash


def _fit(out: Path, extra: tuple[Callback, ...] = (), **options: Any) -> Any:
    callbacks = [MetricsFiles(out), RunDirectory(out, plot=False), Checkpointer(EVERY), *extra]
    return fit(out=str(out), default_callbacks_=False, callbacks=callbacks, **RUN, **options)


def _untimed(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if "seconds" not in k}


@pytest.mark.parametrize(
    "options",
    [
        dict(optimizer="momentum", lr=0.1, schedule="linear:tau=30,final_ratio=0"),
        dict(optimizer="adam", lr=0.01, schedule="linear:tau=30,final_ratio=0"),
    ],
    ids=["momentum", "adam"],
)
def test_resume_after_the_schedule_reached_lr_zero_is_exact(tmp_path, capsys, options):
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    _fit(ref, **options)
    with pytest.raises(_Crash):
        _fit(cut, extra=(_CrashAfterCheckpoint(5),), **options)
    state, _ = load_checkpoint(cut / "checkpoint")
    assert [g["lr"] for g in state["optimizer"]["param_groups"]] == [0.0]  # the point of it

    code = main(["train", "--resume", str(cut), "--quiet"])
    err = capsys.readouterr().err
    assert code == 0, err

    for a, b in zip(
        load_file(str(ref / "model.safetensors")).values(),
        load_file(str(cut / "model.safetensors")).values(),
    ):
        assert torch.equal(a, b)
    final_ref, _ = load_checkpoint(ref / "checkpoint")
    final_cut, _ = load_checkpoint(cut / "checkpoint")
    for key, value in final_ref["model"].items():
        assert torch.equal(value, final_cut["model"][key]), key
    summary = [json.loads((d / "summary.json").read_text()) for d in (ref, cut)]
    assert _untimed(summary[0]) == _untimed(summary[1])
