"""The tutorial's early-stopping rule, checked against a literal transcription of its loop."""

from __future__ import annotations

import math

import pytest

from descentlab.errors import ConfigError
from descentlab.train.early_stopping import EpochPatience, NoEarlyStopping, TutorialEarlyStopping


def tutorial_loop(
    valid_losses,
    n_train_batches,
    n_epochs,
    patience=5000,
    patience_increase=2,
    improvement_threshold=0.995,
):
    """logistic_sgd.py's loop, transcribed; `valid_losses` is consumed one value per validation."""
    validation_frequency = min(n_train_batches, patience // 2)
    best_validation_loss = math.inf
    best_iter = -1
    values = iter(valid_losses)
    validations = []
    epoch = 0
    done_looping = False
    it = -1
    while epoch < n_epochs and not done_looping:
        epoch += 1
        for minibatch_index in range(n_train_batches):
            it = (epoch - 1) * n_train_batches + minibatch_index
            if (it + 1) % validation_frequency == 0:
                this_validation_loss = next(values)
                validations.append(it)
                if this_validation_loss < best_validation_loss:
                    if this_validation_loss < best_validation_loss * improvement_threshold:
                        patience = max(patience, it * patience_increase)
                    best_validation_loss = this_validation_loss
                    best_iter = it
            if patience <= it:
                done_looping = True
                break
    return {
        "stop_iter": it,
        "epoch": epoch,
        "best": best_validation_loss,
        "best_iter": best_iter,
        "validations": validations,
    }


def our_loop(valid_losses, n_train_batches, n_epochs, **kw):
    rule = TutorialEarlyStopping(n_train_batches, **kw)
    values = iter(valid_losses)
    validations = []
    it = -1
    for epoch in range(1, n_epochs + 1):
        for b in range(n_train_batches):
            it += 1
            if rule.validation_due(it, b == n_train_batches - 1):
                validations.append(it)
                rule.update(it, next(values))
            if it >= rule.stop_iteration:
                return {
                    "stop_iter": it,
                    "epoch": epoch,
                    "best": rule.best,
                    "best_iter": rule.best_iteration,
                    "validations": validations,
                }
    return {
        "stop_iter": it,
        "epoch": n_epochs,
        "best": rule.best,
        "best_iter": rule.best_iteration,
        "validations": validations,
    }


SEQUENCES = {
    # improves quickly, then plateaus: stops once patience runs out
    "plateau": [0.5, 0.3, 0.2, 0.15, 0.12, 0.11, 0.109, 0.1089] + [0.1089] * 10_000,
    # tiny improvements (< 0.5% relative) do not extend patience but do update the best
    "tiny": [0.2] + [0.2 * (1 - 1e-4) ** k for k in range(1, 10_000)],
    # noisy with a late big improvement
    "late": [0.3, 0.31, 0.29, 0.32, 0.28, 0.1] + [0.2] * 10_000,
}


@pytest.mark.parametrize("name", sorted(SEQUENCES))
@pytest.mark.parametrize("n_batches,patience", [(83, 5000), (2500, 10000), (7, 20), (3, 2)])
def test_matches_tutorial_transcription(name, n_batches, patience):
    seq = SEQUENCES[name]
    expected = tutorial_loop(seq, n_batches, 1000, patience=patience)
    got = our_loop(seq, n_batches, 1000, patience=patience)
    assert got == expected


def test_logreg_schedule_numbers():
    # MNIST logreg: 83 minibatches, patience 5000 -> validate every 83 iterations
    rule = TutorialEarlyStopping(83, patience=5000)
    assert rule.validation_frequency == 83
    assert rule.validation_due(82, True) and not rule.validation_due(83, False)
    # a significant improvement at iteration 4000 extends patience to 8000
    rule.update(4000, 0.1)
    rule.update(4001, 0.099)  # > 0.995 * 0.1: significant -> patience = max(8000, 8002)
    assert rule.stop_iteration == 8002
    rule.update(4100, 0.0989999)  # not significant (relative 0.1%): best moves, patience doesn't
    assert rule.best == pytest.approx(0.0989999) and rule.stop_iteration == 8002


def test_state_round_trip():
    rule = TutorialEarlyStopping(10, patience=100)
    rule.update(9, 0.5)
    copy = TutorialEarlyStopping(10, patience=100)
    copy.load_state_dict(rule.state_dict())
    assert copy.state_dict() == rule.state_dict()


def test_epoch_patience():
    rule = EpochPatience(patience=2, min_delta=0.01)
    assert rule.update(0, 0.5)
    assert not rule.update(1, 0.495)  # within min_delta
    assert not rule.should_stop_after_epoch()
    assert not rule.update(2, 0.6)
    assert rule.should_stop_after_epoch()
    assert rule.best == 0.5 and rule.best_iteration == 0


def test_no_early_stopping_keeps_best_never_stops():
    rule = NoEarlyStopping()
    for i, v in enumerate([0.5, 0.4, 0.6, 0.7]):
        rule.update(i, v)
        assert not rule.should_stop_after_epoch()
    assert rule.best == 0.4 and rule.best_iteration == 1


def test_bad_patience():
    with pytest.raises(ConfigError):
        TutorialEarlyStopping(10, patience=0)
    with pytest.raises(ConfigError):
        TutorialEarlyStopping(0, patience=10)
