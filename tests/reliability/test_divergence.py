"""Divergence and numeric faults: --on-nan stop | skip-batch | lr-backoff, --log-grad-norm.

Faults are made three ways: a huge learning rate on digits (through the CLI), a
training set with an injected poison example (NaN inputs, which the data loaders
refuse, so the Dataset is built in-process), and a model whose gradient is NaN on a
marked example while its loss stays finite.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace

import pytest
import torch
from relhelpers import QUICK, Crash, CrashAfterCheckpoint, assert_same_run, quick_fit
from torch import nn

from clihelpers import one_line_error, run_cli
from descentlab.data import Split, load_dataset
from descentlab.errors import DivergenceError
from descentlab.train import Callback, fit
from descentlab.train.checkpoint import load_checkpoint
from descentlab.train.trainer import Trainer

BATCH = QUICK["batch_size"]
POISON_BATCH = 3  # 0-based minibatch of every epoch holding the poison (no shuffling)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=QUICK["seed"])


def poisoned(data, value: float = math.nan, rows: slice | None = None):
    """digits with one training example (in minibatch POISON_BATCH) set to ``value``."""
    x = data.train.x.clone()
    x[rows if rows is not None else POISON_BATCH * BATCH + 7] = value
    return replace(data, train=Split(x, data.train.y))


def quiet_fit(data, **options):
    opts = {**QUICK, **options}
    return fit(data=data, default_callbacks_=False, **opts)


class Snapshots(Callback):
    """Parameters and optimizer state after every iteration."""

    def __init__(self) -> None:
        self.params: dict[int, dict[str, torch.Tensor]] = {}
        self.lrs: dict[int, float] = {}

    def on_step(self, trainer, iteration, loss) -> None:
        self.params[iteration] = {
            k: v.detach().clone() for k, v in trainer.model.state_dict().items()
        }
        self.lrs[iteration] = trainer.optimizer.param_groups[0]["lr"]


# ------------------------------------------------------------------------ stop
def test_huge_lr_stops_with_one_line_and_keeps_the_last_good_checkpoint(capsys, tmp_path):
    out = tmp_path / "run"
    code, _, err = run_cli(
        capsys,
        "train",
        "--dataset",
        "digits",
        "--model",
        "mlp",
        "--hidden",
        "32",
        "--activation",
        "relu",
        "--batch-size",
        "20",
        "--lr",
        "1e10",
        "--checkpoint-every",
        "1",
        "--threads",
        "1",
        "--quiet",
        "--out",
        str(out),
    )
    line = one_line_error(code, err, "diverged", "non-finite", "lr 1e+10", exit_code=3)
    failed_at = int(re.search(r"iteration (\d+)", line).group(1))
    good = int(re.search(r"last good checkpoint \(iteration (\d+)\)", line).group(1))
    assert good < failed_at or "diverged by iteration" in line
    state, meta = load_checkpoint(out / "checkpoint")
    assert meta["iteration"] == good
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert "--on-nan" in line  # the hint names the way out


def test_poison_batch_stop_names_iteration_lr_and_loss(digits):
    with pytest.raises(DivergenceError) as info:
        quiet_fit(poisoned(digits), optimizer="sgd", lr=0.1)
    message = str(info.value)
    assert f"iteration {POISON_BATCH + 1} (epoch 1, lr 0.1)" in message
    assert "the loss is non-finite" in message
    assert "no run directory" in message
    assert info.value.exit_code == 3


def test_inputs_far_from_unit_scale_are_named_first(digits):
    # The usual cause of a diverged first step on tabular data: raw features in the
    # millions; a lower lr is the wrong first fix.
    raw = replace(digits, train=Split(digits.train.x * 1e30, digits.train.y))
    with pytest.raises(DivergenceError) as info:
        quiet_fit(raw, model="logreg", optimizer="sgd", lr=0.1)
    assert info.value.hint is not None
    assert info.value.hint.startswith("the training inputs reach |x| = ")
    assert "--standardize" in info.value.hint and "lower --lr" in info.value.hint
    with pytest.raises(DivergenceError) as info:
        quiet_fit(poisoned(digits), optimizer="sgd", lr=0.1)
    assert re.match(
        r"64 training input values, in 1 of \d+ examples, are NaN", info.value.hint or ""
    )
    with pytest.raises(DivergenceError) as info:  # unit-scale inputs: the lr's fault
        quiet_fit(digits, hidden=(32,), activation="relu", batch_size=20, optimizer="sgd", lr=1e10)
    assert (info.value.hint or "").startswith("lower --lr")


def test_no_checkpoint_yet_is_said_so(digits, tmp_path):
    with pytest.raises(DivergenceError, match="no checkpoint had been written yet"):
        quick_fit(tmp_path / "run", data=poisoned(digits), optimizer="sgd", lr=0.1)


# ------------------------------------------------------------------ skip-batch
def test_skip_batch_drops_the_poisoned_minibatch_unapplied(digits):
    snaps = Snapshots()
    result = fit(
        data=poisoned(digits),
        default_callbacks_=False,
        callbacks=[snaps],
        **{**QUICK, "optimizer": "momentum", "lr": 0.05, "on_nan": "skip-batch"},
    )
    per_epoch = len(snaps.params) // QUICK["max_epochs"]
    for epoch in range(QUICK["max_epochs"]):
        bad = epoch * per_epoch + POISON_BATCH
        for name, before in snaps.params[bad - 1].items():
            assert torch.equal(before, snaps.params[bad][name]), (epoch, name)  # not applied
        assert not torch.equal(
            snaps.params[bad]["output.weight"], snaps.params[bad + 1]["output.weight"]
        )  # and training goes on
    assert all(torch.isfinite(p).all() for p in result.model.parameters())
    assert all(math.isfinite(row["train_nll"]) for row in result.history)
    assert set(snaps.lrs.values()) == {0.05}  # skip-batch leaves the learning rate alone
    assert result.best_valid_error < 0.2


def test_lr_backoff_halves_the_learning_rate_at_each_fault(digits):
    snaps = Snapshots()
    fit(
        data=poisoned(digits),
        default_callbacks_=False,
        callbacks=[snaps],
        **{**QUICK, "optimizer": "sgd", "lr": 0.4, "schedule": "linear:tau=200,final_ratio=1.0"},
        on_nan="lr-backoff",
    )
    per_epoch = len(snaps.params) // QUICK["max_epochs"]
    for epoch in range(QUICK["max_epochs"]):
        bad = epoch * per_epoch + POISON_BATCH
        assert snaps.lrs[bad] == pytest.approx(0.4 * 0.5 ** (epoch + 1))
        assert snaps.lrs[bad - 1] == pytest.approx(0.4 * 0.5**epoch)


def test_skipped_batches_survive_a_resume_bit_identically(digits, tmp_path):
    data = poisoned(digits)
    options = dict(optimizer="adam", lr=0.003, on_nan="lr-backoff", checkpoint_every=5)
    quick_fit(tmp_path / "reference", data=data, **options)

    with pytest.raises(Crash):
        quick_fit(tmp_path / "run", data=data, extra=(CrashAfterCheckpoint(6),), **options)
    quick_fit(tmp_path / "run", data=data, resume=True, **options)
    assert_same_run(tmp_path / "reference", tmp_path / "run")
    state, _ = load_checkpoint(tmp_path / "run" / "checkpoint")
    assert state["faults"]["skipped_batches"] == QUICK["max_epochs"]


def test_non_finite_gradient_with_finite_loss_is_skipped(digits):
    class GradPoison(nn.Module):
        """Logistic regression whose gradient is NaN (0 * inf) on a marked example."""

        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(64, 10)
            self.s = nn.Parameter(torch.zeros(()))

        def forward(self, x):
            out = self.linear(x.flatten(1))
            if bool((x.flatten(1)[:, 0] < 0).any()):  # pixels are >= 0: the marker
                out = out + torch.sqrt(self.s * 0.0)  # adds 0, gradient 0.5/sqrt(0) * 0 = NaN
            return out

    data = poisoned(digits, value=-1.0)
    snaps = Snapshots()
    options = {k: v for k, v in QUICK.items() if k not in ("model", "dataset")}
    result = fit(
        model=GradPoison(),
        data=data,
        default_callbacks_=False,
        callbacks=[snaps],
        **{**options, "on_nan": "skip-batch", "lr": 0.1},
    )
    bad = POISON_BATCH
    for name, before in snaps.params[bad - 1].items():
        assert torch.equal(before, snaps.params[bad][name]), name
    assert all(torch.isfinite(p).all() for p in result.model.parameters())
    # With --on-nan stop the NaN step is applied; the next step names the parameter.
    with pytest.raises(DivergenceError, match=r"parameter (s|linear\.\w+) is non-finite"):
        fit(model=GradPoison(), data=data, default_callbacks_=False, **{**options, "lr": 0.1})


def test_a_non_finite_parameter_always_stops(digits):
    class Corrupt(Callback):
        def on_step(self, trainer, iteration, loss) -> None:
            if iteration == 5:
                with torch.no_grad():
                    next(trainer.model.parameters())[0, 0] = math.inf

    with pytest.raises(DivergenceError) as info:
        fit(
            data=digits,
            default_callbacks_=False,
            callbacks=[Corrupt()],
            **{**QUICK, "on_nan": "skip-batch", "lr": 0.1},
        )
    assert "parameter hidden_layers.0.weight is non-finite" in str(info.value)
    assert "cannot undo" in str(info.value)


def test_a_run_of_bad_minibatches_ends_the_run(digits):
    everything = poisoned(digits, rows=slice(None))
    with pytest.raises(DivergenceError, match=r"10 minibatches in a row"):
        quiet_fit(everything, on_nan="skip-batch", lr=0.1)


def test_a_diverged_state_is_never_checkpointed(digits, tmp_path):
    from descentlab.train import TrainConfig

    trainer = Trainer(TrainConfig(**{**QUICK, "out": None}), data=digits, run_dir=tmp_path)
    trainer.save_checkpoint()
    with torch.no_grad():
        next(trainer.model.parameters())[0, 0] = math.nan
    with pytest.raises(DivergenceError, match="last good checkpoint"):
        trainer.save_checkpoint()
    state, _ = load_checkpoint(tmp_path / "checkpoint")
    assert all(torch.isfinite(v).all() for v in state["model"].values())


# ------------------------------------------------------------- gradient norm
def test_log_grad_norm_shows_the_gradient_norm(capsys, tmp_path):
    """Each epoch line shows |g|: the largest global gradient norm since the last line."""
    out = tmp_path / "run"
    code, stdout, err = run_cli(
        capsys,
        *("train", "--dataset", "digits", "--model", "mlp", "--hidden", "32", "--lr", "0.5"),
        *("--batch-size", "50", "--max-epochs", "3", "--threads", "1", "--log-grad-norm"),
        *("--out", str(out)),
    )
    assert code == 0, err
    epoch_lines = [line for line in stdout.splitlines() if line.startswith("epoch")]
    assert len(epoch_lines) == 3 and all(re.search(r"\|g\| [\d.e+-]+", s) for s in epoch_lines)
    rows = [json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines()]

    # the same run in-process, measuring the norm after every step independently
    class Norms(Callback):
        def __init__(self) -> None:
            self.norms: list[float] = []

        def on_step(self, trainer, iteration, loss) -> None:
            grads = [p.grad.double().norm() for p in trainer.model.parameters()]
            self.norms.append(float(torch.stack(grads).norm()))

    norms = Norms()
    options = {**QUICK, "hidden": (32,), "lr": 0.5, "max_epochs": 3, "seed": 1234}
    fit(default_callbacks_=False, callbacks=[norms], **options)
    per_epoch = len(norms.norms) // 3
    for epoch, row in enumerate(rows):
        expected = max(norms.norms[epoch * per_epoch : (epoch + 1) * per_epoch])
        assert row["grad_norm"] == pytest.approx(expected, rel=1e-5)
