"""Interrupted-and-resumed runs are bit-identical to uninterrupted ones (in-process).

Two kinds of interruption, at points drawn at random (seeded by the case name, so a
failure names its own reproduction):

* SIGINT delivered to this process after a random validation or checkpoint: the
  trainer finishes the step, writes a checkpoint and raises ``TrainingInterrupted``;
* a crash right after a random checkpoint (the in-process stand-in for ``kill -9``:
  the work since that checkpoint is lost), tested for real with SIGKILL in
  ``test_kill_resume.py``.

After ``fit(resume=True)`` the final parameters, optimizer/schedule/averaging/
early-stopping state, best model, summary numbers and every metrics row (timings
aside) must equal the uninterrupted run's.
"""

from __future__ import annotations

import json
import random
import threading

import pytest
from relhelpers import Crash, CrashAfterCheckpoint, SigintAfter, assert_same_run, quick_fit

from descentlab.train import Callback
from descentlab.train.trainer import TrainingInterrupted

# Together these cover every optimizer, every schedule (step- and epoch-wise, the plateau
# rule), both averages, dropout, batch norm, shuffling, a kept partial batch, penalties,
# clipping, gradient-norm logging and all three early-stopping rules.
CASES: dict[str, dict] = {
    "sgd-linear-tutorial-es": dict(
        optimizer="sgd",
        lr=0.2,
        schedule="linear:tau=60,final_ratio=0.1",
        validation_frequency=8,
        patience=40,
    ),
    "momentum-step-l1l2": dict(
        optimizer="momentum", lr=0.05, schedule="step:step_size=1,gamma=0.7", l1=1e-4, l2=1e-3
    ),
    "nesterov-plateau-polyak": dict(
        optimizer="nesterov",
        lr=0.05,
        momentum=0.9,
        schedule="plateau:factor=0.5,patience=0",
        polyak_start=30,
    ),
    "adagrad-exp-epochs-es": dict(
        optimizer="adagrad", lr=0.1, schedule="exp:gamma=0.8", early_stopping="epochs", patience=1
    ),
    "rmsprop-ema-shuffle": dict(optimizer="rmsprop", lr=0.003, ema=0.9, shuffle=True),
    "rmsprop-nesterov-inv": dict(
        optimizer="rmsprop-nesterov", lr=0.002, momentum=0.5, schedule="inv:t0=20"
    ),
    "adam-dropout-shuffle-keeplast": dict(
        optimizer="adam", lr=0.003, dropout=0.3, shuffle=True, drop_last=False
    ),
    "adadelta-batchnorm-none-es": dict(
        optimizer="adadelta", lr=1.0, batch_norm=True, early_stopping="none"
    ),
    "torch-adamw-clip-gradnorm": dict(
        optimizer="torch.AdamW", lr=0.003, clip_norm=0.5, log_grad_norm=True, monitor="valid_nll"
    ),
}
EVERY = 8  # --checkpoint-every


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """Uninterrupted runs, computed once per case."""
    root = tmp_path_factory.mktemp("references")
    cache: dict[str, object] = {}

    def get(name: str):
        if name not in cache:
            cache[name] = quick_fit(root / name, checkpoint_every=EVERY, **CASES[name])
        return root / name, cache[name]

    return get


def _iterations(run) -> int:
    return json.loads((run / "summary.json").read_text())["iterations"]


def _resumed_from(out) -> int:
    return json.loads((out / "checkpoint" / "manifest.json").read_text())["meta"]["iteration"]


@pytest.mark.parametrize("name", list(CASES))
def test_crash_then_sigint_then_resume_is_bit_identical(name, tmp_path, references):
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers can only be installed in the main thread")
    ref_dir, _ = references(name)
    total = _iterations(ref_dir)
    rng = random.Random(name)
    out = tmp_path / "run"
    # 1. crash right after a random checkpoint: what came after it is lost
    n = rng.randint(1, total // EVERY)
    with pytest.raises(Crash):
        quick_fit(out, checkpoint_every=EVERY, extra=(CrashAfterCheckpoint(n),), **CASES[name])
    start = _resumed_from(out)
    # 2. resume; SIGINT after a random later validation or checkpoint: the trainer
    #    finishes the step, checkpoints and stops
    event = rng.choice(["validation", "checkpoint"])
    sigint = SigintAfter(event, rng.randint(1, 2))
    with pytest.raises(TrainingInterrupted) as info:
        quick_fit(out, checkpoint_every=EVERY, resume=True, extra=(sigint,), **CASES[name])
    assert info.value.exit_code == 130
    assert f"descentlab train --resume {out}" in str(info.value)
    assert start < _resumed_from(out) <= total
    # 3. resume to the end
    quick_fit(out, checkpoint_every=EVERY, resume=True, **CASES[name])
    assert_same_run(ref_dir, out)


def test_interrupt_at_an_epoch_boundary(tmp_path, references):
    """The last step of an epoch and the first of the next: epoch-end work exactly once."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers can only be installed in the main thread")
    name = "adagrad-exp-epochs-es"  # epoch-wise schedule and epoch-wise early stopping
    ref_dir, _ = references(name)
    # 21 batches per epoch, validated at its end: SIGINT at the validation of epoch 1
    # stops after iteration 21 (its last step, before the epoch-end work); SIGINT at
    # the epoch-end checkpoint stops after iteration 22 (the first step of epoch 2).
    for event, stopped_at in (("validation", 21), ("checkpoint", 22)):
        out = tmp_path / event
        with pytest.raises(TrainingInterrupted):
            quick_fit(out, extra=(SigintAfter(event, 1),), **CASES[name])
        assert _resumed_from(out) == stopped_at
        quick_fit(out, checkpoint_every=EVERY, resume=True, **CASES[name])
        assert_same_run(ref_dir, out)


def test_early_stopped_run_killed_before_its_summary_does_not_train_on(tmp_path, references):
    """The last checkpoint of an early-stopped run records why it stopped."""
    options = dict(
        optimizer="adagrad",
        lr=0.1,
        early_stopping="epochs",
        patience=1,
        min_delta=0.03,
        max_epochs=8,
    )
    ref_dir = tmp_path / "reference"
    ref = quick_fit(ref_dir, checkpoint_every=EVERY, **options)
    assert ref.summary["stopped_because"] == "early_stopping"
    assert ref.summary["epochs_run"] < options["max_epochs"]
    out = tmp_path / "run"

    class CrashAtTrainEnd(Callback):
        def on_train_end(self, trainer, result) -> None:
            raise Crash  # after the final checkpoint, before summary.json is written

    with pytest.raises(Crash):
        quick_fit(out, checkpoint_every=EVERY, before=(CrashAtTrainEnd(),), **options)
    assert not (out / "summary.json").exists()
    result = quick_fit(out, checkpoint_every=EVERY, resume=True, **options)
    assert result.summary["iterations"] == ref.summary["iterations"]
    assert_same_run(ref_dir, out)


def test_resuming_a_finished_run_changes_nothing(tmp_path, references):
    name = "momentum-step-l1l2"
    ref_dir, ref = references(name)
    out = tmp_path / "run"
    quick_fit(out, checkpoint_every=EVERY, **CASES[name])
    again = quick_fit(out, checkpoint_every=EVERY, resume=True, **CASES[name])
    assert again.summary["iterations"] == ref.summary["iterations"]
    assert_same_run(ref_dir, out)
